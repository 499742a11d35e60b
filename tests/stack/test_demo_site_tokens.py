"""`dnma up` gives each demo site its own write token (issue #19): kept across runs, named in
var/stack.env, used by the demo traffic; a site's token neither writes another site's
authenticated hits nor reads its debug view or reports. A sites file from when every demo site
shared DEMO_TOKEN is separated by the next `dnma up`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clockpin
import httpx
import pytest
import yaml
from dnma_client.simulator import demo_sites
from harness import free_port

from cli.stack import ensure_config
from dnma.sites import hash_token

SITES = [s["id"] for s in demo_sites("any")]


def site_token_key(site_id: int) -> str:
    return f"DEMO_SITE_{site_id}_TOKEN"


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """`dnma up` without Superset and with two days of light demo traffic, in a temporary data dir."""
    data_dir = tmp_path_factory.mktemp("up") / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env.update(DNMA_DATA_DIR=str(data_dir), DNMA_COLLECTOR_PORT=str(free_port()),
               DNMA_CH_HTTP_PORT=str(free_port()), DNMA_LOG_FORMAT="text")
    if clockpin.OFFSET:
        env["DNMA_NOW"] = clockpin.OFFSET

    def dnma(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "cli", *args], env=env, check=True, timeout=600)

    try:
        dnma("up", "--no-superset", "--demo-days", "2", "--demo-scale", "0.01")
        yield env, data_dir
    finally:
        dnma("down")


def _now() -> int:
    return int(time.time() + float(clockpin.OFFSET or 0))


def test_stack_env_names_a_distinct_token_per_site_kept_across_runs(up: tuple[dict[str, str], Path]) -> None:
    env, data_dir = up
    stack_env = read_env_file(data_dir / "stack.env")
    tokens = {i: stack_env[site_token_key(i)] for i in SITES}
    assert len(set(tokens.values())) == len(SITES) > 1
    assert stack_env["DEMO_TOKEN"] == tokens[int(stack_env["DEMO_SITE_ID"])]
    sites = yaml.safe_load((data_dir / "sites.yaml").read_text(encoding="utf-8"))["sites"]
    assert {s["id"]: s["token_sha256"] for s in sites} == {i: hash_token(t) for i, t in tokens.items()}

    subprocess.run([sys.executable, "-m", "cli", "up", "--no-superset"], env=env, check=True, timeout=300)
    again = read_env_file(data_dir / "stack.env")
    assert {i: again[site_token_key(i)] for i in SITES} == tokens


def test_a_sites_token_writes_and_reads_that_site_only(up: tuple[dict[str, str], Path]) -> None:
    """DEMO_TOKEN, site 1's, is refused on site 2: no `cip`, no old `cdt`, no debug view, no
    report; site 2's own token may do all of it."""
    env, data_dir = up
    stack_env = read_env_file(data_dir / "stack.env")
    collector = stack_env["COLLECTOR_URL"]
    urls = {s["id"]: s["main_url"] for s in yaml.safe_load((data_dir / "sites.yaml").read_text())["sites"]}
    first = stack_env["DEMO_TOKEN"]
    assert stack_env["DEMO_SITE_ID"] == "1"

    def hit(site: int, token: str, **extra: Any) -> httpx.Response:
        params = {"idsite": site, "rec": 1, "url": urls[site] + "/x", "send_image": 0, "token_auth": token, **extra}
        return httpx.get(f"{collector}/matomo.php", params=params, timeout=30)

    def debug(site: int, token: str) -> int:
        return httpx.get(f"{collector}/debug/hits", params={"idsite": site, "token_auth": token}, timeout=30).status_code

    def report(site: int, token: str) -> Any:
        query = {"module": "API", "method": "VisitsSummary.get", "period": "day", "date": "yesterday",
                 "idSite": site, "format": "json", "token_auth": token}
        return httpx.post(f"{collector}/index.php", data=query, timeout=60).json()

    authenticated = ({"cip": "192.0.2.7"}, {"cdt": _now() - 3 * 86400})
    for extra in authenticated:
        assert hit(1, first, **extra).status_code == 204
        refused = hit(2, first, **extra)
        assert refused.status_code == 400 and "token_auth" in refused.text, (extra, refused.text)
    assert debug(1, first) == 200 and debug(2, first) == 403
    denied = report(2, first)
    assert denied.get("result") == "error" and "'view' access" in denied["message"], denied

    second = stack_env[site_token_key(2)]
    for extra in authenticated:
        assert hit(2, second, **extra).status_code == 204
    assert debug(2, second) == 200
    assert "nb_visits" in report(2, second), report(2, second)


def test_a_sites_file_where_every_demo_site_shared_the_demo_token_is_separated(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / "secrets.env").write_text("DEMO_TOKEN=shared-demo-token\n", encoding="utf-8")
    shared = demo_sites("shared-demo-token")
    shared.append({**shared[0], "id": 99, "name": "added by hand"})  # not a demo site: left alone
    (data_dir / "sites.yaml").write_text(yaml.safe_dump({"sites": shared}), encoding="utf-8")

    values = ensure_config(data_dir)
    sites = {s["id"]: s["token_sha256"] for s in yaml.safe_load((data_dir / "sites.yaml").read_text())["sites"]}
    assert [i for i in SITES[1:] if sites[i] == hash_token("shared-demo-token")] == []
    assert sites[1] == hash_token("shared-demo-token") == hash_token(values[site_token_key(1)])
    for i in SITES[1:]:
        assert sites[i] == hash_token(values[site_token_key(i)])
    assert sites[99] == hash_token("shared-demo-token")
