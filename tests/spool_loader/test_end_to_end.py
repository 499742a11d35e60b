"""End to end through the real collector (`dnma serve`) and loader: kill -9 both in the middle of a
stream of hits sent over HTTP, then stored == acknowledged, no duplicate; spool cap -> 503."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sl_support import REPO, hits_counts, wait_until

sys.path.insert(0, str(REPO / "tests"))  # harness.py lives in tests/, beside this folder
from harness import Stack  # noqa: E402

URL = "https://ent.demo.example/p/"


class Sender:
    """Sends hit n once (never retried), remembering which got an ack (204), a refusal, or nothing."""

    def __init__(self, base_url: str, threads: int = 6) -> None:
        self.base_url = base_url
        self.stop = threading.Event()
        self.acked: set[int] = set()
        self.refused: set[int] = set()
        self.unanswered: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Sender:
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=300)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while True:
                with self._lock:
                    n = self._next
                    self._next += 1
                if self.stop.is_set():
                    return
                params = {"idsite": 1, "rec": 1, "url": f"{URL}{n}", "_id": f"{n % 97:016x}", "send_image": 0}
                try:
                    r = http.get(f"{self.base_url}/matomo.php", params=params)
                except httpx.HTTPError:
                    with self._lock:
                        self.unanswered.add(n)
                    time.sleep(0.2)  # collector down: wait a little before the next hit
                    continue
                with self._lock:
                    (self.acked if r.status_code == 204 else self.refused).add(n)


@pytest.mark.slow
def test_kill9_collector_and_loader_mid_stream_stored_equals_acknowledged(tmp_path: Path) -> None:
    with Stack(tmp_path, loader_aggregate_interval_s=0) as s:
        s.start_collector()
        s.start_loader()
        sender = Sender(s.collector_url).start()
        for _ in range(2):  # (two rounds: a collector start alone takes ~10 s on a loaded machine)
            target = len(sender.acked) + 600
            wait_until(lambda t=target: len(sender.acked) >= t, 120, "600 more acks")
            s.stop("collector", kill=True)
            s.stop("loader", kill=True)
            s.start_collector()
            s.start_loader()
        target = len(sender.acked) + 400
        wait_until(lambda: len(sender.acked) >= target, 120, "400 more acks")
        sender.stop.set()
        sender.join()
        acked = set(sender.acked)
        s.wait_for("SELECT count() FROM dnma.hits", lambda v: v[0][0] >= len(acked), timeout=120)
        wait_until(lambda: _backlog(s) == 0, 60, "loader backlog 0")
        s.stop("loader")
        s.stop("collector")
    counts = hits_counts(s.data_dir, with_urls=True)
    stored = {int(u.rsplit("/", 1)[1]) for u in counts["urls"]}
    assert counts["count"] == counts["uniq"] == len(stored), "a hit stored twice"
    assert acked <= stored, f"{len(acked - stored)} acknowledged hits lost"
    assert stored <= acked | sender.unanswered  # nothing refused or invented was stored
    assert len(acked) >= 1600 and not sender.refused
    print(f"acked {len(acked)}, unanswered {len(sender.unanswered)}, stored {len(stored)}")


def _backlog(s: Stack) -> int:
    try:
        return int(json.loads((s.data_dir / "loader_status.json").read_text())["backlog_bytes"])
    except (OSError, ValueError, KeyError):
        return -1


def test_spool_cap_makes_the_collector_answer_503_with_retry_after(tmp_path: Path) -> None:
    with Stack(tmp_path, spool_max_bytes=16_384, loader_aggregate_interval_s=0) as s:
        s.start_collector()
        acked, refused = 0, None
        with httpx.Client(timeout=5) as http:
            for n in range(1000):
                r = http.get(f"{s.collector_url}/matomo.php", params={"idsite": 1, "rec": 1, "url": f"{URL}{n}", "send_image": 0})
                if r.status_code == 503:
                    refused = r
                    break
                assert r.status_code == 204
                acked += 1
            assert refused is not None and int(refused.headers["retry-after"]) > 0
            assert 10 < acked < 1000
            # The loader drains the spool into ClickHouse and retires segments: room again.
            s.start_loader()
            s.wait_for("SELECT count() FROM dnma.hits", lambda v: v[0][0] == acked, timeout=60)

            def accepted() -> bool:
                r = http.get(f"{s.collector_url}/matomo.php", params={"idsite": 1, "rec": 1, "url": f"{URL}x", "send_image": 0})
                return r.status_code == 204

            # Its open segment is not retired, but once loaded it no longer counts toward the cap.
            wait_until(accepted, 30, "collector accepts again")
