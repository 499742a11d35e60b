"""Helpers of the spool/loader tests: spool records with unique urls, the real loader as a
subprocess, and ClickHouse counts read in a separate process (chDB has one owner at a time)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dnma import clock  # noqa: E402
from dnma.spool import SpoolWriter  # noqa: E402


def record(n: int, now: int | None = None) -> bytes:
    """One hit row; the url is unique per n so duplicates and losses are countable."""
    t = now or int(clock.time())
    return orjson.dumps({"ts": t, "received_at": t, "site_id": 1, "url": f"https://t/{n}", "visitor_id": n,
                         "dimensions": {"dimension1": "x"}, "flags": ["missing_uai"]})


def write_records(spool_dir: Path, count: int, per_append: int = 500, segment_bytes: int = 256 * 1024) -> dict[str, int]:
    async def go() -> dict[str, int]:
        w = SpoolWriter(spool_dir, max_bytes=10**10, segment_bytes=segment_bytes, commit_interval_ms=2)
        await w.start()
        for start in range(0, count, per_append):
            await w.append([record(n) for n in range(start, min(count, start + per_append))])
        await w.close()
        return w.stats

    return asyncio.run(go())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loader_env(data_dir: Path, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env.update({
        "DNMA_DATA_DIR": str(data_dir),
        "DNMA_CONFIG": str(data_dir / "absent.toml"),
        "DNMA_LOADER_POLL_INTERVAL_MS": "50",
        "DNMA_LOADER_AGGREGATE_INTERVAL_S": "0",
        "DNMA_CH_HTTP_PORT": str(free_port()),
        "DNMA_CH_HTTP_PASSWORD": "test-reader-password",
        "DNMA_LOG_FORMAT": "json",
        "DNMA_LOADER_RETRY_MAX_S": "0.5",
        "DNMA_HITS_TTL_MONTHS": "1200",  # a test's hits, whatever their date, are never expired
    })
    for k, v in overrides.items():
        env[f"DNMA_{k.upper()}"] = str(v)
    return env


def start_loader(data_dir: Path, *args: str, **overrides: Any) -> subprocess.Popen[bytes]:
    log = open(data_dir / "loader.log", "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([sys.executable, "-m", "cli", "loader", *args], cwd=REPO,
                            env=loader_env(data_dir, **overrides), stdout=log, stderr=log)
    proc.data_dir = data_dir  # type: ignore[attr-defined]  # stop() shows its log on a timeout
    return proc


def run_loader_once(data_dir: Path, timeout: float = 120, **overrides: Any) -> None:
    proc = start_loader(data_dir, "--once", **overrides)
    assert proc.wait(timeout=timeout) == 0, log_tail(data_dir)


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        data_dir = getattr(proc, "data_dir", None)
        raise AssertionError(f"did not stop within {timeout} s; log:\n{log_tail(data_dir, 12000) if data_dir else ''}") from None


def log_tail(data_dir: Path, n: int = 3000) -> str:
    p = data_dir / "loader.log"
    return p.read_text(errors="replace")[-n:] if p.exists() else ""


def log_events(data_dir: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in (data_dir / "loader.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == event:
                out.append(doc)
    return out


def status(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / "loader_status.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait_until(predicate: Any, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"never true: {what}")


_COUNT_SCRIPT = """
import json, sys, clickhouse_connect
c = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
rows = c.query("SELECT count(), uniqExact(url) FROM dnma.hits").result_rows[0]
urls = [r[0] for r in c.query("SELECT DISTINCT url FROM dnma.hits").result_rows] if sys.argv[2] == "1" else []
print(json.dumps({"count": rows[0], "uniq": rows[1], "urls": urls}))
"""


def hits_counts(data_dir: Path, with_urls: bool = False) -> dict[str, Any]:
    """count(), uniqExact(url) (and the urls) of dnma.hits, read by a short-lived process."""
    out = subprocess.run([sys.executable, "-c", _COUNT_SCRIPT, str((data_dir / "clickhouse").resolve()),
                          "1" if with_urls else "0"], cwd=REPO, capture_output=True, check=True, timeout=120)
    return dict(json.loads(out.stdout))
