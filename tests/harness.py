"""Starts the real embedded stack (collector, loader with its read-only endpoint) as subprocesses
in a temporary data dir, for integration, fault and end-to-end tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from dnma.sites import dump_sites, hash_token

# The session's clock, as the tests import it (also when benches import this file as tests.harness).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import clockpin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

DEMO_SITE_ID = 1
DEMO_TOKEN = "demo-write-token"
SUPER_TOKEN = "super-user-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_sites() -> list[dict[str, Any]]:
    return [
        {
            "id": DEMO_SITE_ID,
            "name": "ENT démo",
            "main_url": "https://ent.demo.example",
            "timezone": "Europe/Paris",
            "token_sha256": hash_token(DEMO_TOKEN),
            "projet": "ENT_DEMO",
            "exploitant": "DEMO",
            "plateforme": "DEMO",
            "perimeter": {"degrees": ["1D", "2D"], "departements": ["035", "094"]},
        },
        {
            "id": 2,
            "name": "ENT DNT",
            "main_url": "https://ent-dnt.example",
            "token_sha256": hash_token("site2-token"),
            "honour_dnt": True,
            "excluded_ips": ["10.9.0.0/16"],
            "excluded_user_agents": ["MonitoringProbe"],
        },
    ]


class Stack:
    """One embedded stack in `root`. Processes are real: `python -m cli serve|loader`."""

    def __init__(self, root: Path, *, sites: list[dict[str, Any]] | None = None, **config: Any):
        self.root = root
        self.data_dir = root / "var"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.collector_port = free_port()
        self.ch_http_port = free_port()
        self.ch_user = "dnma_reader"
        self.ch_password = secrets.token_hex(8)
        self.config: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "uid_secret": "test-uid-secret",
            "super_user_token": SUPER_TOKEN,
            "collector_port": self.collector_port,
            "ch_http_port": self.ch_http_port,
            "ch_http_user": self.ch_user,
            "ch_http_password": self.ch_password,
            "loader_poll_interval_ms": 50,
            "hits_ttl_months": 1200,  # a test's hits, whatever their date, are never expired
            "log_format": "text",
            "now": clockpin.OFFSET,  # the session's clock (DNMA_TEST_NOW), the same in every process
        }
        self.config.update(config)
        self.config_path = self.data_dir / "dnma.toml"
        self._write_config()
        dump_sites(sites if sites is not None else demo_sites(), self.data_dir / "sites.yaml")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _write_config(self) -> None:
        lines = []
        for k, v in self.config.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, int | float):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f'{k} = "{v}"')
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
        env["DNMA_CONFIG"] = str(self.config_path)
        env["DNMA_DATA_DIR"] = str(self.data_dir)
        return env

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    @property
    def ch_http_url(self) -> str:
        return f"http://127.0.0.1:{self.ch_http_port}"

    # --- processes
    def _start(self, name: str, args: list[str], ready: Callable[[], bool], timeout: float = 60) -> None:
        log = open(self.data_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], env=self.env, stdout=log, stderr=log)
        self.procs[name] = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready after {timeout}s: {self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 4000) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def _http_ok(self, url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_collector(self, *extra: str) -> None:
        self._start("collector", ["serve", *extra], lambda: self._http_ok(f"{self.collector_url}/healthz"))

    def start_loader(self, *extra: str) -> None:
        self._start("loader", ["loader", *extra], lambda: self._http_ok(f"{self.ch_http_url}/ping"))

    def stop(self, name: str, *, kill: bool = False, timeout: float = 30) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # --- ClickHouse access
    def reader(self) -> Any:
        """A clickhouse-connect HTTP client on the loader's read-only endpoint (loader running)."""
        import clickhouse_connect

        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.ch_http_port, username=self.ch_user, password=self.ch_password,
            database="dnma",
        )

    def direct(self) -> Any:
        """A chDB client on the data dir: only while the loader is stopped (one owner)."""
        import clickhouse_connect

        assert "loader" not in self.procs, "stop the loader before opening chDB directly"
        return clickhouse_connect.get_client(dsn=f"chdb://{(self.data_dir / 'clickhouse').resolve()}")

    def wait_for(self, sql: str, predicate: Callable[[Any], bool], timeout: float = 60) -> Any:
        client = self.reader()
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = client.query(sql).result_rows
            if predicate(value):
                return value
            time.sleep(0.2)
        raise TimeoutError(f"{sql!r} never satisfied the condition; last value {value!r}")

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def school_days_before(today: date, *, weekday: int, count: int, at_least: int) -> date:
    """The latest day of `weekday` (0 Monday) at least `at_least` days before `today` that starts
    `count` consecutive term-time school days in zones A, B and C (the simulator's own holiday
    table): what a test sending "ordinary school traffic" needs, whatever today's date."""
    from dnma_client.calendar import day_kind

    day = today - timedelta(days=at_least)
    day -= timedelta(days=(day.weekday() - weekday) % 7)
    for _ in range(60):
        span = [day + timedelta(days=i) for i in range(count)]
        if all(day_kind(d, zone, "2D").school_day for d in span for zone in "ABC"):
            return day
        day -= timedelta(days=7)
    raise AssertionError(f"no {count} school days starting on weekday {weekday} in the 60 weeks before {today}")
