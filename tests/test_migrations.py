"""Migrations: idempotent on real chDB, recorded in the ledger, and the cluster rendering parses."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect
import pytest

from aggregator.ddl import Renderer
from aggregator.migrate import applied, discover, migrate, render_all, renderer
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
    migrate(client, Settings(data_dir=tmp_path, hits_ttl_months=7))
    ddl = client.command("SHOW CREATE TABLE dnma.hits")
    assert "toIntervalMonth(7)" in ddl


def test_every_migration_has_a_down(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = Renderer()
    for m in discover():
        assert m.down(r), f"migration {m.number} has no down()"


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
