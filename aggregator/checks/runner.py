"""Runs the checks: each one judges its window, its findings update `dnma.quality_alerts`, then the
gauges file and the webhook are refreshed. The loader calls `run_checks` when `checks_due`."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from aggregator.checks import (
    clock_jumps,
    clock_skew,
    coverage,
    duplicates,
    ingestion,
    invalid_uai,
    lateness,
    missing_properties,
    perimeter,
    silence,
    unknown_uai,
    vocabulary,
    volume,
)
from aggregator.checks.base import Check, CheckContext
from aggregator.checks.notify import notify_editors, post_webhook, write_status
from aggregator.checks.perimetres import sync as sync_perimeters
from aggregator.checks.store import Transition, apply, record_run
from dnma import clock
from dnma.clock import PARIS
from dnma.settings import Settings

CHECKS: dict[str, Check] = {
    m.CHECK.name: m.CHECK
    for m in (silence, volume, invalid_uai, unknown_uai, missing_properties, vocabulary, perimeter, coverage,
              lateness, clock_skew, duplicates, ingestion, clock_jumps)
}
log = logging.getLogger("dnma.checks")


def checks_due(settings: Settings, last_run: float | None, now: float | None = None) -> bool:
    """True when `quality_checks_interval_s` has passed since `last_run` (unix seconds)."""
    interval = settings.quality_checks_interval_s
    if interval <= 0:
        return False
    return last_run is None or (now if now is not None else time.time()) - last_run >= interval


def selected(settings: Settings, only: list[str] | None) -> list[Check]:
    if only:
        unknown = sorted(set(only) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks: {unknown}; known: {sorted(CHECKS)}")
        return [CHECKS[n] for n in only]
    return [c for name, c in CHECKS.items() if name not in settings.quality_checks_disabled]


def run_checks(
    client: Any,
    settings: Settings,
    *,
    only: list[str] | None = None,
    now: datetime | None = None,
    window: tuple[datetime, datetime] | None = None,
    stop: threading.Event | None = None,
) -> list[Transition]:
    """Run the checks once; returns the alerts that opened or resolved. One failing check is logged
    and recorded in `quality_check_runs`; the others still run. A set `stop` (a stopping loader)
    ends the run between two checks: the ones not run wait for the next run."""
    run_at = (now or clock.now(PARIS)).astimezone(PARIS).replace(microsecond=0)
    ctx = CheckContext(client, settings, run_at, explicit_window=window)
    try:  # the ENTs' declared perimeters, for the coverage check and the dashboards (dnma/indicators.py)
        sync_perimeters(client, settings, ctx.sites)
    except Exception:  # never keeps the checks from running; coverage syncs again and reports its error
        log.exception("perimetres_ent_sync_failed")
    db = settings.clickhouse_database
    transitions: list[Transition] = []
    runs: dict[str, dict[str, Any]] = {}
    for check in selected(settings, only):
        if stop is not None and stop.is_set():
            log.info("quality_checks_interrupted", extra={"checks": len(runs)})
            break
        t0 = time.perf_counter()
        error = ""
        result = None
        try:
            result = check.run(ctx)
            transitions += apply(client, db, check.name, result, run_at)
        except Exception as exc:  # a broken check must not hide the others' alerts
            error = f"{type(exc).__name__}: {exc}"
            log.exception("quality_check_failed", extra={"check": check.name})
        ms = round((time.perf_counter() - t0) * 1000, 1)
        record_run(client, db, check.name, run_at, ms, result, error)
        runs[check.name] = {"ran_at": run_at.timestamp(), "duration_ms": ms, "ok": not error,
                            "findings": len(result.findings) if result else 0}
    write_status(settings, client, runs, list(CHECKS))
    post_webhook(settings, transitions, run_at=run_at.isoformat())
    try:  # the editors' own webhooks and e-mails: the alerts about their sites and projects
        notify_editors(settings, ctx.sites, transitions, run_at=run_at.isoformat())
    except Exception:  # never loses the run's alerts: they are in the table and on the dashboard
        log.exception("quality_editor_notifications_failed")
    log.info("quality_checks_ran", extra={"checks": len(runs), "opened": sum(t.change == "opened" for t in transitions),
                                          "resolved": sum(t.change == "resolved" for t in transitions)})
    return transitions
