"""The functions of the built-in jobs (aggregator/jobs.py lists them): what `dnma migrate`,
`aggregate`, `checks run|ack`, `referentiel load` and `export` do, in the live loader or in the
command's own process. Each is `fn(ctx: JobContext, **typed args) -> exit code`."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import IO, Any, cast

from aggregator.jobs import JobContext
from dnma import admin


def line(text: str) -> str:
    return text + "\n"


# --- the jobs -----------------------------------------------------------------------------------


def ping_job(ctx: JobContext) -> int:
    return 0


def migrate_job(ctx: JobContext) -> int:
    from aggregator.durability import apply_durability
    from aggregator.migrate import PendingBatch, migrate, renderer
    from aggregator.retention import apply_retention

    client, settings = ctx.client(), ctx.settings
    try:
        ran = migrate(client, settings, settle=ctx.settle)
    except PendingBatch as exc:
        ctx.err(f"dnma migrate: {exc}")
        return 1
    ctx.out(line(f"migrations applied: {[f'{m.number:04d}_{m.name}' for m in ran] or 'none (up to date)'}"))
    altered = apply_retention(client, renderer(settings), settings)
    ctx.out(line(f"retention TTLs set on: {altered or 'none (already set)'}"))
    synced = apply_durability(client, renderer(settings))
    ctx.out(line(f"parts fsynced on insert, set on: {synced or 'none (already set)'}"))
    return 0


def _migrated(ctx: JobContext) -> Any:
    """The client, the schema brought up to date first when the command runs without a loader (a
    live loader migrated when it started; `dnma migrate` is how it migrates again)."""
    client = ctx.client()
    if not ctx.in_loader:
        from aggregator.migrate import migrate

        migrate(client, ctx.settings)
    return client


def aggregate_job(ctx: JobContext, days: list[date] | None) -> int:
    from aggregator.sessionizer import aggregate_once, rebuild_days

    client = _migrated(ctx)
    if days:
        result = rebuild_days(client, ctx.settings, days, ctx.stop)
    else:
        result = aggregate_once(client, ctx.settings, ctx.stop)
    from aggregator.checks.perimetres import sync

    sync(client, ctx.settings)  # the ENTs' declared perimeters, as the loader's passes write them
    ctx.out(line(json.dumps(result)))
    return 0


def checks_run_job(ctx: JobContext, checks: list[str] | None, window: str | None, now: str | None) -> int:
    from aggregator.checks.cli import parse_time
    from aggregator.checks.runner import run_checks, selected

    try:
        selected(ctx.settings, checks)
        bounds = None
        if window:
            start, _, end = window.partition("/")
            bounds = (parse_time(start), parse_time(end))
        at = parse_time(now) if now else (bounds[1] if bounds else None)
    except ValueError as exc:
        ctx.err(f"dnma checks run: {exc}")
        return 2
    transitions = run_checks(ctx.client(), ctx.settings, only=checks, now=at, window=bounds, stop=ctx.stop)
    for t in transitions:
        ctx.out(line(f"{t.change:<9} {t.check:<18} {t.scope_kind}:{t.scope_value:<12} {t.severity:<8} {t.message}"))
    ctx.out(line(f"{len(transitions)} transition(s)"))
    return 0


def checks_ack_job(ctx: JobContext, check: str, scope_kind: str, scope_value: str, by: str, note: str | None) -> int:
    from aggregator.checks.store import acknowledge

    found = acknowledge(ctx.client(), ctx.settings.clickhouse_database, check, scope_kind, scope_value, by, note or "")
    if not found:
        ctx.err(f"dnma checks ack: no open alert {check} {scope_kind}:{scope_value} (see `dnma checks list`)")
        return 1
    ctx.out(line(f"acknowledged {found} open alert(s) {check} {scope_kind}:{scope_value} by {by}"))
    return 0


def referentiel_load_job(ctx: JobContext, files: list[Path], replace: bool | None, annee: int | None) -> int:
    from aggregator.referentiel import load_files

    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        ctx.err(f"not found: {', '.join(missing)}")
        return 2
    by_year = {} if annee is None else {"annee": annee}  # default: the school year of today
    counts = load_files(_migrated(ctx), ctx.settings, files, replace=bool(replace), **by_year)
    for kind, n in counts.items():
        ctx.out(line(f"{kind}: {n}"))
    return 0


class _Sink:
    """A text file for csv.writer, written through a job's `out` in chunks."""

    def __init__(self, out: admin.Write, chunk: int = 64 * 1024) -> None:
        self.out, self.chunk, self.parts, self.size = out, chunk, list[str](), 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= self.chunk:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self.parts:
            self.out("".join(self.parts))
            self.parts, self.size = [], 0


def export_job(ctx: JobContext, dataset: str, debut: date, fin: date) -> int:
    from aggregator.exports import DATASETS, write

    sink = _Sink(ctx.out)
    n = write(ctx.client(), DATASETS[dataset], debut, fin, cast(IO[str], sink), ctx.settings.clickhouse_database)
    sink.flush()
    ctx.report({"rows": n})
    return 0
