"""Shipped migrations never change: their rendered DDL matches the digests recorded when they
shipped, they import nothing that later work edits, and every down() undoes its up() on real chDB."""

from __future__ import annotations

import ast
from pathlib import Path

import clickhouse_connect
import pytest

from aggregator import migration_digests
from aggregator.ddl import Renderer
from aggregator.migrate import discover, migrate
from dnma.hits import HIT_COLUMNS
from dnma.settings import Settings


@pytest.fixture()
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    yield c
    c.close()


def test_no_shipped_migration_changed() -> None:
    recorded = migration_digests.recorded()
    changed = [k for k, sha in migration_digests.current(discover()).items() if k in recorded and recorded[k] != sha]
    assert not changed, (f"a shipped migration changed: write a new migration instead ({', '.join(changed)}; "
                         f"digests in {migration_digests.DIGESTS})")


def test_every_migration_has_a_recorded_digest() -> None:
    recorded = migration_digests.recorded()
    missing = [k for k in migration_digests.current(discover()) if k not in recorded]
    assert not missing, (f"no digest recorded for {', '.join(missing)}: once the migration is final, run "
                         "`dnma migrate --record-digests` (it appends them to aggregator/migrations/DIGESTS) "
                         "and commit that file")


def test_recording_appends_the_missing_digests_and_rewrites_none(tmp_path: Path) -> None:
    path = tmp_path / "DIGESTS"
    first, *_ = discover()
    tampered = f"{migration_digests.key(first, 'single')} {'0' * 64}\n"
    path.write_text(migration_digests.HEADER + tampered, encoding="utf-8")
    added = migration_digests.record_missing(discover(), path)
    assert migration_digests.key(first, "single") not in added
    assert len(added) == 2 * len(discover()) - 1
    assert path.read_text(encoding="utf-8").startswith(migration_digests.HEADER + tampered)
    assert migration_digests.record_missing(discover(), path) == []
    assert migration_digests.recorded(path)[migration_digests.key(first, "single")] == "0" * 64


def test_migrations_import_only_the_renderer() -> None:
    """A migration that imported a query or a column list from elsewhere would change with it."""
    for m in discover():
        tree = ast.parse(Path(m.module.__file__ or "").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert imported <= {"__future__", "aggregator.ddl"}, f"{m.number:04d}_{m.name} imports {imported}"


def test_the_hits_table_has_the_columns_dnma_hits_describes(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """m0001 carries its own copy of the columns: the loader and the collector read dnma.hits."""
    migrate(client, Settings(data_dir=tmp_path))
    rows = client.query("SELECT name, type FROM system.columns WHERE database = 'dnma' AND table = 'hits' "
                        "ORDER BY position").result_rows
    assert [(name, t) for name, t in rows] == [(n, t.split(" CODEC(")[0]) for n, t, _ in HIT_COLUMNS]


def _schema(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """SHOW CREATE of every table, view and dictionary of the database."""
    rows = client.query("SELECT name, engine FROM system.tables WHERE database = 'dnma' ORDER BY name").result_rows
    return {name: str(client.command(f"SHOW CREATE {'DICTIONARY' if engine == 'Dictionary' else 'TABLE'} dnma.`{name}`"))
            for name, engine in rows}


def _run(client, statements: list[str]) -> None:  # type: ignore[no-untyped-def]
    for stmt in statements:
        client.command(stmt)


def test_every_down_undoes_its_up(client) -> None:  # type: ignore[no-untyped-def]
    """up, down, up again, one migration at a time: down leaves the schema of the migration before,
    up again the schema it made; then every down in reverse order back to an empty database.
    (m0007 changes nothing here: on a fresh install m0001 already made the key it copies into.)"""
    r = Renderer()
    client.command(r.create_database())
    schemas: list[dict[str, str]] = [_schema(client)]
    for m in discover():
        _run(client, m.up(r))
        after = _schema(client)
        _run(client, m.down(r))
        assert _schema(client) == schemas[-1], f"{m.number:04d}_{m.name}: down() does not restore the schema before"
        _run(client, m.up(r))
        assert _schema(client) == after, f"{m.number:04d}_{m.name}: up() after down() differs from the first up()"
        schemas.append(after)
    assert {"hits", "hits_daily_mv", "etablissements_dict", "quality_alerts_current"} <= set(schemas[-1])
    for m, before in zip(reversed(discover()), reversed(schemas[:-1]), strict=True):
        _run(client, m.down(r))
        assert _schema(client) == before, f"{m.number:04d}_{m.name}: down() in reverse order"
    assert _schema(client) == {}
