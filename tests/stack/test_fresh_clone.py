"""A clone of the repository on a machine without our `../shared` folder works on its own: `make
install`, then `dnma up --no-superset` loads the annuaire shipped in deploy/referentiel/ and the
demo's traffic, whose schools are drawn from that annuaire.

The clone is the working tree's files (tracked, and new ones not ignored) copied to a directory
with no `shared` beside it. As root, the run also happens in a private mount namespace where the
real `../shared` is an empty tmpfs: a read of it by absolute path finds nothing either.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect
import pytest
from harness import REPO, SHARED, free_port

from dnma.uai import is_valid

pytestmark = pytest.mark.slow


def _copy_working_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.split(b"\0")
    dest.mkdir(parents=True)
    archive = dest.parent / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            path = REPO / os.fsdecode(name)
            if path.is_file():  # a deleted, not yet committed file is listed but absent
                tar.add(path, arcname=os.fsdecode(name), recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="tar")
    archive.unlink()


def _hiding_shared() -> list[str]:
    """The command prefix that runs a command with the real ../shared empty, where we can."""
    if os.geteuid() != 0 or not SHARED.is_dir() or shutil.which("unshare") is None:
        return []
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=1m none "{SHARED}" && exec "$@"', "hide-shared"]


def _annuaire_uais() -> set[str]:
    uais: set[str] = set()
    for path in (REPO / "deploy" / "referentiel").glob("annuaire-education-*.csv"):
        with path.open(encoding="utf-8-sig", newline="") as f:
            uais |= {row["Identifiant_de_l_etablissement"] for row in csv.DictReader(f, delimiter=";")}
    assert len(uais) > 1000
    return uais


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)


def test_clone_without_shared_installs_and_loads_annuaire_and_demo(tmp_path: Path) -> None:
    clone = tmp_path / "elsewhere" / "dnma"
    _copy_working_tree(clone)
    assert not (clone.parent / "shared").exists()
    hide = _hiding_shared()
    data_dir = clone / "var"
    # The tests' pinned clock (DNMA_NOW) is kept; every other DNMA setting is the clone's default,
    # except the ports: another stack may run beside this one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    if "DNMA_NOW" in os.environ:
        env["DNMA_NOW"] = os.environ["DNMA_NOW"]
    env.update(DNMA_COLLECTOR_PORT=str(free_port()), DNMA_CH_HTTP_PORT=str(free_port()),
               DNMA_SUPERSET_PORT=str(free_port()))

    def run(*cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*hide, *cmd], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    # NATIVE= leaves out the mypyc build of the collector (a minute of the test's time; the rest of the
    # suite runs it compiled): the clone's collector runs as pure Python.
    run("make", "install", f"PYTHON={sys.executable}", "NATIVE=", timeout=900)
    try:
        # A week, so that school days are in it whatever the day the clock says.
        up = run(".venv/bin/dnma", "up", "--no-superset", "--demo-days", "7", "--demo-scale", "0.1", timeout=600)
        stack = _env_file(data_dir / "stack.env")
        url = urlsplit(stack["CLICKHOUSE_HTTP_URL"])
        client = clickhouse_connect.get_client(host=url.hostname, port=url.port, username=stack["CLICKHOUSE_USER"],
                                               password=stack["CLICKHOUSE_PASSWORD"], database="dnma")
        annuaire = _annuaire_uais()
        loaded = {r[0] for r in client.query("SELECT DISTINCT uai FROM dnma.etablissements").result_rows}
        hits = client.query("SELECT count() FROM dnma.hits").result_rows[0][0]
        seen = {r[0] for r in client.query("SELECT DISTINCT uai FROM dnma.hits WHERE uai != ''").result_rows}
    finally:
        subprocess.run([*hide, ".venv/bin/dnma", "down"], cwd=clone, env=env, capture_output=True, timeout=120)
    # Every school of the shipped annuaires is there (and the collèges of the national file).
    assert annuaire <= loaded and len(loaded) > 5000, (len(annuaire - loaded), len(loaded), up.stdout[-2000:])
    # The demo's schools come from that referential: its traffic is there, and every well-formed UAI
    # it sends is a known school (the simulator also mistypes some check letters on purpose).
    valid = {u for u in seen if is_valid(u)}
    assert hits > 1000 and len(valid) > 10 and valid <= loaded, (hits, len(valid), sorted(valid - loaded)[:5])
