"""The sessionizer: rebuilds `visits` one site-local day at a time (stage table + atomic
REPLACE PARTITION), finds dirty days by fingerprints, then refreshes the visit rollups.

`dnma aggregate` runs it as a loop (or --once); in embedded mode the loader, which owns chDB,
calls `aggregate_once` itself and `dnma aggregate` only works while the loader is stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any

from aggregator.ddl import Renderer
from aggregator.rollups import refresh_visit_rollups, swap_partition
from aggregator.visits_query import array_select, checked_timezones, day_filter, fingerprints_select
from dnma.settings import Settings, get_settings

log = logging.getLogger("dnma.sessionizer")

# One rebuild at a time per process: the stage tables are shared.
_LOCK = threading.Lock()

# Days this close to the hits TTL are left alone: their hits are expiring, not changing, and
# rebuilding them would erase visits that outlive the raw hits.
TTL_MARGIN_DAYS = 2


def _renderer(settings: Settings) -> Renderer:
    from aggregator.migrate import renderer

    return renderer(settings)


def site_timezones(settings: Settings) -> dict[int, str]:
    """Sites whose time zone is not Europe/Paris, from the sites registry."""
    from dnma.sites import SiteRegistry

    registry = SiteRegistry.load(settings.resolved_sites_file)
    return checked_timezones({s.id: s.timezone for s in registry.all()})


def _query_settings(timezones: dict[int, str]) -> dict[str, Any]:
    # With all sites in Paris, GROUP BY (site_id, toDate(ts), visitor_id) is a prefix of the hits
    # sort key: aggregating in order keeps memory small (VISITS.md: 0.3 GiB for a 670k-hit day).
    return {"optimize_aggregation_in_order": 1} if not timezones else {}


def current_fingerprints(client, r: Renderer, timezones: dict[int, str]) -> dict[date, tuple[int, int]]:  # type: ignore[no-untyped-def]
    rows = client.query(fingerprints_select(r, timezones)).result_rows
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def stored_fingerprints(client, r: Renderer) -> dict[date, tuple[int, int]]:  # type: ignore[no-untyped-def]
    rows = client.query(f"SELECT day, hits, hash FROM {r.local_name('visits_fingerprints')} FINAL").result_rows
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def _ttl_cutoff(settings: Settings, today: date) -> date:
    months = settings.hits_ttl_months
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return date(year, month + 1, min(today.day, 28)) + timedelta(days=TTL_MARGIN_DAYS)


def dirty_days(client, settings: Settings, timezones: dict[int, str] | None = None) -> list[date]:  # type: ignore[no-untyped-def]
    """Days whose hits differ from what they were when last built (count or summed hash).

    Days without hits any more are not dirty: their hits expired (TTL) while visits stay.
    """
    r = _renderer(settings)
    tzs = site_timezones(settings) if timezones is None else timezones
    current = current_fingerprints(client, r, tzs)
    stored = stored_fingerprints(client, r)
    cutoff = _ttl_cutoff(settings, date.today())
    return sorted(d for d, fp in current.items() if fp != stored.get(d) and d > cutoff)


def rebuild_day(client, r: Renderer, timezones: dict[int, str], day: date) -> int:  # type: ignore[no-untyped-def]
    """Rebuild one day of visits atomically; returns its number of visits."""
    # Fingerprint first: hits landing during the build make the day dirty again, never lost.
    fingerprint = client.query(
        fingerprints_select(r, timezones, where=day_filter(timezones)), parameters={"day": day}
    ).result_rows
    swap_partition(
        client, r, "visits", array_select(r, timezones), {"day": day}, day, _query_settings(timezones)
    )
    hits, digest = (int(fingerprint[0][1]), int(fingerprint[0][2])) if fingerprint else (0, 0)
    client.insert(
        r.local_name("visits_fingerprints"),
        [[day, hits, digest, datetime.now()]],
        column_names=["day", "hits", "hash", "built_at"],
    )
    count = client.query(
        f"SELECT count() FROM {r.local_name('visits')} WHERE day = {{day:Date}}", parameters={"day": day}
    ).result_rows[0][0]
    return int(count)


def rebuild_days(client, settings: Settings, days: list[date] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Rebuild `days` (None: the dirty ones) and their visit rollups. Idempotent."""
    with _LOCK:
        started = time.monotonic()
        r = _renderer(settings)
        timezones = site_timezones(settings)
        todo = sorted(set(days)) if days is not None else dirty_days(client, settings, timezones)
        visits = {d.isoformat(): rebuild_day(client, r, timezones, d) for d in todo}
        rollups = refresh_visit_rollups(client, r, todo) if todo else {}
        result = {
            "days": list(visits),
            "visits": sum(visits.values()),
            "visits_per_day": visits,
            "rollup_partitions": rollups,
            "seconds": round(time.monotonic() - started, 3),
        }
    if todo:
        log.info("visits rebuilt", extra={"days": len(todo), "visits": result["visits"], "seconds": result["seconds"]})
    return result


def aggregate_once(client, settings: Settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One pass: rebuild every dirty day. The loader calls this periodically."""
    return rebuild_days(client, settings, None)


# --- command line: dnma aggregate
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--days", default="", help="rebuild these days (YYYY-MM-DD,...) and exit")
    p.add_argument("--interval", type=float, default=300.0, help="seconds between passes of the loop")


def _parse_days(text: str) -> list[date]:
    return [date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()]


def run(args: argparse.Namespace) -> int:
    from aggregator.migrate import migrate
    from dnma.chclient import get_client

    settings = get_settings()
    client = get_client(settings)
    migrate(client, settings)
    if args.days:
        print(json.dumps(rebuild_days(client, settings, _parse_days(args.days))))
        return 0
    while True:
        print(json.dumps(aggregate_once(client, settings)), flush=True)
        if args.once:
            return 0
        time.sleep(args.interval)
