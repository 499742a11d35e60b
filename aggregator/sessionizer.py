"""The sessionizer: rebuilds `visits` one site-local day at a time (stage table + atomic
REPLACE PARTITION), finds dirty days by fingerprints, then refreshes the visit rollups.

The loader's periodic passes build a day under way incrementally (`incremental_visits`): only the
visitor-days that received hits since the previous pass (the `visits_arrivals` queue, m0016) are
sessionized again, the day's other visits copied into the swapped partition as they are; the result
is the partition a whole rebuild gives. Past days, imports, kicks and `dnma aggregate` rebuild days
whole as before. The day's rollups are recomputed from its visits at each pass.

`dnma aggregate` runs it as a loop (or --once); in embedded mode the loader, which owns chDB,
calls `aggregate_once` itself and `dnma aggregate` only works while the loader is stopped.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aggregator.ddl import Renderer
from aggregator.migrations.m0003_visits import VISIT_COLUMN_NAMES
from aggregator.rollups import (
    VISIT_ROLLUPS,
    debutsemaine,
    refresh_period_rollups,
    rollup_partition_counts,
    swap_partition,
)
from aggregator.visits_query import array_select, checked_timezones, fingerprints_select, site_days_select
from dnma import clock
from dnma.settings import Settings

log = logging.getLogger("dnma.sessionizer")

# One rebuild at a time per process: the stage tables are shared.
_LOCK = threading.Lock()

# Days built at the same time (VISITS.md: two days in parallel beat one query using two cores),
# each worker on its own connection and its own stage tables.
WORKERS = 2

# Days whose visits are built before their rollups (rebuild_days): a stop waits for at most this
# many days of rollups (a few seconds); a worker idles at most once per chunk, at its end.
CHUNK_DAYS = 16

# A dirty day is rebuilt for its changed sites only, unless they hold more than this share of its
# hits: then one pass over the whole day costs less than copying the others' visits around it.
PARTIAL_MAX_SHARE = 0.5

# Days this close to the hits TTL are left alone: their hits are expiring, not changing, and
# rebuilding them would erase visits that outlive the raw hits.
TTL_MARGIN_DAYS = 2

# A past day still being written to (a log import, a late backlog) is rebuilt once a pass finds it
# as the previous pass left it, or after this many passes at most.
SETTLE_MAX_PASSES = 10

# The queue of visitor-days that received hits (migration m0016), and its taken half.
ARRIVALS = "visits_arrivals"


def _renderer(settings: Settings) -> Renderer:
    from aggregator.migrate import renderer

    return renderer(settings)


def site_timezones(settings: Settings) -> dict[int, str]:
    """Sites whose time zone is not Europe/Paris, from the sites registry."""
    from dnma.sites import SiteRegistry

    registry = SiteRegistry.load(settings.resolved_sites_file)
    return checked_timezones({s.id: s.timezone for s in registry.all()})


def _query_settings(timezones: dict[int, str]) -> dict[str, Any]:
    # With all sites in Paris, GROUP BY (site_id, toDate(ts), visitor_id) is the prefix of the hits
    # sort key (toDate(ts), site_id, visitor_id, ...): aggregating in order (AggregatingInOrderTransform
    # in the plan) keeps memory small (VISITS.md: 0.3 GiB for a 670k-hit day).
    return {"optimize_aggregation_in_order": 1} if not timezones else {}


def current_fingerprints(client, r: Renderer, timezones: dict[int, str]) -> dict[date, tuple[int, int]]:  # type: ignore[no-untyped-def]
    rows = client.query(fingerprints_select(r, timezones)).result_rows
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def stored_fingerprints(client, r: Renderer) -> dict[date, tuple[int, int]]:  # type: ignore[no-untyped-def]
    rows = client.query(f"SELECT day, hits, hash FROM {r.local_name('visits_fingerprints')} FINAL").result_rows
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def _ttl_cutoff(settings: Settings, today: date) -> date:
    """Days up to this one have hits expiring (aggregator.retention), margin included. Counted in
    months, not days: a century's TTL (test stacks) is 1,200 months back, still a valid date."""
    months = settings.hits_ttl_months
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    if year < 1:
        return date.min  # a TTL longer than the calendar: nothing expires
    return date(year, month + 1, min(today.day, 28)) + timedelta(days=TTL_MARGIN_DAYS)


