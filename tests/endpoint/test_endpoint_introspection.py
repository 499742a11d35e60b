"""Readers see the data and the schema, not the server's inside: system tables off the allow-list
(processes, stack_trace, disks, query_log, users…), introspection functions and SHOW PROCESSLIST and
kin answer ACCESS_DENIED (403), however they are reached; what clickhouse-connect and Superset's
dialect read (settings, databases, tables, columns, functions…) still works."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, USER, Loader, wait_until

from aggregator.endpoint import EndpointHandle

AUTH = (USER, PASSWORD)
SECRET = "secret-literal-4f7a"


def post(base_url: str, sql: str, **params: str) -> httpx.Response:
    return httpx.post(base_url, content=sql, params=params, auth=AUTH, timeout=30)


def assert_denied(resp: httpx.Response) -> None:
    assert resp.status_code == 403, resp.text[:300]
    assert resp.headers["X-ClickHouse-Exception-Code"] == "497", resp.text[:300]
    assert resp.text.startswith("Code: 497. DB::Exception: Not enough privileges")
    assert resp.text.rstrip().endswith("(ACCESS_DENIED)")


@pytest.fixture()
def secret_query(loader: Loader) -> Iterator[None]:
    """The loader runs a long query holding a literal, as another reader's query would."""
    import chdb

    other = chdb.connect(loader.path)
    thread = threading.Thread(target=lambda: _ignore(other.query, f"SELECT count() FROM numbers(100000000000) WHERE toString(number) = '{SECRET}'"))
    thread.start()
    running = f"SELECT count() FROM system.processes WHERE query LIKE '%{SECRET}%' AND query NOT LIKE '%system.processes%'"
    try:
        assert wait_until(lambda: loader.query(running).strip() == "1")
        yield
    finally:
        loader.query(f"KILL QUERY WHERE query LIKE '%{SECRET}%' AND query NOT LIKE '%KILL%' SYNC")
        thread.join(timeout=30)
        other.close()


def _ignore(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # QUERY_WAS_CANCELLED when the fixture ends
        pass


@pytest.mark.usefixtures("secret_query")
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT query FROM system.processes",
        "SELECT * FROM `system`.`processes` AS p",
        "SELECT query FROM system.processes WHERE 1 SETTINGS max_threads = 1",
        "SELECT 1 WHERE 'x' IN system.processes",
        "SELECT * FROM (SELECT query FROM system.processes)",
        "WITH q AS (SELECT query FROM system.processes) SELECT * FROM q",
        "SELECT * FROM system.one JOIN system.processes ON 1",
        "SELECT * FROM view(SELECT query FROM system.processes)",
        "SELECT * FROM loop(system.processes) LIMIT 1",
        "SELECT * FROM merge(system, '^processes$')",
        "SELECT * FROM merge('system', '^processes$')",
        "SELECT * FROM merge(REGEXP('^sys'), '^processes$')",
        "EXPLAIN SELECT query FROM system.processes",
        "SHOW PROCESSLIST",
    ],
)
def test_other_queries_are_not_readable(base_url: str, sql: str) -> None:
    resp = post(base_url, sql)
    assert_denied(resp)
    assert SECRET not in resp.text


def test_other_queries_not_readable_through_parameters_or_database(base_url: str) -> None:
    assert_denied(post(base_url, "SELECT * FROM {t:Identifier}", param_t="system.processes"))
    assert_denied(post(base_url, "SELECT query FROM processes", database="system"))
    assert_denied(post(base_url, "SELECT * FROM merge('^processes$')", database="system"))
    assert_denied(post(base_url, "SELECT * FROM loop(processes) LIMIT 1", database="system"))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM system.stack_trace",
        "SELECT arrayMap(x -> addressToSymbol(x), trace) FROM system.stack_trace",
        "SELECT name, path FROM system.disks",
        "SELECT * FROM system.storage_policies",
        "SELECT * FROM system.query_log",
        "SELECT * FROM system.server_settings",
        "SELECT * FROM system.users",
        "SELECT * FROM system.errors",
        "SELECT * FROM system.asynchronous_metrics",
        "DESCRIBE TABLE system.disks",
        "SELECT addressToLine(toUInt64(1))",
        "SELECT ADDRESSTOLINE(toUInt64(1))",
        "SELECT addressToLineWithInlines(toUInt64(1))",
        "SELECT addressToSymbol(toUInt64(1))",
        "SELECT demangle('_ZN2DB7ContextE')",
        "SELECT tid()",
        "SELECT length(demangle('x')) FROM numbers(1)",
        "SHOW MERGES",
        "SHOW CLUSTERS",
        "SHOW FILESYSTEM CACHES",
        "SHOW USERS",
        "SHOW GRANTS",
        "SHOW ACCESS",
        "SHOW PRIVILEGES",
        "SHOW CREATE USER dnma_reader",
    ],
)
def test_server_inside_is_denied(base_url: str, sql: str) -> None:
    assert_denied(post(base_url, sql))


