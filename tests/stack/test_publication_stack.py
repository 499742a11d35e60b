"""The loader publishes the open-data week by itself on the real stack: a hit of the week due
(on the session's pinned clock), a kick (SIGUSR1: visits now, then the duties), and the week's
directory appears with the hit's school in it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
from datetime import datetime, time, timedelta
from pathlib import Path

import httpx
from harness import DEMO_SITE_ID, DEMO_TOKEN, Stack

from aggregator.checks.runner import CHECKS
from aggregator.publication import due_week, parse_schedule, week_days, week_name
from dnma import clock

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def test_loader_publishes_the_due_week(tmp_path: Path) -> None:
    schedule = parse_schedule("monday 06:00")
    assert schedule is not None
    week = due_week(schedule, clock.now())
    monday, _ = week_days(*week)
    wednesday = datetime.combine(monday + timedelta(days=2), time(10, 0), tzinfo=clock.PARIS)
    with Stack(tmp_path, loader_aggregate_interval_s=3600, quality_checks_interval_s=3600) as stack:
        # The checks off: a kick would run them all before the publication (a TOML list).
        with stack.config_path.open("a", encoding="utf-8") as f:
            f.write(f"quality_checks_disabled = {json.dumps(sorted(CHECKS))}\n")
        stack.start_loader()
        stack.start_collector()
        with httpx.Client(base_url=stack.collector_url, headers={"User-Agent": UA}) as http:
            res = http.get("/matomo.php", params={
                "idsite": DEMO_SITE_ID, "rec": 1, "_id": "00000000000000c1", "url": "https://ent.demo.example/n",
                "dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE",
                "cdt": int(wednesday.timestamp()), "token_auth": DEMO_TOKEN, "send_image": 0,
            })
            assert res.status_code == 204
        stack.wait_for("SELECT count() FROM dnma.hits", lambda v: v[0][0] == 1)
        week_dir = stack.data_dir / "exports" / week_name(*week)
        assert not week_dir.exists()  # the start's look found nothing built yet
        os.kill(stack.procs["loader"].pid, signal.SIGUSR1)
        stack.wait_for("SELECT 1", lambda _v: (week_dir / "manifest.json").exists(), timeout=120)
        manifest = json.loads((week_dir / "manifest.json").read_text(encoding="utf-8"))
        rev = manifest["revisions"][0]
        assert (manifest["week"], manifest["latest_revision"], rev["reason"]) == (week_name(*week), 1, "scheduled")
        profils = (week_dir / "fr-en-dnma-par-uai-profils.csv").read_bytes()
        assert rev["files"]["fr-en-dnma-par-uai-profils.csv"] == {
            "rows": 1, "sha256": hashlib.sha256(profils).hexdigest()}
        row = next(csv.DictReader(io.StringIO(profils.decode()), delimiter=";"))
        assert (row["debutsemaine"], row["uai"], row["visites_eleve"]) == (monday.isoformat(), "0350122T", "1")