def dirty_fingerprints(client, settings: Settings, timezones: dict[int, str] | None = None,  # type: ignore[no-untyped-def]
                       ) -> dict[date, tuple[int, int]]:
    """Days whose hits differ from what they were when last built (count or summed hash), with
    their current fingerprints, in day order.

    Days without hits any more are not dirty: their hits expired (TTL) while visits stay.
    """
    r = _renderer(settings)
    tzs = site_timezones(settings) if timezones is None else timezones
    current = current_fingerprints(client, r, tzs)
    stored = stored_fingerprints(client, r)
    cutoff = _ttl_cutoff(settings, clock.today())
    return {d: fp for d, fp in sorted(current.items()) if fp != stored.get(d) and d > cutoff}


SiteFingerprints = dict[int, tuple[int, int]]  # site -> (hits, summed hash) of one day


def live_from(timezones: dict[int, str], now: datetime | None = None) -> date:
    """The earliest day still under way for some site: today in the sites' zone furthest behind."""
    moment = now or clock.now()
    return min(moment.astimezone(ZoneInfo(tz)).date() for tz in {"Europe/Paris", *timezones.values()})


class Settling:
    """Which dirty past days a periodic pass rebuilds now, and which days under way this process
    has built (`built_live`: those a later pass may build incrementally).

    A day before `live_from` that keeps receiving hits (a Matomo log import, a backlog drained
    after an outage) would otherwise be rebuilt at every pass while it grows, each pass
    re-sessionizing everything imported so far, on the cores the import needs. Such a day waits
    until a pass finds it with the fingerprint the previous pass saw (nothing arrived for a whole
    interval), or until it has waited SETTLE_MAX_PASSES passes. Days under way are never held
    back: their visits are the live dashboards'.
    """

    def __init__(self, max_passes: int = SETTLE_MAX_PASSES) -> None:
        self.max_passes = max_passes
        self.seen: dict[date, tuple[tuple[int, int], int]] = {}  # day -> (fingerprint, passes waited)
        # Days under way built by this process since it started: every hit they received since
        # then went through the arrivals queue. A day built before (by an older version, or before
        # a crash that could fall between a hit's insert and its arrival's) is built whole first.
        self.built_live: set[date] = set()
        self.built_zones: dict[int, str] = {}  # the sites' time zones they were built with

    def ready(self, dirty: dict[date, tuple[int, int]], first_live: date) -> tuple[list[date], list[date]]:
        """(days to rebuild now, days held back), each in day order."""
        build: list[date] = []
        held: list[date] = []
        seen: dict[date, tuple[tuple[int, int], int]] = {}
        for day, fingerprint in sorted(dirty.items()):
            before = self.seen.get(day)
            if day >= first_live or (before is not None and (before[0] == fingerprint or before[1] >= self.max_passes)):
                build.append(day)
            else:
                seen[day] = (fingerprint, before[1] + 1 if before else 1)
                held.append(day)
        self.seen = seen  # built days and days no longer dirty are forgotten
        return build, held


def current_sites(client, r: Renderer, timezones: dict[int, str], day: date) -> SiteFingerprints:  # type: ignore[no-untyped-def]
    """The day's per-site fingerprints now (site-local days may straddle the Paris days around it)."""
    window = (day - timedelta(days=1), day + timedelta(days=1))
    rows = client.query(f"SELECT site_id, hits, hash FROM ({site_days_select(r, timezones, window)}) "
                        "WHERE day = {day:Date}", parameters={"day": day}).result_rows
    return {int(site): (int(n), int(digest)) for site, n, digest in rows}


def stored_sites(client, r: Renderer, day: date) -> SiteFingerprints:  # type: ignore[no-untyped-def]
    """The per-site fingerprints recorded when the day was last built (empty: none recorded)."""
    rows = client.query(f"SELECT sites FROM {r.local_name('visits_fingerprints')} FINAL WHERE day = {{day:Date}}",
                        parameters={"day": day}).result_rows
    sites = [tuple(t.values()) if isinstance(t, dict) else t for t in (rows[0][0] if rows else [])]  # named tuples
    return {int(site): (int(n), int(digest)) for site, n, digest in sites}


def day_fingerprint(sites: SiteFingerprints) -> tuple[int, int]:
    """The day's (hits, summed hash) from its sites': what fingerprints_select sums (mod 2^64)."""
    return sum(n for n, _ in sites.values()), sum(h for _, h in sites.values()) % (1 << 64)


def changed_sites(now: SiteFingerprints, before: SiteFingerprints) -> list[int] | None:
    """Sites whose hits of the day differ since its last build, or None when the whole day must be
    rebuilt: nothing recorded, or the changed sites hold most of the day's hits."""
    if not before:
        return None
    changed = sorted(site for site in now.keys() | before.keys() if now.get(site) != before.get(site))
    moved = sum(max(now.get(s, (0, 0))[0], before.get(s, (0, 0))[0]) for s in changed)
    if moved > PARTIAL_MAX_SHARE * sum(n for n, _ in now.values()):
        return None
    return changed


