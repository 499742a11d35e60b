"""DNMA's injectable clock (DNMA_NOW, dnma/clock.py) on the real stack: the collector's `cdt` 24 h
rule, the time a hit is stored at, the loader's "today" and its checks all read the injected
instant, not the host's. Runs at the session's instant (DNMA_TEST_NOW) or, without one, at an
instant months away from the host's, so the test always tells the two clocks apart."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clockpin
import httpx
from harness import DEMO_SITE_ID, DEMO_TOKEN, Stack

from dnma import clock

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
FALLBACK = clockpin.DATES["dst-autumn-second"]


def _stack_offset() -> str:
    return clockpin.OFFSET or clock.as_offset(FALLBACK)


def test_the_stack_runs_on_the_injected_clock(tmp_path: Path) -> None:
    offset = _stack_offset()
    with Stack(tmp_path, now=offset, loader_aggregate_interval_s=1, quality_checks_interval_s=3600) as stack:
        stack.start_loader()
        stack.start_collector()

        def injected() -> float:
            return time.time() + float(offset)

        def hit(url: str, **extra: object) -> int:
            params = {"idsite": DEMO_SITE_ID, "rec": 1, "_id": "00000000000000c1", "url": url, "send_image": 0,
                      "dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE",
                      **extra}
            return httpx.get(f"{stack.collector_url}/matomo.php", params=params, headers={"User-Agent": UA},
                             timeout=10).status_code

        # The 24 h rule counts back from the injected instant.
        assert hit("https://ent.demo.example/a", cdt=int(injected()) - 23 * 3600) == 204
        assert hit("https://ent.demo.example/b", cdt=int(injected()) - 25 * 3600) == 400
        assert hit("https://ent.demo.example/c", cdt=int(injected()) - 25 * 3600, token_auth=DEMO_TOKEN) == 204
        # A hit without `cdt` is dated now, on the injected clock.
        sent_at = injected()
        assert hit("https://ent.demo.example/now") == 204
        row = stack.wait_for("SELECT toUnixTimestamp(ts), toUnixTimestamp(received_at) FROM dnma.hits "
                             "WHERE url LIKE '%/now'", lambda v: len(v) == 1)[0]
        assert abs(row[0] - sent_at) < 30 and abs(row[1] - sent_at) < 30
        if abs(float(offset)) > 86_400:
            assert abs(row[0] - time.time()) > 86_400  # not the host's time

        # The loader's "today" (never held back) is the injected Paris day; a past day is held.
        today = datetime.fromtimestamp(injected(), clock.PARIS).date()
        stack.wait_for(f"SELECT count() FROM dnma.visits WHERE day = '{today}'", lambda v: v[0][0] >= 1, timeout=90)
        past = (datetime.fromtimestamp(int(injected()) - 25 * 3600, clock.PARIS)).date()
        # The pass logs its result just after the visits are visible; hit `c` (the past day) may be
        # loaded in a later batch than `a`, so a later pass may be the one that holds its day.
        deadline = time.monotonic() + 30
        while True:
            log = stack.log_tail("loader", 400_000)
            built = [m.group(1) for m in re.finditer(r"'days': \[([^\]]*)\]", log)]
            today_built = any(f"'{today.isoformat()}'" in days for days in built)
            past_held = past == today or re.search(rf"'held_days': \[[^\]]*'{past.isoformat()}'", log)
            if (today_built and past_held) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert today_built, built
        assert past_held, log[-3000:]

        # The quality checks' run time is the injected instant too.
        ran = stack.wait_for("SELECT toUnixTimestamp(max(ran_at)) FROM dnma.quality_check_runs FINAL",
                             lambda v: v[0][0] > 0, timeout=90)[0][0]
        assert abs(ran - injected()) < 120


def test_clock_setting_forms() -> None:
    host = 1_800_000_000.0
    assert clock.parse("", host) == 0.0
    assert clock.parse("+90m", host) == 5400.0
    assert clock.parse("-2.5d", host) == -216_000.0
    assert clock.parse("+3600", host) == 3600.0
    instant = datetime(2027, 3, 28, 0, 30, tzinfo=UTC)
    assert clock.parse("2027-03-28T00:30:00Z", host) == instant.timestamp() - host
    assert clock.parse("2027-03-28T01:30:00+01:00", host) == instant.timestamp() - host
    for bad in ("yesterday", "2027-03-28T00:30:00", "+3w"):
        try:
            clock.parse(bad, host)
        except clock.ClockSettingError:
            continue
        raise AssertionError(f"{bad!r} accepted")
    # One offset pinned from an instant: processes started later share it exactly.
    pinned = float(clock.as_offset("2027-03-28T00:30:00Z"))
    assert abs(time.time() + pinned - instant.timestamp()) < 5
    assert clock.today(clock.PARIS) == datetime.fromtimestamp(clock.time(), clock.PARIS).date()
    assert abs(clock.now() - datetime.now(UTC) - timedelta(seconds=clock.offset())) < timedelta(seconds=5)
