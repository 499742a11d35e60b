"""The loader's side duties on the real stack: visits are built and the quality checks run by
themselves (no command), while the loader keeps loading."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from harness import DEMO_SITE_ID, DEMO_TOKEN, Stack

from aggregator.checks.runner import CHECKS
from dnma import clock

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def test_loader_builds_visits_and_runs_checks_on_its_own(tmp_path: Path) -> None:
    with Stack(tmp_path, loader_aggregate_interval_s=1, quality_checks_interval_s=2) as stack:
        stack.start_loader()
        stack.start_collector()
        with httpx.Client(base_url=stack.collector_url, headers={"User-Agent": UA}) as http:
            for i in range(3):
                res = http.get("/matomo.php", params={
                    "idsite": DEMO_SITE_ID, "rec": 1, "_id": "00000000000000a1", "url": f"https://ent.demo.example/p{i}",
                    "dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE",
                    "send_image": 0,
                })
                assert res.status_code == 204
            # A hit of two days ago (a log import): its day is held back a pass, then built.
            past = int(clock.time()) - 2 * 86_400
            res = http.get("/matomo.php", params={
                "idsite": DEMO_SITE_ID, "rec": 1, "_id": "00000000000000a2", "url": "https://ent.demo.example/old",
                "cdt": past, "token_auth": DEMO_TOKEN, "send_image": 0,
            })
            assert res.status_code == 204
        # A pass may run between two of the hits' inserts: wait for the one that saw all three.
        rows = stack.wait_for("SELECT count(), sum(actions) FROM dnma.visits WHERE visitor_id != "
                              "(SELECT visitor_id FROM dnma.hits WHERE url LIKE '%/old')", lambda v: v[0][1] >= 3,
                              timeout=90)
        assert rows[0] == (1, 3)  # three page views of one visitor within minutes: one visit
        day = stack.wait_for("SELECT day FROM dnma.visits WHERE visitor_id = "
                             "(SELECT visitor_id FROM dnma.hits WHERE url LIKE '%/old')", lambda v: len(v) == 1,
                             timeout=90)[0][0]
        assert re.search(rf"'held_days': \[[^\]]*'{day.isoformat()}'", stack.log_tail("loader", 200_000))
        # The checks ran by themselves: each one recorded a run that judged without error...
        runs = stack.wait_for("SELECT `check`, error, toUnixTimestamp(ran_at) FROM dnma.quality_check_runs FINAL",
                              lambda v: {r[0] for r in v} == set(CHECKS), timeout=90)
        assert [(check, error) for check, error, _ in runs if error] == []
        # ...and run again on their 2 s interval, unasked.
        last = max(ran_at for *_, ran_at in runs)
        stack.wait_for("SELECT min(toUnixTimestamp(ran_at)) FROM dnma.quality_check_runs FINAL",
                       lambda v: v[0][0] > last, timeout=60)


def test_sigusr1_makes_the_loader_build_visits_and_check_now(tmp_path: Path) -> None:
    import os
    import signal

    with Stack(tmp_path, loader_aggregate_interval_s=3600, quality_checks_interval_s=3600) as stack:
        stack.start_loader()
        stack.start_collector()
        status = stack.data_dir / "quality_status.json"
        stack.wait_for("SELECT 1", lambda _v: status.exists(), timeout=60)  # the first run, at start
        first = status.stat().st_mtime
        with httpx.Client(base_url=stack.collector_url, headers={"User-Agent": UA}) as http:
            res = http.get("/matomo.php", params={"idsite": DEMO_SITE_ID, "rec": 1, "_id": "00000000000000b2",
                                                  "url": "https://ent.demo.example/x", "send_image": 0})
            assert res.status_code == 204
        stack.wait_for("SELECT count() FROM dnma.hits", lambda v: v[0][0] == 1)
        assert stack.reader().command("SELECT count() FROM dnma.visits") == 0  # hourly duty not due
        os.kill(stack.procs["loader"].pid, signal.SIGUSR1)
        stack.wait_for("SELECT count() FROM dnma.visits", lambda v: v[0][0] == 1, timeout=60)
        stack.wait_for("SELECT 1", lambda _v: status.stat().st_mtime > first, timeout=60)