def _stage_suffix(worker: int) -> str:
    return "" if worker == 0 else f"_w{worker}"


def _worker_stages(client, r: Renderer, worker: int) -> None:  # type: ignore[no-untyped-def]
    """Stage tables of an extra worker: twins of the migrated `<table>_stage` (same structure and
    partition key, as REPLACE PARTITION requires); not replicated, so single-node only."""
    suffix = _stage_suffix(worker)
    for table in ("visits", *(v.table for v in VISIT_ROLLUPS)):
        client.command(f"CREATE TABLE IF NOT EXISTS {r.local_name(table + '_stage' + suffix)} "
                       f"AS {r.local_name(table + '_stage')}")


def arrived(r: Renderer, timezones: dict[int, str]) -> str:
    """Condition on a row's (site_id, visitor_id): the visitor received hits of `{day:Date}` (site-local)
    since the previous pass, by the taken arrivals. Their Paris day is the local day for Paris sites;
    for the others any of the three Paris days around it (a superset: a visitor-day sessionized
    again unchanged gives the same visits)."""
    tzs = checked_timezones(timezones)
    days = "day = {day:Date}"
    if tzs:
        days += f" OR (site_id IN ({', '.join(map(str, sorted(tzs)))}) AND day BETWEEN {{day:Date}} - 1 AND {{day:Date}} + 1)"
    return (f"(site_id, visitor_id) IN (SELECT site_id, visitor_id FROM {r.local_name(ARRIVALS + '_taken')} "
            f"WHERE {days})")


def take_arrivals(client, r: Renderer) -> None:  # type: ignore[no-untyped-def]
    """Move the arrivals queue into `visits_arrivals_taken`, atomically: a concurrent insert's
    arrivals are either taken now or left for the next pass. What an earlier pass took and did not
    finish stays taken, so it is built again."""
    client.command(f"ALTER TABLE {r.local_name(ARRIVALS)} MOVE PARTITION ID 'all' "
                   f"TO TABLE {r.local_name(ARRIVALS + '_taken')}")


def arrival_days(client, r: Renderer, timezones: dict[int, str]) -> set[date]:  # type: ignore[no-untyped-def]
    """Site-local days the taken arrivals concern: the local days their Paris day overlaps."""
    tzs = checked_timezones(timezones)
    site = f"if(site_id IN ({', '.join(map(str, sorted(tzs)))}), site_id, 0)" if tzs else "0"
    rows = client.query(f"SELECT DISTINCT day, {site} FROM {r.local_name(ARRIVALS + '_taken')}").result_rows
    out: set[date] = set()
    for day, elsewhere in rows:
        if not elsewhere:
            out.add(day)
            continue
        first = datetime.combine(day, datetime.min.time(), clock.PARIS)
        last = datetime.combine(day + timedelta(days=1), datetime.min.time(), clock.PARIS) - timedelta(seconds=1)
        out.update(moment.astimezone(ZoneInfo(tzs[int(elsewhere)])).date() for moment in (first, last))
    return out


def build_visits(client, r: Renderer, timezones: dict[int, str], day: date,  # type: ignore[no-untyped-def]
                 stage_suffix: str = "", whole: bool = False, incremental: bool = False,
                 ) -> tuple[SiteFingerprints, bool]:
    """Rebuild one day of visits atomically; returns the per-site fingerprints it was built from
    (for finish_day) and whether only part of it was sessionized again (never when `whole`).

    `incremental`: the day was built by this process and every hit it received since is in the
    taken arrivals (rebuild_days checks): only those visitors' visits are sessionized again, the
    others copied. Visits depend on their visitor-day's hits only, so this is the whole rebuild.

    The per-site fingerprints are read before building: hits landing during the build make the
    day dirty again, never lost. A site's visits depend on that site's hits only, so the other
    sites' rows copied as they are give the same partition as a whole rebuild; the changed sites'
    hits are read through the sort key (day, then site_id), not by scanning the day."""
    sites = current_sites(client, r, timezones, day)
    settings = _query_settings(timezones)
    stage = f"visits_stage{stage_suffix}"
    columns = ", ".join(f"`{c}`" for c in VISIT_COLUMN_NAMES)
    if incremental and not whole:
        only = arrived(r, timezones)
        swap_partition(
            client, r, "visits",
            f"SELECT {columns} FROM {r.local_name('visits')} WHERE day = {{day:Date}} AND NOT {only} "
            f"UNION ALL SELECT {columns} FROM ({array_select(r, timezones, only)})",
            {"day": day}, day, settings, stage=stage,
        )
        return sites, True
    changed = None if whole else changed_sites(sites, stored_sites(client, r, day))
    if changed is None:
        swap_partition(client, r, "visits", array_select(r, timezones), {"day": day}, day, settings, stage=stage)
    else:
        only = f"site_id IN ({', '.join(map(str, changed))})" if changed else "0"
        swap_partition(
            client, r, "visits",
            f"SELECT {columns} FROM {r.local_name('visits')} WHERE day = {{day:Date}} AND NOT ({only}) "
            f"UNION ALL SELECT {columns} FROM ({array_select(r, timezones, only)})",
            {"day": day}, day, settings, stage=stage,
        )
    return sites, changed is not None


