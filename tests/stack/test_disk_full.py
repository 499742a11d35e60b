"""Disk full, on the real stack: the spool's file system fills, then chDB's. The collector answers
503 with Retry-After and never acknowledges what it could not write; the loader backs off and keeps
the spool; both recover by themselves once space returns, and every acknowledged hit is stored once.

Each file system is a small tmpfs mounted inside a private mount namespace (`unshare -m`) that holds
the collector and the loader: when they stop, the namespace and its mounts are gone, even after a
failed test. The test fills and frees them from inside that namespace (`nsenter`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import DEMO_SITE_ID, Stack

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
NEEDS = ("unshare", "nsenter", "mount")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in NEEDS),
                                reason="mount namespaces need root and util-linux (CI and dev machines have both)")

_START = """
set -e
mount -t tmpfs -o size=8m,mode=0700 dnma-spool "$SPOOL_FS"
mount -t tmpfs -o size=192m,mode=0700 dnma-chdb "$CHDB_DIR"
mkdir -p "$SPOOL_FS/spool"
"$PY" -m cli loader >> "$LOGS/loader.log" 2>&1 &
"$PY" -m cli serve >> "$LOGS/collector.log" 2>&1 &
wait
"""


class Namespace:
    """The stack's two processes in their own mount namespace, over two small tmpfs."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.spool_fs = stack.root / "spoolfs"
        self.chdb_dir = stack.data_dir / "clickhouse"
        self.spool_fs.mkdir()
        self.chdb_dir.mkdir()
        env = stack.env | {"SPOOL_FS": str(self.spool_fs), "CHDB_DIR": str(self.chdb_dir), "PY": sys.executable,
                           "LOGS": str(stack.data_dir)}
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash", "-c", _START],
                                     env=env, start_new_session=True)

    def run(self, script: str) -> None:
        """A shell command inside the namespace (sees the tmpfs mounts)."""
        subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--", "sh", "-c", script], check=True,
                       timeout=60)

    def fill(self, directory: Path) -> None:
        self.run(f"cat /dev/zero > '{directory}/filler' 2>/dev/null || true")

    def free(self, directory: Path) -> None:
        self.run(f"rm -f '{directory}/filler'")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    stack = Stack(tmp_path, spool_dir=str(tmp_path / "spoolfs" / "spool"), loader_retry_max_s=0.5,
                  loader_aggregate_interval_s=3600, quality_checks_interval_s=3600)
    space = Namespace(stack)
    try:
        deadline = time.monotonic() + 90
        while not (stack._http_ok(f"{stack.collector_url}/healthz") and stack._http_ok(f"{stack.ch_http_url}/ping")):
            assert space.proc.poll() is None, stack.log_tail("loader") + stack.log_tail("collector")
            assert time.monotonic() < deadline, stack.log_tail("loader") + stack.log_tail("collector")
            time.sleep(0.2)
        yield space
    finally:
        space.stop()


class Sender:
    """Single-hit GETs, each with its own url; remembers which were acknowledged."""

    def __init__(self, stack: Stack) -> None:
        self.http = httpx.Client(base_url=stack.collector_url, headers={"User-Agent": UA}, timeout=30)
        self.n = 0
        self.acked: set[str] = set()
        self.refused: list[httpx.Response] = []

    def send(self, count: int) -> None:
        for _ in range(count):
            self.n += 1
            url = f"https://ent.demo.example/disk/{self.n}"
            r = self.http.get("/matomo.php", params={
                "idsite": DEMO_SITE_ID, "rec": 1, "_id": f"{self.n:016x}", "url": url, "send_image": 0,
                "dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE"})
            if r.status_code == 204:
                self.acked.add(url)
            else:
                assert r.status_code == 503, (r.status_code, r.text)
                assert r.headers.get("retry-after"), r.headers
                self.refused.append(r)

    def send_until_acknowledged(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        before = len(self.acked)
        while len(self.acked) == before:
            assert time.monotonic() < deadline, "the collector never took hits again"
            self.send(1)
            time.sleep(0.2)


def _stored_urls(stack: Stack) -> list[str]:
    return [r[0] for r in stack.reader().query(
        "SELECT url FROM dnma.hits WHERE url LIKE 'https://ent.demo.example/disk/%'").result_rows]


def _wait_stored(stack: Stack, acked: set[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    stored: list[str] = []
    while time.monotonic() < deadline:
        stored = _stored_urls(stack)
        if set(stored) == acked:
            break
        time.sleep(0.5)
    assert sorted(stored) == sorted(acked), (len(stored), len(acked), stack.log_tail("loader"))


def test_a_full_spool_disk_refuses_with_retry_after_and_recovers(ns: Namespace) -> None:
    stack = ns.stack
    hits = Sender(stack)
    hits.send(50)
    assert len(hits.acked) == 50
    ns.fill(ns.spool_fs)
    hits.send(200)  # a few may still fit in the open segment's last page; most cannot be written
    assert len(hits.refused) >= 100, len(hits.refused)
    ns.free(ns.spool_fs)
    hits.send_until_acknowledged()
    hits.send(50)
    _wait_stored(stack, hits.acked)
    assert ns.proc.poll() is None  # nothing crashed: the collector and loader run on


def test_a_full_chdb_disk_keeps_the_spool_and_drains_once_space_returns(ns: Namespace) -> None:
    stack = ns.stack
    hits = Sender(stack)
    hits.send(20)
    _wait_stored(stack, hits.acked)
    ns.fill(ns.chdb_dir)
    hits.send(200)  # the spool has room: every hit is acknowledged, none can be inserted
    assert len(hits.acked) == 220 and not hits.refused
    time.sleep(3)  # the loader tries, fails for want of space, backs off
    assert len(_stored_urls(stack)) < 220
    ns.free(ns.chdb_dir)
    _wait_stored(stack, hits.acked)
    log = stack.log_tail("loader", 200_000)
    assert "clickhouse_failed" in log  # the loader said why it waited
    assert "records_rejected" not in log  # a full disk is not bad data: nothing was dropped
