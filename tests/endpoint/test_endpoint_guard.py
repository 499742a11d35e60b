"""Forbidden statements through the endpoint: each refused with a ClickHouse error and no side
effect (rows, tables, merges, the loader's queries, files); look-alike reads still work."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, USER, Loader, wait_until

AUTH = (USER, PASSWORD)


def post(base_url: str, sql: str | bytes, **params: str) -> httpx.Response:
    return httpx.post(base_url, content=sql, params=params, auth=AUTH, timeout=30)


def assert_refused(resp: httpx.Response) -> None:
    assert resp.status_code in (400, 500), resp.text
    assert resp.headers["X-ClickHouse-Exception-Code"] in ("164", "62"), resp.text
    assert resp.text.startswith(f"Code: {resp.headers['X-ClickHouse-Exception-Code']}. DB::Exception: ")


def visites_count(loader: Loader) -> int:
    return int(loader.query("SELECT count() FROM dnma.visites"))


WRITES = [
    "INSERT INTO dnma.visites VALUES ('0350000A', '2025-09-01', 1, 'ELEVE')",
    "insert into dnma.visites select * from dnma.visites",
    "/* comment */ INSERT INTO dnma.visites SELECT * FROM dnma.visites",
    "ALTER TABLE dnma.visites DELETE WHERE 1",
    "ALTER TABLE dnma.visites UPDATE visites = 0 WHERE 1",
    "DELETE FROM dnma.visites WHERE 1",
    "TRUNCATE TABLE dnma.visites",
    "DROP TABLE dnma.visites",
    "RENAME TABLE dnma.visites TO dnma.visites2",
    "CREATE TABLE dnma.evil (a UInt8) ENGINE = MergeTree ORDER BY a",
    "CREATE TEMPORARY TABLE evil (a UInt8)",
    "CREATE DATABASE evil",
    "OPTIMIZE TABLE dnma.visites FINAL",
    "SET readonly = 0",
    "USE system",
    "SELECT 1; DROP TABLE dnma.visites",
    "SELECT 1;DROP TABLE dnma.visites;",
    "SELECT 1 -- comment\n; INSERT INTO dnma.visites SELECT * FROM dnma.visites",
    "WITH 1 AS x SELECT x; TRUNCATE TABLE dnma.visites",
    "EXPLAIN PIPELINE INSERT INTO dnma.visites SELECT * FROM dnma.visites",
]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_refused_without_side_effect(base_url: str, loader: Loader, sql: str) -> None:
    before = visites_count(loader)
    assert_refused(post(base_url, sql))
    assert visites_count(loader) == before
    tables = loader.query("SELECT name FROM system.tables WHERE database = 'dnma' ORDER BY name").split()
    assert "visites" in tables and "evil" not in tables and "visites2" not in tables
    assert "evil" not in loader.query("SELECT name FROM system.databases").split()
    assert loader.query("SELECT count() FROM system.mutations WHERE table = 'visites'").strip() == "0"


def test_native_insert_refused(base_url: str, loader: Loader) -> None:
    # What clickhouse-connect sends for an insert: the statement, then binary Native data.
    before = visites_count(loader)
    body = b"INSERT INTO dnma.visites (uai, jour, visites, profil) FORMAT Native\n\x04\x01\x03uai\x06String\x08\xff\xfe"
    resp = post(base_url, body)
    assert_refused(resp)
    assert resp.headers["X-ClickHouse-Exception-Code"] == "164"
    assert visites_count(loader) == before


def _create_probe(loader: Loader) -> None:
    loader.query("DROP TABLE IF EXISTS dnma.merge_probe")
    loader.query("CREATE TABLE dnma.merge_probe (a UInt32) ENGINE = MergeTree ORDER BY a")


def _optimize_merges(loader: Loader) -> int:
    """Active parts of the probe after 3 more inserts and OPTIMIZE FINAL (raises if merges are stopped)."""
    for i in range(3):
        loader.query(f"INSERT INTO dnma.merge_probe VALUES ({i})")
    loader.query("OPTIMIZE TABLE dnma.merge_probe FINAL")
    return int(loader.query("SELECT count() FROM system.parts WHERE database = 'dnma' AND table = 'merge_probe' AND active"))


def test_system_stop_merges_refused_and_merges_still_run(base_url: str, loader: Loader) -> None:
    _create_probe(loader)
    # The detector works: had SYSTEM STOP MERGES run anywhere, OPTIMIZE FINAL would abort.
    loader.query("SYSTEM STOP MERGES")
    try:
        with pytest.raises(Exception, match="Cancelled merging parts"):
            _optimize_merges(loader)
    finally:
        loader.query("SYSTEM START MERGES")
    assert _optimize_merges(loader) == 1

    for sql in ("SYSTEM STOP MERGES", "system stop merges dnma.merge_probe", "/* x */ SYSTEM STOP MERGES",
                "SELECT 1; SYSTEM STOP MERGES", "SYSTEM STOP TTL MERGES", "SYSTEM DROP MARK CACHE"):
        assert_refused(post(base_url, sql))
    assert _optimize_merges(loader) == 1


def test_kill_query_refused_and_loader_query_survives(base_url: str, loader: Loader) -> None:
    import chdb

    victim = chdb.connect(loader.path)
    outcome: dict[str, str] = {}

    def long_query() -> None:
        try:
            victim.query("SELECT /* loader-victim */ sum(number) FROM numbers(100000000000)")
            outcome["result"] = "finished"
        except Exception as exc:
            outcome["result"] = str(exc)

    thread = threading.Thread(target=long_query)
    thread.start()
    running = "SELECT count() FROM system.processes WHERE query LIKE '%loader-victim%' AND query NOT LIKE '%system.processes%'"
    try:
        assert wait_until(lambda: loader.query(running).strip() == "1")
        for sql in ("KILL QUERY WHERE 1", "KILL QUERY WHERE query LIKE '%loader-victim%' SYNC",
                    "kill query where 1 async", "KILL MUTATION WHERE 1", "SELECT 1; KILL QUERY WHERE 1"):
            assert_refused(post(base_url, sql))
        assert thread.is_alive() and "result" not in outcome
        assert loader.query(running).strip() == "1"
    finally:
        loader.query("KILL QUERY WHERE query LIKE '%loader-victim%' AND query NOT LIKE '%KILL%' SYNC")
        thread.join(timeout=30)
        victim.close()
    assert "QUERY_WAS_CANCELLED" in outcome["result"]


@pytest.mark.parametrize(
    "template",
    [
        "SELECT 1 INTO OUTFILE '{path}'",
        "SELECT 1 INTO OUTFILE '{path}' FORMAT CSV",
        "SELECT * FROM (SELECT 1) INTO OUTFILE '{path}' TRUNCATE",
        "SELECT 1 INTO OUTFILE '{path}' APPEND",
        "select 1 into outfile '{path}' compression 'gzip'",
        "EXPLAIN SELECT 1 INTO OUTFILE '{path}'",
        "WITH 1 AS x SELECT x INTO OUTFILE '{path}'",
    ],
)
def test_into_outfile_refused_no_file(base_url: str, tmp_path: Path, template: str) -> None:
    target = tmp_path / "leak.csv"
    assert_refused(post(base_url, template.format(path=target)))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('/etc/passwd')",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
        "SELECT file('/etc/passwd')",
        "SELECT `file`('/etc/passwd')",
        "SELECT length(file('/etc/passwd')) FROM numbers(1)",
        "DESCRIBE file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM loop(file('/etc/passwd', 'LineAsString')) LIMIT 1",
        "SELECT * FROM view(SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "SELECT 1 WHERE 'x' IN (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
        "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'LineAsString')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "SELECT * FROM python(x)",
        "SELECT * FROM Python(x)",
        "SELECT * FROM executable('id', 'LineAsString', 'x String')",
        "SELECT * FROM filesystem('/')",
        "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')",
        "SELECT * FROM input('a String')",
        "SELECT * FROM icebergLocal('/tmp/x')",
        "SELECT * FROM system.one, url('http://127.0.0.1:9/', 'LineAsString')",
    ],
)
def test_outside_functions_refused(base_url: str, sql: str) -> None:
    resp = post(base_url, sql)
    assert_refused(resp)
    assert "root:" not in resp.text


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 'python(' AS a", "python(\n"),
        ("SELECT 'INTO OUTFILE' AS b", "INTO OUTFILE\n"),
        ("SELECT 'SELECT 1; SYSTEM STOP MERGES'", "SELECT 1; SYSTEM STOP MERGES\n"),
        ("SELECT 'file(''/etc/passwd'')' FORMAT TSVRaw", "file('/etc/passwd')\n"),
        ("SELECT 1;", "1\n"),
        ("WITH 2 AS x SELECT x * 21", "42\n"),
        ("SELECT sum(number) FROM numbers(10)", "45\n"),
        ("SELECT format('{}-{}', 'a', 'b')", "a-b\n"),
        ("SELECT count() FROM dnma.visites", "1000\n"),
        ("EXISTS TABLE dnma.visites", "1\n"),
        ("SELECT 1 UNION ALL SELECT 2 ORDER BY 1", "1\n2\n"),
    ],
)
def test_lookalike_reads_work(base_url: str, sql: str, expected: str) -> None:
    resp = post(base_url, sql)
    assert resp.status_code == 200, resp.text
    assert resp.text == expected


def test_show_describe_explain_work(base_url: str) -> None:
    assert "visites" in post(base_url, "SHOW TABLES FROM dnma").text.split()
    assert post(base_url, "DESCRIBE TABLE dnma.visites").text.splitlines()[0].startswith("uai\tString")
    assert post(base_url, "EXPLAIN SELECT count() FROM dnma.visites").status_code == 200
    assert "CREATE TABLE dnma.visites" in post(base_url, "SHOW CREATE TABLE dnma.visites").text


def test_reader_limits_cannot_be_lifted(base_url: str) -> None:
    assert post(base_url, "SELECT getSetting('max_threads'), getSetting('readonly')").text == "1\t1\n"
    for sql in ("SELECT 1 SETTINGS max_threads = 64", "SELECT 1 SETTINGS readonly = 0",
                "SELECT 1 SETTINGS max_execution_time = 100000"):
        resp = post(base_url, sql)
        assert resp.status_code == 500 and resp.headers["X-ClickHouse-Exception-Code"] == "164", resp.text