def finish_day(client, r: Renderer, day: date, sites: SiteFingerprints,  # type: ignore[no-untyped-def]
               stage_suffix: str = "") -> int:
    """After build_visits: the day's rollups, then its fingerprints (the day is built only once its
    rollups are); returns its number of visits."""
    refresh_period_rollups(client, r, "day", day, stage_suffix)
    hits, digest = day_fingerprint(sites)
    client.insert(
        r.local_name("visits_fingerprints"),
        [[day, hits, digest, clock.now(), sorted((s, n, d) for s, (n, d) in sites.items())]],
        column_names=["day", "hits", "hash", "built_at", "sites"],
    )
    count = client.query(
        f"SELECT count() FROM {r.local_name('visits')} WHERE day = {{day:Date}}", parameters={"day": day}
    ).result_rows[0][0]
    return int(count)


def _in_parallel(client, settings: Settings, r: Renderer, jobs: list, work,  # type: ignore[no-untyped-def,type-arg]
                 stop: threading.Event | None = None) -> list:  # type: ignore[type-arg]
    """Run work(client, stage_suffix, job) over jobs on up to WORKERS connections; results in job
    order. Once `stop` is set no job starts: the results are those of the jobs done, a prefix."""
    def stopping() -> bool:
        return stop is not None and stop.is_set()

    workers = 1 if r.cluster or len(jobs) < 2 else min(WORKERS, len(jobs))
    if workers == 1:
        done = []
        for job in jobs:
            if stopping():
                break
            done.append(work(client, "", job))
        return done
    from dnma.chclient import get_client

    # One thread per statement: the days themselves fill the cores, and a statement split over
    # threads costs more CPU in all (partial aggregates merged, threads handed work).
    clients = [get_client(settings) for _ in range(workers)]
    try:
        for each in clients:
            each.set_client_setting("max_threads", 1)
        for worker in range(1, workers):
            _worker_stages(client, r, worker)
        todo = list(enumerate(jobs))
        results: dict[int, Any] = {}
        lock = threading.Lock()

        def drain(worker: int) -> None:
            while True:
                with lock:
                    if not todo or stopping():
                        return
                    i, job = todo.pop(0)
                results[i] = work(clients[worker], _stage_suffix(worker), job)

        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(drain, w) for w in range(workers)]:
                f.result()
        done = []
        for i in range(len(jobs)):  # jobs are taken in order: the done ones are a prefix
            if i not in results:
                break
            done.append(results[i])
        return done
    finally:
        for each in clients:
            each.close()


