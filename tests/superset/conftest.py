"""A real Superset (superset/.venv, gunicorn) over a real embedded stack (tests/harness.py) holding
the referential and a few days of simulated traffic sent through the collector, provisioned with
`dnma superset provision`. One of each per test session: Superset is heavy."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dnma_superset import server
from dnma_superset.provision import RolePerimeters, read_env
from harness import REPO, Stack, free_port

DEMO_TOKEN = "superset-demo-token"
REFERENTIEL = [
    REPO / "deploy" / "referentiel" / name
    for name in ("annuaire-education-35-2023.csv", "annuaire-education-94-ecoles-2026.csv",
                 "geolocalisation-colleges-france.csv", "effectifs-ecoles-35.csv",
                 "effectifs-second-degre-35.csv")
]
ARTIFACTS = REPO / "test-artifacts" / "superset"
ADMIN = "admin"


@dataclass
class SupersetHandle:
    url: str
    admin_password: str
    env_file: Path
    stack: Stack
    home: Path

    def users(self) -> dict[str, str]:
        """username -> password of the provisioned perimeter users."""
        env = read_env(self.env_file)
        out = {}
        for u in RolePerimeters.load().users:
            out[u.username] = env["SUPERSET_USER_" + u.username.upper() + "_PASSWORD"]
        return out

    def client(self, username: str = ADMIN, password: str | None = None) -> Api:
        return Api(self.url, username, password or (self.admin_password if username == ADMIN
                                                    else self.users()[username]))


class Api:
    """A logged-in Superset REST client (JWT + CSRF, as a script would do)."""

    def __init__(self, url: str, username: str, password: str):
        self.http = httpx.Client(base_url=url, timeout=120)
        r = self.http.post("/api/v1/security/login", json={"username": username, "password": password,
                                                            "provider": "db", "refresh": True})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        self.http.headers["X-CSRFToken"] = self.http.get("/api/v1/security/csrf_token/").json()["result"]
        self.http.headers["Referer"] = url

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def rows(self, path: str) -> list[dict[str, Any]]:
        return list(self.get(path, q="(page_size:100)")["result"])

    def chart_data(self, chart_id: int) -> tuple[int, Any]:
        r = self.http.get(f"/api/v1/chart/{chart_id}/data/", params={"force": "true", "format": "json"})
        return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def _dnma(stack: Stack, *args: str, timeout: float = 600) -> None:
    subprocess.run([sys.executable, "-m", "cli", *args], env=stack.env, check=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from dnma_client.simulator import demo_sites

    root = tmp_path_factory.mktemp("superset_stack")
    stack = Stack(root, sites=demo_sites(DEMO_TOKEN), loader_aggregate_interval_s=1.0,
                  quality_checks_interval_s=5.0, quality_min_hits=20)
    _dnma(stack, "migrate")
    _dnma(stack, "referentiel", "load", *(str(p) for p in REFERENTIEL if p.exists()))
    stack.start_loader()
    stack.start_collector()
    try:
        _dnma(stack, "demo", "--days", "21", "--scale", "0.03", "--collector", stack.collector_url,
              "--token", DEMO_TOKEN, "--no-progress")
        _wait_stable(stack)
        # The quality dashboard reads what the checks wrote: run them once (they write, so with the
        # loader stopped: one owner of chDB), then hand chDB back to the loader.
        stack.stop("loader")
        subprocess.run([sys.executable, "-m", "cli", "checks", "run"], env=stack.env, timeout=300,
                       check=False)
        stack.start_loader()
        yield stack
    finally:
        stack.stop_all()


def _wait_stable(stack: Stack, timeout: float = 180) -> None:
    """Visits are rebuilt by the loader's sessionizer: wait until every hit is loaded, visits exist
    and two reads a few seconds apart agree."""
    client = stack.reader()
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        visits = client.query("SELECT count(), sum(pageviews) FROM dnma.visits").result_rows[0]
        if visits[0] > 0 and visits == last:
            return
        last = visits
        time.sleep(4)
    raise TimeoutError(f"visits never settled: {last}; loader log: {stack.log_tail('loader')}")


@pytest.fixture(scope="session")
def superset(demo_stack: Stack) -> Iterator[SupersetHandle]:
    if not server.installed():
        server.install()
    home = demo_stack.root / "superset"
    home.mkdir()
    log = home / "superset.log"
    admin_password = secrets.token_urlsafe(12)
    env = server.environment(home, secrets.token_urlsafe(32))
    server.init_metadata(home, env, ADMIN, admin_password, log)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = server.start(home, env, port, log, workers=2)
    env_file = demo_stack.root / "stack.env"
    try:
        server.wait_ready(url, proc)
        provision(demo_stack, url, admin_password, env_file)
        yield SupersetHandle(url, admin_password, env_file, demo_stack, home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if log.exists():
            (ARTIFACTS / "superset.log").write_bytes(log.read_bytes()[-200_000:])


def provision(stack: Stack, url: str, admin_password: str, env_file: Path, *extra: str) -> str:
    """Run `dnma superset provision` for the stack (with `extra` options); returns its JSON summary line."""
    out = subprocess.run(
        [sys.executable, "-m", "cli", "superset", "provision", "--url", url, f"--admin-password={admin_password}",
         "--env-file", str(env_file), *extra],
        env=stack.env, check=True, capture_output=True, text=True, timeout=600,
    )
    return out.stdout.strip().splitlines()[-1]
