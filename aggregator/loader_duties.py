"""The loader's side duties, on their own thread and ClickHouse client so loading never waits for
them: a sessionizer pass (visits), the quality checks and the weekly publication, each when due, all
at once on a kick.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from aggregator.loader_health import aggregate_pass, job_finished, record_memory
from aggregator.loader_logs import log_event
from aggregator.write_gate import WriteGate
from dnma.settings import Settings

SIDE_DUTY_JOIN_S = 25.0  # how long a stopping loader waits for a sessionizer day or a check to end
MEMORY_SAMPLE_S = 30.0  # how often the status file's memory section is refreshed
PUBLICATION_CHECK_S = 300.0  # how often the weekly publication looks whether its week is due and settled
QUARANTINE_TRIM_S = 60.0  # how often the quarantine's bounds are applied (aggregator/quarantine.py)


def run_side_duties(settings: Settings, stop: threading.Event, kick: threading.Event,
                    gate: WriteGate | None = None) -> None:
    """Visits every loader_aggregate_interval_s, quality checks every quality_checks_interval_s,
    until `stop`; `kick` (SIGUSR1) runs both now. Each duty passes `gate` (a backup waits for it)."""
    gate = gate or WriteGate()
    from aggregator.checks.runner import checks_due, run_checks
    from aggregator.publication import publication_duty
    from aggregator.sessionizer import Settling, aggregate_once
    from dnma.chclient import get_client

    client = get_client(settings)
    aggregated_at = time.monotonic()
    checked_at: float | None = None
    publication_at: float | None = None
    memory_at: float | None = None
    trimmed_at: float | None = None
    settling = Settling()
    try:
        while not stop.wait(1.0):
            # SIGUSR1 (sent by `dnma up` after loading demo data): both duties now, in order.
            kicked = kick.is_set()
            kick.clear()
            interval = settings.loader_aggregate_interval_s
            if kicked or (interval > 0 and time.monotonic() - aggregated_at >= interval):
                # A kick builds every dirty day; periodic passes hold back past days still changing.
                with gate.writing():
                    _duty("aggregated", functools.partial(aggregate_pass, aggregate_once, client, settings, stop,
                                                          None if kicked else settling))
                # Counted from the end of the pass: a long pass (a large day) is followed by a
                # full interval of loading, never by another pass straight away.
                aggregated_at = time.monotonic()
            if stop.is_set():
                break
            if kicked or checks_due(settings, checked_at):
                checked_at = time.time()
                with gate.writing():
                    _duty("checked", lambda: {"transitions": len(run_checks(client, settings, stop=stop))})
            if stop.is_set():
                break
            # The weekly open-data publication (aggregator.publication): due, settled, late data, retention.
            if kicked or publication_at is None or time.monotonic() - publication_at >= PUBLICATION_CHECK_S:
                publication_at = time.monotonic()
                _duty("publication", functools.partial(publication_duty, client, settings, stop=stop))
            if kicked or trimmed_at is None or time.monotonic() - trimmed_at >= QUARANTINE_TRIM_S:
                trimmed_at = time.monotonic()
                with gate.writing():
                    _duty("quarantine_trimmed", functools.partial(_trim_quarantine, client, settings))
            if memory_at is None or time.monotonic() - memory_at >= MEMORY_SAMPLE_S:
                memory_at = time.monotonic()
                try:
                    record_memory(client)
                except Exception as exc:  # noqa: BLE001 - a gauge: loading goes on without it
                    log_event("memory_sample_failed", logging.WARNING, error=type(exc).__name__, detail=str(exc)[:200])
    finally:
        client.close()


def _trim_quarantine(client: Any, settings: Settings) -> dict[str, int]:
    from aggregator.quarantine import trim
    from dnma.sites import SiteRegistry

    return trim(client, settings, (s.id for s in SiteRegistry.load(settings.resolved_sites_file).all()))


_JOB_NAMES = {"aggregated": "aggregate", "checked": "checks"}  # loader_health's job names


def _duty(name: str, fn: Any) -> None:
    t0 = time.perf_counter()
    try:
        result = fn()
        # Quiet (DEBUG): a pass that found nothing to do; its timings alone do not count.
        quiet = isinstance(result, dict) and not any(v for k, v in result.items() if not k.endswith("seconds"))
        log_event(name, logging.DEBUG if quiet else logging.INFO,
                  ms=round((time.perf_counter() - t0) * 1000, 1), result=result if isinstance(result, dict) else None)
        job_finished(_JOB_NAMES.get(name, name), ok=True, seconds=time.perf_counter() - t0)
    except Exception as exc:  # recomputed next time; loading must go on
        job_finished(_JOB_NAMES.get(name, name), ok=False, seconds=time.perf_counter() - t0)
        log_event(f"{name}_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc)[:200])
