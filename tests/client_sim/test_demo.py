"""Simulated traffic through the real collector and loader: nothing refused, everything stored,
bad tagging flagged (not dropped), devices classified; and `dnma demo` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

from dnma_client.simulator import Simulation, send
from harness import SUPER_TOKEN, Stack, school_days_before

from cli.demo import year_ago_days
from dnma import clock
from dnma.indicators import same_school_week_year_ago

# Ordinary school days, derived from the simulator's holiday table and DNMA's clock (never the
# weekday of the day the suite runs): a Thursday and a Friday, then a Tuesday for `dnma demo`. Older
# than 24 h, so the simulator sends them with a token.
START = school_days_before(clock.today(), weekday=3, count=2, at_least=9)
DEMO_DAY = school_days_before(clock.today(), weekday=1, count=1, at_least=2)


def test_simulated_days_go_through_with_no_refusal(full_stack: Stack) -> None:
    sim = Simulation(scale=0.04, seed=5)
    items = [i for _, day in sim.days(START, 2) for i in day]
    report = send(items, full_stack.collector_url, SUPER_TOKEN, concurrency=3, progress=False)
    assert report.failed_batches == 0
    assert report.invalid == 0, report.invalid_samples
    assert report.tracked == report.hits == len(items) > 500

    first, last = START, START + timedelta(days=1)
    where = f"toDate(ts) BETWEEN '{first}' AND '{last}'"
    full_stack.wait_for(f"SELECT count() FROM dnma.hits WHERE {where}", lambda r: r[0][0] >= len(items))
    rows = full_stack.reader().query(f"""
        SELECT count(), countIf(has(flags, 'invalid_uai')), countIf(has(flags, 'missing_profil')),
               countIf(has(flags, 'outside_perimeter') AND site_id = 4), countIf(site_id = 4),
               countIf(has(flags, 'outside_perimeter') AND site_id != 4), uniqExact(device), uniqExact(browser)
        FROM dnma.hits WHERE {where}""").result_rows[0]
    total, invalid, no_profil, outside4, site4, outside_other, devices, browsers = rows
    assert total == len(items)  # kept, not dropped
    assert 0 < invalid < 0.03 * total
    assert 0 < no_profil < 0.02 * total
    assert 0.03 * site4 < outside4 < 0.35 * site4
    assert outside_other == 0
    assert devices >= 3 and browsers >= 5


def test_dnma_demo_command(full_stack: Stack) -> None:
    """`dnma demo` as an operator runs it: settings from the stack's config, the super-user token."""
    day = DEMO_DAY
    out = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--days", "1", "--scale", "0.05", "--start", day.isoformat(),
         "--seed", "9", "--no-progress", "--sites-out", str(full_stack.root / "demo-sites.yaml")],
        env=full_stack.env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["invalid"] == 0 and report["hits"] == report["tracked"] > 50
    # The same school week one year earlier, smaller (the rentrée comparison's N−1 line): stored, and
    # built into the national rollup the Vue nationale reads.
    past = report["an_passe"]
    assert past["invalid"] == 0 and past["hits"] == past["tracked"] > 0
    days = year_ago_days(day, 1)
    assert len(days) == 7 and same_school_week_year_ago(day) == days[0]
    full_stack.wait_for(f"SELECT sum(visites) FROM dnma.visits_national_daily WHERE day BETWEEN '{days[0]}' "
                        f"AND '{days[-1]}'", lambda r: (r[0][0] or 0) > 0, timeout=120)
    assert (full_stack.root / "demo-sites.yaml").read_text(encoding="utf-8").count("token_sha256") == 5
    # A few refused requests, one per usual tagging mistake: answered 400, and kept by the loader in
    # the quarantine (the Qualité dashboard's refused-requests tables read it).
    assert report["refusees"] == {"sent": 5, "refused": 5}
    kept = full_stack.wait_for(
        "SELECT groupArray((site_id, reason)) FROM (SELECT site_id, reason FROM dnma.quarantine FINAL "
        "WHERE request['url'] LIKE '%ent-inconnu%' OR request['url'] LIKE 'https://%/recette' "
        "OR request['url'] LIKE '%/cahier-de-textes' OR request['url'] LIKE '%/ressources' "
        "OR request['url'] LIKE '%/messagerie' ORDER BY reason)",
        lambda r: len(r[0][0]) >= 5, timeout=60)[0][0]
    assert sorted(kept) == [(0, "invalid_site"), (1, "cdt_too_old"), (1, "invalid_cid"), (1, "invalid_event"),
                            (999, "unknown_site")]
