"""DNMA's clock jumps while the stack runs (DNMA_NOW=@file, the clock a rehearsal can move; a host
clock stepped by NTP looks the same to the processes): back an hour, then forward a day. No hit is
lost or stored twice, visits follow the stored timestamps (each hit in exactly one visit, never one
visit for two visitors, none of negative length, the forward day's hits in that day's visits), and
the clock_jumps check says what happened."""

from __future__ import annotations

import time
from pathlib import Path

import clockpin
import httpx
from harness import DEMO_SITE_ID, Stack

from dnma.clock import JUMPS_FILE, read_jumps

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
VISITOR_A = "00000000000000a1"
VISITOR_B = "00000000000000b2"


def _set_clock(path: Path, offset: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{offset:+.3f}\n", encoding="utf-8")
    tmp.replace(path)


def _wait_jump_seen(data_dir: Path, count: int, timeout: float = 30) -> None:
    """Both processes noticed the `count`-th jump (each records what it saw)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = read_jumps(data_dir)
        if {"collector", "loader"} <= {str(j["process"]) for j in seen[-4:]} and len(seen) >= 2 * count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"jump {count} not seen by both processes: {read_jumps(data_dir)}")


def test_a_clock_moved_back_then_forward_loses_nothing_and_is_reported(tmp_path: Path) -> None:
    base = float(clockpin.OFFSET or 0)
    clock_file = tmp_path / "dnma-now"
    _set_clock(clock_file, base)
    with Stack(tmp_path, now=f"@{clock_file}", loader_aggregate_interval_s=1,
               quality_checks_interval_s=2) as stack:
        stack.start_loader()
        stack.start_collector()
        http = httpx.Client(base_url=stack.collector_url, headers={"User-Agent": UA}, timeout=10)

        def hit(visitor: str, page: str) -> None:
            r = http.get("/matomo.php", params={
                "idsite": DEMO_SITE_ID, "rec": 1, "_id": visitor, "url": f"https://ent.demo.example/jump/{page}",
                "send_image": 0, "dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF",
                "dimension5": "ELEVE"})
            assert r.status_code == 204, r.text

        hit(VISITOR_A, "1")
        hit(VISITOR_A, "2")
        _set_clock(clock_file, base - 3600)  # back an hour
        _wait_jump_seen(stack.data_dir, 1)
        hit(VISITOR_A, "3")
        hit(VISITOR_A, "4")
        _set_clock(clock_file, base - 3600 + 86400)  # forward a day
        _wait_jump_seen(stack.data_dir, 2)
        hit(VISITOR_A, "5")
        hit(VISITOR_B, "6")

        rows = stack.wait_for(
            "SELECT count(), uniqExact(url) FROM dnma.hits WHERE url LIKE '%/jump/%'",
            lambda v: v[0][0] >= 6, timeout=60)
        assert rows == [(6, 6)]  # nothing lost, nothing twice
        # Dated on the moved clock: 3 and 4 an hour before 1 and 2, 5 and 6 a day later.
        ts = dict(stack.reader().query(
            "SELECT extract(url, '/jump/(\\\\d+)$'), toUnixTimestamp(ts) FROM dnma.hits "
            "WHERE url LIKE '%/jump/%'").result_rows)
        assert 3000 < ts["1"] - ts["3"] < 4200
        assert 82_000 < ts["5"] - ts["1"] < 86_400
        day_of_5 = stack.reader().command(
            "SELECT toString(toDate(ts, 'Europe/Paris')) FROM dnma.hits WHERE url LIKE '%/jump/5'")

        visits_sql = ("SELECT visitor_id, day, pageviews, duration, start FROM dnma.visits WHERE visitor_id IN "
                      "(SELECT DISTINCT visitor_id FROM dnma.hits WHERE url LIKE '%/jump/%') ORDER BY start")
        visits = stack.wait_for(visits_sql, lambda v: sum(r[2] for r in v) >= 6, timeout=120)
        assert sum(r[2] for r in visits) == 6, visits  # each hit in exactly one visit
        by_visitor: dict[int, list[tuple]] = {}
        for v in visits:
            by_visitor.setdefault(v[0], []).append(v)
        assert len(by_visitor) == 2  # A and B never share a visit
        a = max(by_visitor.values(), key=len)
        # A: the hour before (3, 4), the original hour (1, 2), the next day (5): what the stored
        # timestamps say; a visit spanning a backward jump is cut in two, and the check says why.
        assert [r[2] for r in a] == [2, 2, 1], a
        assert str(a[-1][1]) == day_of_5
        assert all(r[3] >= 1 for r in visits)  # no visit of negative (wrapped) length

        alert = stack.wait_for(
            "SELECT message, severity FROM dnma.quality_alerts FINAL WHERE check = 'clock_jumps' "
            "AND status = 'open'", lambda v: len(v) >= 1 and "avance" in v[0][0], timeout=60)
        message, severity = alert[0]
        assert "recul de 1.0 h" in message and "avance de 1.0 j" in message, message
        assert "collector" in message and "loader" in message
        assert severity == "critical"
    assert (stack.data_dir / JUMPS_FILE).stat().st_mode & 0o077 == 0
