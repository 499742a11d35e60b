"""Numbered migrations: `aggregator/migrations/mNNNN_name.py`, each with `up(r) -> list[str]` and
`down(r) -> list[str]`, recorded in `dnma.schema_migrations`. `dnma migrate` is idempotent.

A shipped migration never changes (aggregator.migration_digests): it carries its own DDL text and
imports nothing but aggregator.ddl; what varies per install (the hits TTL) is set after migrating
(aggregator.retention). A new migration: a new module, then `dnma migrate --record-digests`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from aggregator import migrations as migrations_pkg
from aggregator.ddl import Renderer
from aggregator.loader_state import LoaderState
from dnma import clock
from dnma.settings import Settings, get_settings

# Inserts the loader's pending batch (aggregator.loader.settle_pending, passed in by the loader).
Settle = Callable[[Any, Settings], None]


class PendingBatch(RuntimeError):
    """A migration rebuilding `hits` is due while the loader has a batch pending, and no settle."""


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    module: ModuleType

    def up(self, r: Renderer) -> list[str]:
        return list(self.module.up(r))

    def down(self, r: Renderer) -> list[str]:
        return list(self.module.down(r))


def discover() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(migrations_pkg.__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            module = importlib.import_module(f"aggregator.migrations.{info.name}")
            found.append(Migration(int(info.name[1:5]), info.name[6:], module))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if len(numbers) != len(set(numbers)):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


def renderer(settings: Settings) -> Renderer:
    return Renderer(database=settings.clickhouse_database, cluster=settings.clickhouse_cluster)


def render_all(r: Renderer) -> list[str]:
    """Every statement of every migration, in order (for review and the cluster DDL test)."""
    out = [r.create_database()]
    for m in discover():
        out.extend(m.up(r))
    return out


def _ensure_ledger(client, r: Renderer) -> None:  # type: ignore[no-untyped-def]
    client.command(r.create_database())
    for stmt in r.create_table(
        "schema_migrations",
        "number UInt32, name String, applied_at DateTime DEFAULT now()",
        order_by="number",
        family="ReplacingMergeTree",
    ):
        client.command(stmt)


def applied(client, r: Renderer) -> set[int]:  # type: ignore[no-untyped-def]
    rows = client.query(f"SELECT DISTINCT number FROM {r.name('schema_migrations')} FINAL").result_rows
    return {int(row[0]) for row in rows}


def migrate(client, settings: Settings | None = None, until: int | None = None,  # type: ignore[no-untyped-def]
            settle: Settle | None = None) -> list[Migration]:
    """Apply every migration not yet recorded (numbered up to `until`); returns the ones applied now.

    A migration with `SETTLE_LOADER_FIRST` rebuilds `hits` without its insert-deduplication log:
    the loader's pending batch (maybe inserted before a crash, redone with the same token) is
    inserted first by `settle`, while ClickHouse still recognises its token. Without `settle`
    such a batch stops the migration (PendingBatch): the loader's start settles it."""
    settings = settings or get_settings()
    r = renderer(settings)
    _ensure_ledger(client, r)
    done = applied(client, r)
    ran = []
    for m in discover():
        if m.number in done or (until is not None and m.number > until):
            continue
        if getattr(m.module, "SETTLE_LOADER_FIRST", False) and not r.cluster:
            _settle_first(client, settings, m, settle)
        for stmt in m.up(r):
            client.command(stmt)
        # applied_at on DNMA's clock, never ClickHouse's now() (the column's DEFAULT is not used).
        client.insert(r.name("schema_migrations"), [[m.number, m.name, clock.now()]],
                      column_names=["number", "name", "applied_at"])
        ran.append(m)
    return ran


def _settle_first(client, settings: Settings, m: Migration, settle: Settle | None) -> None:  # type: ignore[no-untyped-def]
    if LoaderState.load(settings.resolved_spool_dir).pending is None:
        return
    if settle is None:
        raise PendingBatch(f"migration {m.number:04d}_{m.name} rebuilds hits and the loader has a batch pending "
                           "(it stopped mid-insert): run `dnma loader --once`, which inserts it, then migrates")
    settle(client, settings)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print", action="store_true", help="print the rendered DDL instead of running it")
    p.add_argument("--record-digests", action="store_true",
                   help="append the digests of new migrations to aggregator/migrations/DIGESTS (never rewrites one)")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.print:
        for stmt in render_all(renderer(settings)):
            print(stmt + ";\n")
        return 0
    if args.record_digests:
        from aggregator.migration_digests import record_missing

        print(f"digests recorded: {record_missing(discover()) or 'none (all recorded)'}")
        return 0
    from aggregator.jobs import run_command

    # In the live loader (loading pauses while it migrates), else on the storage opened here.
    return run_command("migrate", {})
