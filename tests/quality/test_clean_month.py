"""False positives: two months and a half of clean synthetic traffic, Toussaint holidays and a
public holiday included; every check run across term time and holidays opens no alert at all."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from aggregator.checks import silence, volume
from aggregator.checks.base import CheckContext
from aggregator.checks.runner import run_checks, selected
from aggregator.sessionizer import rebuild_days
from dnma.clock import PARIS
from tests.quality.conftest import SITE_BZH, SITE_CRE, SITE_UAIS, current_alerts
from tests.quality.synth import buckets, insert_clean

# Ille-et-Vilaine is in zone B, Créteil in zone C: the synthetic traffic's own holiday table.
ZONES = {SITE_BZH: "B", SITE_CRE: "C"}
LAST = datetime(2024, 11, 13, 21, tzinfo=PARIS)  # the last moment judged


def test_clean_traffic_opens_no_alert(env: Any) -> None:
    client, settings = env
    rows = []
    for site_id, daily in ((SITE_BZH, 3000), (SITE_CRE, 1500)):
        rows += buckets(site_id, daily, date(2024, 9, 2), LAST.date(), ZONES[site_id])
    n = insert_clean(client, rows, {s: SITE_UAIS[s] for s in (SITE_BZH, SITE_CRE)},
                     {SITE_BZH: "ENT_BZH", SITE_CRE: "ENT_CRE"})
    assert n > 200_000
    # The coverage check reads visits (dnma/indicators.py's "active"): sessionize the hits, as the loader does.
    rebuild_days(client, settings)
    # Term time, nights, the weekend, the first and last holiday days, the day back, 11 November.
    moments = [
        (2024, 10, 14, 10), (2024, 10, 15, 3), (2024, 10, 16, 17), (2024, 10, 18, 23), (2024, 10, 19, 11),
        (2024, 10, 21, 14), (2024, 10, 24, 10), (2024, 10, 30, 7), (2024, 11, 1, 15), (2024, 11, 3, 20),
        (2024, 11, 4, 9), (2024, 11, 5, 6), (2024, 11, 6, 18), (2024, 11, 8, 13), (2024, 11, 11, 10),
        (2024, 11, 12, 8), (2024, 11, 13, 21),
    ]
    checks = {c.name for c in selected(settings, None)}
    for y, m, d, h in moments:
        now = datetime(y, m, d, h, 0, tzinfo=PARIS)
        transitions = run_checks(client, settings, now=now)
        assert transitions == [], (now, [t.message for t in transitions])
        # Not vacuous: a check that raised opens nothing either, so each one recorded this run, whole.
        last_runs = client.query("SELECT `check`, toUnixTimestamp(ran_at), error FROM dnma.quality_check_runs FINAL"
                                 ).result_rows
        assert {(c, t, e) for c, t, e in last_runs} == {(c, int(now.timestamp()), "") for c in checks}, now
    assert current_alerts(client) == []
    # And on a term-time day every scope was judged (none skipped) and found normal.
    result = volume.run(CheckContext(client, settings, datetime(2024, 11, 13, 6, tzinfo=PARIS)))
    assert result.findings == [] and result.skipped == set()
    assert silence.run(CheckContext(client, settings, datetime(2024, 11, 12, 16, 30, tzinfo=PARIS))).findings == []
    # The moments span days the checks' calendar holds off, and days back at school.
    ctx = CheckContext(client, settings, LAST)
    assert ctx.calendar.is_off(date(2024, 10, 21), ctx.site_territory(SITE_BZH))
    assert not ctx.calendar.is_off(date(2024, 11, 5), ctx.site_territory(SITE_BZH))
