"""What the loader's threads tell ops beyond its batches, gathered here and written by the main
loop into its status file (loader_status.json; the collector's /metrics and `dnma status` read it):
job runs and failures (side duties, admin-channel jobs) and the sessionizer's freshness.

Jobs count themselves with `job_finished(name, ok=...)` or `with counted_job(name): ...`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dnma.settings import Settings

_lock = threading.Lock()
_jobs: dict[str, dict[str, Any]] = {}
_freshness: dict[str, Any] = {}
_memory: dict[str, Any] = {}

# chDB's own accounting, sampled by the side duties (a process's RSS alone does not say whether
# its growth is ClickHouse's caches following the data, its query memory, or Python's heap).
_CHDB_MEMORY_METRICS = ("MemoryTracking", "MarkCacheBytes", "PrimaryIndexCacheBytes", "UncompressedCacheBytes",
                        "QueryCacheBytes", "QueryConditionCacheBytes", "CompiledExpressionCacheBytes", "PageCacheBytes")

# Present at 0 from the start: the side duties (aggregator/loader_duties.py). Admin-channel jobs
# count as admin.<job> (aggregator/admin.py) from their first run.
KNOWN_JOBS = ("aggregate", "checks", "publication")


def job_finished(name: str, *, ok: bool, seconds: float = 0.0) -> None:
    """Count one run of job `name` (and one failure unless `ok`)."""
    with _lock:
        job = _jobs.setdefault(name, _new_job())
        job["runs"] += 1
        job["failures"] += 0 if ok else 1
        job["last_run_at"] = time.time()
        job["last_ok"] = ok
        job["last_seconds"] = round(seconds, 3)


@contextmanager
def counted_job(name: str) -> Iterator[None]:
    """Count the block as one run of `name`; an exception escaping it is a failure (re-raised)."""
    t0 = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        job_finished(name, ok=ok, seconds=time.perf_counter() - t0)


def _new_job() -> dict[str, Any]:
    return {"runs": 0, "failures": 0, "last_run_at": 0.0, "last_ok": True, "last_seconds": 0.0}


def aggregate_pass(aggregate: Callable[..., dict[str, Any]], client: Any, settings: Settings,
                   *args: Any) -> dict[str, Any]:
    """A sessionizer pass, `aggregate(client, settings, *args)`, then its freshness recorded and
    the ENTs' declared perimeters rewritten if the registry or the referential changed (the
    dashboards' tagging coverage reads them; dnma/indicators.py)."""
    from aggregator.checks.perimetres import sync

    result = aggregate(client, settings, *args)
    record_freshness(client, settings, result)
    try:
        sync(client, settings)
    except Exception:  # the visits are built: a failed rewrite is retried on the next pass
        logging.getLogger("dnma.loader").exception("perimetres_ent_sync_failed")
    return result


def record_freshness(client: Any, settings: Settings, result: dict[str, Any]) -> None:
    """How far the visits trail the hits after a pass: the newest hit's and the newest visit end's
    times, their difference, and the past days the pass held back (still changing)."""
    db = settings.clickhouse_database
    newest = client.query(
        f"SELECT (SELECT toUnixTimestamp(max(ts)) FROM {db}.hits), "
        f"(SELECT toUnixTimestamp(max(`end`)) FROM {db}.visits)"
    ).result_rows[0]
    newest_hit, newest_visit = (int(v or 0) for v in newest)
    with _lock:
        _freshness.update({
            "pass_at": time.time(),
            "newest_hit_ts": newest_hit,
            "newest_visit_end_ts": newest_visit,
            "visits_behind_hits_s": max(0, newest_hit - newest_visit) if newest_hit else 0,
            "held_days": len(result.get("held_days", ())),
            "built_days": len(result.get("days", ())),
        })


def record_memory(client: Any) -> None:
    """Where the loader's memory is: chDB's tracked memory and caches (system.metrics), the parts'
    primary keys held in memory, and Python's allocated blocks."""
    names = ", ".join(f"'{m}'" for m in _CHDB_MEMORY_METRICS)
    rows = client.query(f"SELECT metric, value FROM system.metrics WHERE metric IN ({names})").result_rows
    keys = client.query("SELECT sum(primary_key_bytes_in_memory_allocated), count() "
                        "FROM system.parts WHERE active").result_rows[0]
    sample: dict[str, Any] = {f"chdb_{_snake(name)}": int(value) for name, value in rows}
    sample.update(primary_key_bytes=int(keys[0] or 0), active_parts=int(keys[1] or 0),
                  python_allocated_blocks=sys.getallocatedblocks(), sampled_at=time.time())
    with _lock:
        _memory.clear()
        _memory.update(sample)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def snapshot() -> dict[str, Any]:
    """The sections this module adds to the status file."""
    with _lock:
        jobs = {name: _new_job() for name in KNOWN_JOBS}
        jobs.update({name: dict(job) for name, job in _jobs.items()})
        return {"jobs": jobs, "freshness": dict(_freshness), "memory": dict(_memory)}
