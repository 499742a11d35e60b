"""Migrations: idempotent on real chDB, recorded in the ledger, and the cluster rendering parses."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import clickhouse_connect
import pytest

from aggregator import visits_query
from aggregator.ddl import Renderer
from aggregator.migrate import applied, discover, migrate, render_all, renderer
from aggregator.retention import apply_retention
from aggregator.rollups import inline_dates
from dnma.settings import Settings


@pytest.fixture()
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    yield c
    c.close()


def test_migrate_is_idempotent_and_recorded(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path)
    first = migrate(client, settings)
    assert [m.number for m in first] == [m.number for m in discover()]
    assert migrate(client, settings) == []
    assert applied(client, renderer(settings)) == {m.number for m in discover()}
    tables = {r[0] for r in client.query("SHOW TABLES FROM dnma").result_rows}
    assert {"hits", "schema_migrations"} <= tables


def test_hits_has_no_raw_ip_or_uid_column(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    migrate(client, Settings(data_dir=tmp_path))
    cols = {r[0] for r in client.query("DESCRIBE TABLE dnma.hits").result_rows}
    assert not cols & {"ip", "client_ip", "uid", "user_id"}
    assert {"ts", "site_id", "action", "uai", "flags", "dimensions", "visitor_id", "user_hash"} <= cols


def test_hits_ttl_follows_settings(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, hits_ttl_months=7)
    migrate(client, settings)
    apply_retention(client, renderer(settings), settings.hits_ttl_months)  # what the loader's start does
    ddl = client.command("SHOW CREATE TABLE dnma.hits")
    assert "toIntervalMonth(7)" in ddl


def test_every_migration_has_a_down(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """tests/test_migrations_frozen.py runs them; m0007's is empty: its up changes no schema of m0001's."""
    r = Renderer()
    for m in discover():
        assert m.down(r) or m.number == 7, f"migration {m.number} has no down()"


def test_cluster_rendering_parses_with_clickhouse_parser(client) -> None:  # type: ignore[no-untyped-def]
    statements = render_all(Renderer(cluster="dnma_cluster"))
    assert any("ReplicatedMergeTree" in s for s in statements)
    assert any("Distributed(dnma_cluster" in s for s in statements)
    for stmt in statements:
        assert " ON CLUSTER dnma_cluster" in stmt, stmt[:80]
        formatted = client.command("SELECT formatQuery({q:String})", parameters={"q": stmt})
        assert formatted, stmt


def test_single_node_rendering_has_no_cluster_clause() -> None:
    for stmt in render_all(Renderer()):
        assert "ON CLUSTER" not in stmt and "Replicated" not in stmt and "Distributed" not in stmt


def _sorting_key(client) -> str:  # type: ignore[no-untyped-def]
    return str(client.command("SELECT sorting_key FROM system.tables WHERE database = 'dnma' AND name = 'hits'"))


def _hit_rows(first: int, count: int) -> bytes:
    """JSON rows over three days, five sites, a few visitors, one invalid (kept in hits, not in rollups)."""
    import orjson

    base = 1_780_000_000  # 2026-05-28
    return b"\n".join(orjson.dumps({
        "ts": base + (n % 3) * 86_400 + n * 7, "received_at": base, "site_id": 1 + n % 5,
        "url": f"https://ent.example/{n}", "uai": "0350001A", "visitor_id": 1 + n % 11,
        "flags": ["invalid_uai"] if n % 13 == 0 else [],
    }) for n in range(first, first + count))


def _totals(client) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    return tuple(int(client.command(q)) for q in (
        "SELECT count() FROM dnma.hits",
        "SELECT sum(cityHash64(formatRow('TSV', *))) FROM dnma.hits",  # Nullable columns too
        "SELECT sum(hits) FROM dnma.hits_daily",
        "SELECT sum(hits) FROM dnma.hits_hourly",
        "SELECT sum(hits) FROM dnma.hits_fingerprints",
    ))


def test_day_first_rekey_keeps_every_hit_and_the_views_feeding_the_rollups(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from aggregator.migrations import m0007_hits_day_first as m0007

    settings = Settings(data_dir=tmp_path, hits_ttl_months=1200)
    migrate(client, settings, until=6)
    for stmt in m0007.rekey(renderer(settings), m0007.OLD_ORDER_BY):  # an install from before m0007: site first
        client.command(stmt)
    assert _sorting_key(client) == "site_id, toDate(ts), visitor_id, ts"
    client.raw_insert("dnma.hits", insert_block=_hit_rows(0, 300), fmt="JSONEachRow")
    before = _totals(client)
    assert before[0] == 300 and before[2] == before[3] == 300 - 300 // 13 - 1 and before[4] == 300

    assert 7 in [m.number for m in migrate(client, settings)]
    assert _sorting_key(client) == "toDate(ts), site_id, visitor_id, ts"
    assert _totals(client) == before  # the very same rows; the rollups untouched
    tables = {r[0] for r in client.query("SHOW TABLES FROM dnma").result_rows}
    assert "hits_rekey" not in tables
    apply_retention(client, renderer(settings), settings.hits_ttl_months)  # the copy has none until then
    assert "TTL toDate32(ts) + toIntervalMonth(1200)" in client.command("SHOW CREATE TABLE dnma.hits")

    # The views follow the new table, once each: new hits reach every rollup exactly once.
    client.raw_insert("dnma.hits", insert_block=_hit_rows(301, 2), fmt="JSONEachRow")
    after = _totals(client)
    assert after[0] == 302 and after[2] - before[2] == after[3] - before[3] == after[4] - before[4] == 2


def test_a_day_of_hits_is_one_key_range(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Reading one day (what the sessionizer does) selects that day's granules, not the month's:
    with the site first, each of 50 sites' granules held all three days and all were read; with
    the day as a query parameter, ClickHouse turned it into a range of ts the key could not use."""
    migrate(client, Settings(data_dir=tmp_path, hits_ttl_months=1200))
    client.command(
        "INSERT INTO dnma.hits (ts, received_at, site_id, visitor_id) "
        "SELECT toDateTime('2026-05-28 08:00:00', 'Europe/Paris') + (number % 3) * 86400 + intDiv(number, 3) % 36000, "
        "now(), 1 + number % 50, number % 997 FROM numbers(90000)")
    client.command("OPTIMIZE TABLE dnma.hits FINAL")
    day_filter = inline_dates(visits_query.day_filter({}), {"day": date(2026, 5, 29)})  # as the sessionizer sends it
    plan = "\n".join(r[0] for r in client.query(
        f"EXPLAIN indexes = 1 SELECT count() FROM dnma.hits WHERE {day_filter}").result_rows)
    selected, total = (int(x) for x in re.findall(r"Granules: (\d+)/(\d+)", plan)[-1])  # the primary key's
    assert total >= 11 and selected <= total // 3 + 2, plan


def test_a_pending_loader_batch_is_settled_before_the_rekey(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """m0007 copies hits without their deduplication log: the loader passes its settle step in
    (aggregator.loader.settle_pending); anyone else migrating is stopped, never silently duplicating."""
    from aggregator.loader_state import Intent, LoaderState, Range
    from aggregator.migrate import PendingBatch

    settings = Settings(data_dir=tmp_path)
    migrate(client, settings, until=6)
    settings.resolved_spool_dir.mkdir(parents=True, exist_ok=True)
    LoaderState.load(settings.resolved_spool_dir).begin(Intent([Range("segment", 0, 100)]))
    with pytest.raises(PendingBatch, match="dnma loader --once"):
        migrate(client, settings)
    settled: list[int] = []
    ran = migrate(client, settings, settle=lambda c, s: settled.append(len(c.query("SELECT 1").result_rows)))
    assert settled == [1] and [m.number for m in ran] == [m.number for m in discover() if m.number > 6]
