"""Upgrading a stack from the release this work started from, commit 51f272b, keeps its data.

That commit's tree (from this clone's history) is unpacked beside a `shared/data/referentiel`
made of the repository's deploy/referentiel (the old code reads its referential from
`../shared`; the files are the same), and run from its own virtualenv, whose packages are the
release's tree and, for its dependencies, this environment's (our pins, which it was released
with; its collector runs as pure Python): no download, so the test costs its two stacks only. It starts a stack with a few demo days (`dnma up --no-superset`, as `make up`
does without Superset), stops it; then this code's `dnma up` starts on the same data directory:
its migrations run, nothing is lost, and every count reads the same as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import pytest
from harness import REPO, free_port

from dnma.access import new_secret

pytestmark = pytest.mark.slow

RELEASE = "51f272b"

COUNTS = {
    "hits by day": "SELECT toString(toDate(ts, 'Europe/Paris')) d, count(), uniqExact(url, visitor_id, ts) "
                   "FROM dnma.hits GROUP BY d ORDER BY d",
    "hits by site and uai": "SELECT site_id, uai, count() FROM dnma.hits GROUP BY site_id, uai ORDER BY site_id, uai",
    "schools": "SELECT count(DISTINCT uai) FROM dnma.etablissements",
    "visits": "SELECT count(), sum(hits) FROM dnma.visits",
}
MIGRATIONS = "SELECT DISTINCT number FROM dnma.schema_migrations FINAL ORDER BY number"


def _unpack_release(dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", RELEASE], cwd=REPO, check=True,
                             capture_output=True).stdout
    tar_path = dest.parent / "release.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="tar")
    tar_path.unlink()


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)


def _counts(data_dir: Path) -> dict[str, Any]:
    stack = _env_file(data_dir / "stack.env")
    url = urlsplit(stack["CLICKHOUSE_HTTP_URL"])
    client = clickhouse_connect.get_client(host=url.hostname, port=url.port, username=stack["CLICKHOUSE_USER"],
                                           password=stack["CLICKHOUSE_PASSWORD"], database="dnma")
    return {name: client.query(sql).result_rows for name, sql in {**COUNTS, "migrations": MIGRATIONS}.items()}


def test_upgrade_from_51f272b_keeps_every_count(tmp_path: Path) -> None:
    if subprocess.run(["git", "cat-file", "-e", f"{RELEASE}^{{commit}}"], cwd=REPO).returncode != 0:
        pytest.skip(f"{RELEASE} is not in this clone's history (a shallow clone)")
    old = tmp_path / "release" / "dnma"
    _unpack_release(old)
    (old.parent / "shared" / "data").mkdir(parents=True)
    (old.parent / "shared" / "data" / "referentiel").symlink_to(REPO / "deploy" / "referentiel")
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    env.update(DNMA_DATA_DIR=str(data_dir), DNMA_COLLECTOR_PORT=str(free_port()),
               DNMA_CH_HTTP_PORT=str(free_port()), DNMA_SUPERSET_PORT=str(free_port()))

    def run(cmd: list[str], cwd: Path, timeout: float, **extra: str) -> str:
        done = subprocess.run(cmd, cwd=cwd, env={**env, **extra}, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    # The release generated its secrets with token_urlsafe and passed one as `--token X` to its demo:
    # one time in 64 it began with '-' and argparse took it for an option. Its secrets are written
    # here first (it keeps those it finds), from this code's generator, which never starts one so.
    data_dir.mkdir()
    (data_dir / "secrets.env").write_text("".join(
        f"{key}={new_secret()}\n" for key in ("UID_SECRET", "SUPER_USER_TOKEN", "CH_HTTP_PASSWORD", "DEMO_TOKEN",
                                              "SUPERSET_SECRET_KEY", "SUPERSET_ADMIN_PASSWORD")), encoding="utf-8")
    run([sys.executable, "-m", "venv", ".venv"], old, 120)
    site = next((old / ".venv" / "lib").glob("python3*")) / "site-packages"
    (site / "release.pth").write_text("\n".join(map(str, (
        old, old / "tagging-sdk" / "python", old / "superset", sysconfig.get_paths()["purelib"]))) + "\n")
    dnma = [str(old / ".venv" / "bin" / "python"), "-m", "dnma.cli"]  # the release's entry point
    try:
        # The release knows no injectable clock: its demo days are the host's.
        run([*dnma, "up", "--no-superset", "--demo-days", "3", "--demo-scale", "0.1"], old, 600)
        before = _counts(data_dir)
    finally:
        run([*dnma, "down"], old, 120)
    assert sum(n for _, n, _ in before["hits by day"]) > 500 and before["schools"][0][0] > 5000, before["schools"]

    new = [sys.executable, "-m", "cli"]
    try:
        run([*new, "up", "--no-superset"], REPO, 600)
        after = _counts(data_dir)
        status = run([*new, "status"], REPO, 60)
    finally:
        run([*new, "down"], REPO, 120)
    for name in COUNTS:
        assert after[name] == before[name], name
    # This code's migrations were applied on top of the release's.
    assert set(before["migrations"]) < set(after["migrations"]), (before["migrations"], after["migrations"])
    assert "loader" in status