def rebuild_days(client, settings: Settings, days: list[date] | None = None,  # type: ignore[no-untyped-def]
                 stop: threading.Event | None = None, settling: Settling | None = None) -> dict[str, Any]:
    """Rebuild `days` (None: the dirty ones, less those `settling` holds back) and their visit
    rollups. Idempotent.

    Once `stop` is set no further day starts its visits (the days left stay dirty for the next
    pass); the days whose visits were built still get their daily rollups, and their weeks the
    weekly ones, so no rollup lags a built day. `visits_seconds` in the result: the visits phases,
    the sessionizer itself (bench/model.py reports it apart from the whole rebuild)."""
    with _LOCK:
        started = time.monotonic()
        r = _renderer(settings)
        timezones = site_timezones(settings)
        # Explicit days are rebuilt whole; dirty ones for their changed sites, or incrementally.
        held: list[date] = []
        incremental: set[date] = set()
        took = days is None
        first_live = live_from(timezones)
        if days is not None:
            todo = sorted(set(days))
        else:
            # The arrivals are taken before the fingerprints are read: a hit counted in them has
            # its arrival taken now or by the next pass, which builds its day again.
            take_arrivals(client, r)
            dirty = dirty_fingerprints(client, settings, timezones)
            if settling is not None:
                todo, held = settling.ready(dirty, first_live)
            else:
                todo = list(dirty)
            # A day under way with arrivals is built even when its fingerprint has not moved yet
            # (the hits' views commit one after the other): its arrivals are used up by this pass.
            todo = sorted(set(todo) | {d for d in arrival_days(client, r, timezones) if d >= first_live})
            if settling is not None:
                # A site moved to another time zone moves hits between local days: whole days again.
                if settling.built_zones != timezones:
                    settling.built_live, settling.built_zones = set(), dict(timezones)
                settling.built_live = {d for d in settling.built_live if d >= first_live}
                if settings.incremental_visits:
                    incremental = {d for d in todo if d in settling.built_live}
        # Two phases per chunk of days, each over both workers: the visits of the chunk's days (the
        # sessionizer proper), then the rollups of the days built, whose fingerprints are written
        # last. A stop ends the visits phase only: a day whose visits were swapped in always gets
        # its rollups, and chunks bound that work (a stopping loader waits for it).
        built: list[tuple[SiteFingerprints, bool]] = []
        counts: list[int] = []
        visits_seconds = 0.0
        for first in range(0, len(todo), CHUNK_DAYS):
            chunk = todo[first:first + CHUNK_DAYS]
            t0 = time.monotonic()
            done = _in_parallel(client, settings, r, chunk, lambda c, suffix, d: build_visits(
                c, r, timezones, d, suffix, whole=days is not None, incremental=d in incremental), stop)
            visits_seconds += time.monotonic() - t0
            counts += _in_parallel(client, settings, r, list(zip(chunk[:len(done)], done, strict=True)),
                                   lambda c, suffix, job: finish_day(c, r, job[0], job[1][0], suffix))
            built += done
            if len(done) < len(chunk):
                break
        if took and len(built) == len(todo):
            # Every day under way with arrivals is built: the taken ones are used up (those of past
            # days too: a past day is found dirty by its fingerprints and rebuilt whole).
            client.command(f"TRUNCATE TABLE {r.local_name(ARRIVALS + '_taken')}")
        todo = todo[:len(built)]
        if settling is not None:
            settling.built_live.update(d for d in todo if d >= first_live)
        weeks = sorted({debutsemaine(d) for d in todo})
        _in_parallel(client, settings, r, weeks, lambda c, suffix, w: refresh_period_rollups(
            c, r, "debutsemaine", w, suffix))
        visits = {d.isoformat(): n for d, n in zip(todo, counts, strict=True)}
        result = {
            "days": list(visits),
            "partial_days": [d.isoformat() for d, (_, partial) in zip(todo, built, strict=True)
                             if partial and d not in incremental],
            "incremental_days": [d.isoformat() for d in todo if d in incremental],
            "held_days": [d.isoformat() for d in held],
            "visits": sum(visits.values()),
            "visits_per_day": visits,
            "rollup_partitions": rollup_partition_counts(todo) if todo else {},
            "visits_seconds": round(visits_seconds, 3),
            "seconds": round(time.monotonic() - started, 3),
        }
    if todo:
        log.info("visits rebuilt", extra={"days": len(todo), "visits": result["visits"], "seconds": result["seconds"]})
    return result


def aggregate_once(client, settings: Settings, stop: threading.Event | None = None,  # type: ignore[no-untyped-def]
                   settling: Settling | None = None) -> dict[str, Any]:
    """One pass: rebuild every dirty day (until `stop` is set), less the past days `settling`
    holds back while they change. The loader calls this periodically."""
    return rebuild_days(client, settings, None, stop, settling)


# --- command line: dnma aggregate
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--days", default="", help="rebuild these days (YYYY-MM-DD,...) and exit")
    p.add_argument("--interval", type=float, default=300.0, help="seconds between passes of the loop")


def _parse_days(text: str) -> list[date]:
    return [date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()]


def run(args: argparse.Namespace) -> int:
    from aggregator.jobs import run_command
    from dnma.admin import EXIT_BUSY

    # Each pass a job: in the live loader when one runs (it owns chDB), else in this process.
    days = [d.isoformat() for d in _parse_days(args.days)] if args.days else None
    while True:
        code = run_command("aggregate", {"days": days})
        if args.once or days or code not in (0, EXIT_BUSY):  # the loop retries after a busy answer
            return code
        time.sleep(args.interval)
