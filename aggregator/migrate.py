"""Numbered migrations: `aggregator/migrations/mNNNN_name.py`, each with `up(r) -> list[str]` and
`down(r) -> list[str]`, recorded in `dnma.schema_migrations`. `dnma migrate` is idempotent."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from aggregator import migrations as migrations_pkg
from aggregator.ddl import Renderer
from dnma.settings import Settings, get_settings


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
    return Renderer(
        database=settings.clickhouse_database,
        cluster=settings.clickhouse_cluster,
        hits_ttl_months=settings.hits_ttl_months,
    )


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


def migrate(client, settings: Settings | None = None, until: int | None = None) -> list[Migration]:  # type: ignore[no-untyped-def]
    """Apply every migration not yet recorded (numbered up to `until`); returns the ones applied now.

    A migration with `SETTLE_LOADER_FIRST` rebuilds `hits` without its insert-deduplication log:
    the loader's pending batch (maybe inserted before a crash, redone with the same token) is
    inserted first, while ClickHouse still recognises its token."""
    settings = settings or get_settings()
    r = renderer(settings)
    _ensure_ledger(client, r)
    done = applied(client, r)
    ran = []
    for m in discover():
        if m.number in done or (until is not None and m.number > until):
            continue
        if getattr(m.module, "SETTLE_LOADER_FIRST", False) and not r.cluster:
            from aggregator.loader import settle_pending

            settle_pending(client, settings)
        for stmt in m.up(r):
            client.command(stmt)
        client.insert(r.name("schema_migrations"), [[m.number, m.name]], column_names=["number", "name"])
        ran.append(m)
    return ran


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print", action="store_true", help="print the rendered DDL instead of running it")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.print:
        for stmt in render_all(renderer(settings)):
            print(stmt + ";\n")
        return 0
    from dnma.chclient import get_client

    client = get_client(settings)
    ran = migrate(client, settings)
    print(f"migrations applied: {[f'{m.number:04d}_{m.name}' for m in ran] or 'none (up to date)'}")
    return 0