def test_introspection_is_off_in_the_engine_too(base_url: str) -> None:
    assert post(base_url, "SELECT getSetting('allow_introspection_functions')").text == "false\n"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT name FROM system.tables WHERE database = 'dnma' AND name = 'visites'", "visites\n"),
        ("SELECT type FROM system.columns WHERE database = 'dnma' AND table = 'visites' AND name = 'uai'", "String\n"),
        ("SELECT count() > 0 FROM system.databases WHERE name = 'dnma'", "1\n"),
        ("SELECT value FROM system.settings WHERE name = 'readonly'", "1\n"),
        ("SELECT count() > 100 FROM system.functions", "1\n"),
        ("SELECT * FROM system.numbers LIMIT 2", "0\n1\n"),
        ("SELECT * FROM system.one", "0\n"),
        ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'dnma' AND table_name = 'visites'", "visites\n"),
        ("SELECT count() FROM merge(dnma, '^visites$')", "1000\n"),
        ("SELECT 'system.processes', 'addressToLine(1)' AS processes", "system.processes\taddressToLine(1)\n"),
        ("SELECT processes FROM (SELECT 1 AS processes)", "1\n"),
        ("SELECT name FROM system.settings WHERE name = 'max_threads'", "max_threads\n"),
    ],
)
def test_allowed_system_reads_work(base_url: str, sql: str, expected: str) -> None:
    resp = post(base_url, sql)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.text == expected


def test_allowed_shows_work(base_url: str) -> None:
    assert "processes" in post(base_url, "SHOW TABLES FROM system").text.split()  # names only
    assert "dnma" in post(base_url, "SHOW DATABASES").text.split()
    assert post(base_url, "SHOW SETTINGS LIKE 'max_threads'").text.startswith("max_threads\t")
    assert "uai" in post(base_url, "SHOW COLUMNS FROM dnma.visites").text
    assert post(base_url, "SELECT count() FROM tables WHERE database = 'dnma'", database="system").status_code == 200


def test_clickhouse_connect_and_superset_dialect_introspection(endpoint: EndpointHandle) -> None:
    """The handshake (system.settings), then what Superset asks through the SQLAlchemy dialect:
    schemas, tables, views, columns, indexes, comments; a denied table is a clean error."""
    import clickhouse_connect
    import sqlalchemy as sa
    from clickhouse_connect.driver.exceptions import DatabaseError

    client = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username=USER, password=PASSWORD)
    try:
        assert client.query("SELECT count() FROM system.tables WHERE database = 'dnma'").result_rows[0][0] >= 1
        with pytest.raises(DatabaseError, match="497"):
            client.query("SELECT query FROM system.processes")
    finally:
        client.close()
    engine = sa.create_engine(f"clickhousedb://{USER}:{PASSWORD}@127.0.0.1:{endpoint.port}/dnma")
    try:
        insp = sa.inspect(engine)
        assert {"dnma", "system"} <= set(insp.get_schema_names())
        assert "visites" in insp.get_table_names(schema="dnma")
        assert "tables" in insp.get_table_names(schema="system")
        assert insp.get_view_names(schema="dnma") == []
        assert [c["name"] for c in insp.get_columns("visites", schema="dnma")] == ["uai", "jour", "visites", "profil"]
        assert "name" in [c["name"] for c in insp.get_columns("tables", schema="system")]
        assert insp.get_indexes("visites", schema="dnma") == []
        insp.get_table_comment("visites", schema="dnma")
        with pytest.raises(sa.exc.DBAPIError, match="497"):
            insp.get_columns("processes", schema="system")
    finally:
        engine.dispose()
