"""The clients Superset uses, against the endpoint: clickhouse-connect (handshake, query,
query_df, parameters, refused writes) and its SQLAlchemy dialect (schemas, tables, columns)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import PASSWORD, USER, Loader

from aggregator.endpoint import EndpointHandle

BY_PROFIL = "SELECT profil, sum(visites) AS v, uniqExact(uai) AS u FROM dnma.visites GROUP BY profil ORDER BY profil"


@pytest.fixture()
def client(endpoint: EndpointHandle) -> Iterator[Any]:
    import clickhouse_connect

    c = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username=USER, password=PASSWORD, database="dnma")
    yield c
    c.close()


def direct_rows(loader: Loader, sql: str) -> list[tuple[str, ...]]:
    return [tuple(line.split("\t")) for line in loader.query(sql).splitlines()]


def test_clickhouse_connect_query_matches_direct(client: Any, loader: Loader) -> None:
    assert client.server_version.startswith("26.")
    rows = client.query(BY_PROFIL).result_rows
    assert [tuple(str(v) for v in r) for r in rows] == direct_rows(loader, BY_PROFIL)
    df = client.query_df("SELECT uai, jour, visites FROM visites ORDER BY uai, jour, visites LIMIT 50")
    direct = direct_rows(loader, "SELECT uai, toString(jour), visites FROM dnma.visites ORDER BY uai, jour, visites LIMIT 50")
    assert [(r.uai, str(r.jour.date()), str(r.visites)) for r in df.itertuples()] == direct


def test_clickhouse_connect_parameters(client: Any) -> None:
    server_side = client.query("SELECT count() FROM visites WHERE profil = {p:String} AND visites >= {v:UInt32}",
                               parameters={"p": "PARENT", "v": 5}).result_rows
    client_side = client.query("SELECT count() FROM visites WHERE profil = %(p)s AND visites >= %(v)s",
                               parameters={"p": "PARENT", "v": 5}).result_rows
    assert server_side == client_side and server_side[0][0] > 0


def test_empty_results_have_columns(client: Any, endpoint: EndpointHandle) -> None:
    from clickhouse_connect import dbapi

    probe = client.query("SELECT uai, visites FROM visites LIMIT 0")
    assert probe.result_rows == [] and list(probe.column_names) == ["uai", "visites"]
    # The DB-API cursor (SQLAlchemy, Superset) re-asks `SELECT * FROM (<q>) LIMIT 0` when empty.
    conn = dbapi.connect(host="127.0.0.1", port=endpoint.port, username=USER, password=PASSWORD, database="dnma")
    cursor = conn.cursor()
    cursor.execute("SELECT uai, visites FROM visites WHERE visites > 1000000")
    assert cursor.fetchall() == [] and [d[0] for d in cursor.description] == ["uai", "visites"]
    conn.close()


def test_clickhouse_connect_writes_refused(client: Any, loader: Loader) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    before = loader.query("SELECT count() FROM dnma.visites")
    with pytest.raises(DatabaseError, match="164"):
        client.command("SYSTEM STOP MERGES")
    with pytest.raises(DatabaseError, match="164"):
        client.command("TRUNCATE TABLE visites")
    with pytest.raises(DatabaseError, match="164"):
        client.insert("visites", [["0350001A", __import__("datetime").date(2025, 9, 1), 1, "ELEVE"]],
                      column_names=["uai", "jour", "visites", "profil"])
    assert loader.query("SELECT count() FROM dnma.visites") == before


def test_sqlalchemy_dialect_reflects_and_selects(endpoint: EndpointHandle, loader: Loader) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"clickhousedb://{USER}:{PASSWORD}@127.0.0.1:{endpoint.port}/dnma")
    try:
        insp = sa.inspect(engine)
        assert "dnma" in insp.get_schema_names()
        assert "visites" in insp.get_table_names(schema="dnma")
        columns = {c["name"]: str(c["type"]) for c in insp.get_columns("visites", schema="dnma")}
        assert columns == {"uai": "String", "jour": "Date", "visites": "UInt32", "profil": "LowCardinality(String)"}
        with engine.connect() as conn:
            rows = conn.execute(sa.text(BY_PROFIL)).all()
        assert [tuple(str(v) for v in r) for r in rows] == direct_rows(loader, BY_PROFIL)
    finally:
        engine.dispose()
