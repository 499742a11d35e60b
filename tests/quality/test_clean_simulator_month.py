"""False positives on simulator traffic: five weeks of the ENT traffic simulator with its
deliberate tagging faults switched off, Toussaint holidays included, sent through the real
collector; the checks run across term time and holidays with default thresholds open no alert."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date, datetime
from pathlib import Path

from dnma_client.simulator import SITES, Simulation, demo_sites, send
from harness import REPO, SUPER_TOKEN, Stack

from aggregator.checks.runner import run_checks
from aggregator.migrate import migrate
from aggregator.referentiel import load_files
from aggregator.sessionizer import rebuild_days
from dnma.clock import PARIS
from dnma.settings import Settings

START, DAYS = date(2025, 9, 29), 38  # to 5 November: the Toussaint holidays (18 Oct - 3 Nov) inside
REFERENTIEL = sorted((REPO / "deploy" / "referentiel").glob("*.csv"))


def test_clean_simulator_traffic_opens_no_alert(tmp_path: Path) -> None:
    clean_sites = tuple(dataclasses.replace(s, foreign_share=0.0, silent_last_days=False) for s in SITES)
    sim = Simulation(scale=0.5, seed=7, sites=clean_sites, bad_tagging=False)
    # Raw hits of 2025 would already be past the default 13-month TTL: keep them for the test.
    with Stack(tmp_path, sites=demo_sites(SUPER_TOKEN), loader_aggregate_interval_s=0, hits_ttl_months=120,
               quality_checks_interval_s=0) as stack:
        stack.start_loader()
        stack.start_collector()
        items = itertools.chain.from_iterable(hits for _day, hits in sim.days(START, DAYS))
        report = send(items, stack.collector_url, SUPER_TOKEN, progress=False)
        assert report.invalid == 0 and report.failed_batches == 0 and report.hits > 100_000
        stack.wait_for("SELECT count() FROM dnma.hits", lambda v: v[0][0] == report.hits, timeout=120)
        stack.stop("loader")
        client = stack.direct()
        settings = Settings(data_dir=stack.data_dir, sites_file=stack.data_dir / "sites.yaml", hits_ttl_months=120)
        migrate(client, settings)
        load_files(client, settings, REFERENTIEL)
        flagged = client.command("SELECT countIf(length(flags) > 0) FROM dnma.hits")
        assert flagged == 0  # the faults really are off: what follows judges clean traffic
        # The coverage check reads visits (dnma/indicators.py's "active"): sessionize, as the loader does.
        rebuild_days(client, settings)
        moments = [(2025, 10, 14, 10), (2025, 10, 16, 3), (2025, 10, 20, 11), (2025, 10, 25, 15),
                   (2025, 11, 1, 9), (2025, 11, 4, 10), (2025, 11, 5, 18)]
        for y, m, d, h in moments:
            now = datetime(y, m, d, h, tzinfo=PARIS)
            transitions = run_checks(client, settings, now=now)
            assert transitions == [], (now, [(t.check, t.scope_value, t.message) for t in transitions][:10])
        # Control: the same checks on the same data do fire once a real fault is there.
        ts = datetime(2025, 11, 5, 17, tzinfo=PARIS)
        client.insert("dnma.hits", [[ts, ts, 1, "pageview", "0350122A", ["invalid_uai"], i] for i in range(5000)],
                      column_names=["ts", "received_at", "site_id", "action", "uai", "flags", "visitor_id"])
        fired = run_checks(client, settings, now=datetime(2025, 11, 5, 19, tzinfo=PARIS))
        assert ("invalid_uai", "1") in {(t.check, t.scope_value) for t in fired}
        client.close()
