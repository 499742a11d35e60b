"""The SQL guard (aggregator/sqlguard.py, aggregator/endpoint.py) relies on a private part of chDB:
the raw pybind connection `chdb.connect(...)._conn` and its `classify_query(sql)` (a parse-only
verdict: statement count and query class), plus `_conn.query(sql, fmt, params=...)` and the streaming
calls the endpoint answers SELECTs with (`send_query`, `streaming_fetch_result`, `streaming_cancel_query`). pyproject.toml
pins chdb and chdb-core to the versions this was tested on; this test fails loudly, naming the call,
when an installed chDB no longer has it, before the guard lets anything through or refuses all."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import chdb
import pytest

GONE = "chDB {v}: the SQL guard's private call {call} is gone or changed (aggregator/sqlguard.py)"


@pytest.fixture(scope="module")
def raw() -> Any:
    conn = chdb.connect(":memory:")
    assert hasattr(conn, "_conn"), GONE.format(v=version("chdb"), call="chdb.connect(...)._conn")
    yield conn._conn
    conn.close()


def _classify(raw: Any, sql: str) -> tuple[int, str]:
    call = "chdb.connect(...)._conn.classify_query"
    assert callable(getattr(raw, "classify_query", None)), GONE.format(v=version("chdb"), call=call)
    verdict = raw.classify_query(sql)
    assert {"statement_count", "query_class"} <= set(verdict), GONE.format(v=version("chdb"), call=call)
    return int(verdict["statement_count"]), getattr(verdict["query_class"], "name", str(verdict["query_class"]))


def test_classify_query_is_there_and_classifies(raw: Any) -> None:
    assert _classify(raw, "SELECT 1") == (1, "READ_ONLY")
    assert _classify(raw, "SELECT 1; SELECT 2")[0] == 2
    assert _classify(raw, "INSERT INTO t VALUES (1)")[1] != "READ_ONLY"
    assert _classify(raw, "DROP TABLE t")[1] != "READ_ONLY"


def test_raw_query_takes_a_format_and_parameters(raw: Any) -> None:
    call = "chdb.connect(...)._conn.query(sql, fmt, params=...)"
    try:
        out = raw.query("SELECT {x:String}", "TSVRaw", params={"x": "a"}).bytes()
    except (AttributeError, TypeError) as exc:
        pytest.fail(f"{GONE.format(v=version('chdb'), call=call)}: {exc}")
    assert out == b"a\n"


def test_raw_streaming_calls_are_there(raw: Any) -> None:
    """The endpoint streams SELECT results: send_query, streaming_fetch_result (a result with
    size() and bytes(), empty at the end), streaming_cancel_query."""
    call = "chdb.connect(...)._conn.send_query / streaming_fetch_result / streaming_cancel_query"
    try:
        stream = raw.send_query("SELECT number FROM numbers(3)", "TSV", params={})
        first = raw.streaming_fetch_result(stream)
        assert first.size() == len(first.bytes()) == 6
        assert raw.streaming_fetch_result(stream).size() == 0
        raw.streaming_cancel_query(raw.send_query("SELECT number FROM numbers(1000000)", "TSV", params={}))
    except (AttributeError, TypeError) as exc:
        pytest.fail(f"{GONE.format(v=version('chdb'), call=call)}: {exc}")
