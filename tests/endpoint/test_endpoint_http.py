"""The HTTP surface of the endpoint: ping, auth, formats, parameters, database, error codes,
concurrency cap, timeout and client disconnect (nothing left running afterwards)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import PASSWORD, USER, Loader, endpoint_settings, running_endpoint_queries, wait_until

from aggregator.endpoint import EndpointHandle, start_endpoint

AUTH = (USER, PASSWORD)
LONG_QUERY = "SELECT sum(number) FROM numbers(100000000000)"


def test_ping_needs_no_auth(base_url: str) -> None:
    for path in ("ping", ""):
        resp = httpx.get(base_url + path)
        assert resp.status_code == 200 and resp.text == "Ok.\n"


def _assert_auth_failed(resp: httpx.Response) -> None:
    assert resp.status_code == 403
    assert resp.headers["X-ClickHouse-Exception-Code"] == "516"
    assert resp.text.startswith("Code: 516. DB::Exception: ")
    assert "AUTHENTICATION_FAILED" in resp.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"auth": (USER, "wrong")},
        {"auth": ("default", PASSWORD)},
        {"auth": (USER, "")},
        {"headers": {"X-ClickHouse-User": USER, "X-ClickHouse-Key": "wrong"}},
        {"headers": {"X-ClickHouse-User": USER}},
        {"params": {"user": USER, "password": "wrong"}},
        {"params": {"user": USER}},
        {"headers": {"Authorization": "Basic !!notbase64"}},
    ],
)
def test_auth_refused(base_url: str, kwargs: dict) -> None:
    _assert_auth_failed(httpx.post(base_url, content="SELECT 1", **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auth": AUTH},
        {"headers": {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}},
        {"headers": {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}},
        {"params": {"user": USER, "password": PASSWORD}},
    ],
)
def test_auth_accepted(base_url: str, kwargs: dict) -> None:
    resp = httpx.post(base_url, content="SELECT 40 + 2", **kwargs)
    assert resp.status_code == 200 and resp.text == "42\n"


def test_get_query_param(base_url: str) -> None:
    resp = httpx.get(base_url, params={"query": "SELECT 'a' AS x FORMAT JSONEachRow"}, auth=AUTH)
    assert resp.status_code == 200 and resp.json() == {"x": "a"}
    assert resp.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert resp.headers["Content-Type"].startswith("application/json")
    refused = httpx.get(base_url, params={"query": "DROP TABLE dnma.visites"}, auth=AUTH)
    assert refused.status_code == 500 and refused.headers["X-ClickHouse-Exception-Code"] == "164"


def test_formats_params_database(base_url: str, loader: Loader) -> None:
    as_json = httpx.post(base_url, content="SELECT count() AS n FROM dnma.visites FORMAT JSON", auth=AUTH).json()
    assert as_json["data"] == [{"n": 1000}] or as_json["data"] == [{"n": "1000"}]
    default_fmt = httpx.post(base_url, content="SELECT 1 AS a", params={"default_format": "JSONCompactEachRow"}, auth=AUTH)
    assert default_fmt.text == "[1]\n" and default_fmt.headers["X-ClickHouse-Format"] == "JSONCompactEachRow"
    bound = httpx.post(
        base_url,
        content="SELECT {x:UInt32} + 1, {s:String}",
        params={"param_x": "41", "param_s": "l'école"},
        auth=AUTH,
    )
    assert bound.status_code == 200 and bound.text == "42\tl\\'école\n"
    expected = loader.query("SELECT sum(visites) FROM dnma.visites WHERE profil = 'ELEVE'")
    in_db = httpx.post(
        base_url, content="SELECT sum(visites) FROM visites WHERE profil = {p:String}",
        params={"database": "dnma", "param_p": "ELEVE", "query_id": "my-query-1"}, auth=AUTH,
    )
    assert in_db.text == expected and in_db.headers["X-ClickHouse-Query-Id"] == "my-query-1"
    summary = json.loads(in_db.headers["X-ClickHouse-Summary"])
    assert int(summary["read_rows"]) > 0
    # The database of one request does not stick to the pooled connection.
    for _ in range(4):
        assert httpx.post(base_url, content="SELECT currentDatabase()", auth=AUTH).text == "default\n"
    quoted = httpx.post(base_url, content="SELECT 1", params={"database": "no`such"}, auth=AUTH)
    assert quoted.status_code == 404 and quoted.headers["X-ClickHouse-Exception-Code"] == "81"  # as ClickHouse


@pytest.mark.parametrize(
    ("sql", "status", "code"),
    [
        ("SELECT * FROM dnma.no_such_table", 404, "60"),
        ("SELECT * FROM no_such_db.t", 404, "81"),
        ("SELECT no_such_column FROM dnma.visites", 404, "47"),
        ("SELECT no_such_function(1)", 404, "46"),
        ("SELECT toDate('x')", 400, "38"),
        ("SELECT 1 FORMAT NoSuchFormat", 404, "73"),
        ("SELEC 1", 400, "62"),
        ("SELEC 1; SYSTEM STOP MERGES", 400, "62"),
        ("SELECT 1; SELECT 2", 400, "62"),
        ("SELECT {x:UInt32}", 500, "456"),
        ("SELECT throwIf(1)", 500, "395"),
        ("", 400, "62"),
    ],
)
def test_error_mapping(base_url: str, sql: str, status: int, code: str) -> None:
    resp = httpx.post(base_url, content=sql, auth=AUTH)
    assert resp.status_code == status, resp.text
    assert resp.headers["X-ClickHouse-Exception-Code"] == code
    assert resp.text.startswith(f"Code: {code}. DB::Exception: ")


def test_oversized_body_refused(base_url: str) -> None:
    big = "SELECT 1 " + " " * (2 * 1024 * 1024)
    resp = httpx.post(base_url, content=big, auth=AUTH)
    assert resp.status_code == 400 and resp.headers["X-ClickHouse-Exception-Code"] == "62"
    insert = b"INSERT INTO dnma.visites FORMAT Native\n" + b"\x00" * (2 * 1024 * 1024)
    resp = httpx.post(base_url, content=insert, auth=AUTH)
    assert resp.status_code == 500 and resp.headers["X-ClickHouse-Exception-Code"] == "164"


def test_compressed_bodies(base_url: str, loader: Loader) -> None:
    import gzip

    import lz4.frame

    ok = httpx.post(base_url, content=gzip.compress(b"SELECT 6 * 7"), headers={"Content-Encoding": "gzip"}, auth=AUTH)
    assert ok.status_code == 200 and ok.text == "42\n"
    before = loader.query("SELECT count() FROM dnma.visites")
    insert = lz4.frame.compress(b"INSERT INTO dnma.visites FORMAT TSV\n0350000A\t2025-09-01\t1\tELEVE\n")
    refused = httpx.post(base_url, content=insert, headers={"Content-Encoding": "lz4"}, auth=AUTH)
    assert refused.status_code == 500 and refused.headers["X-ClickHouse-Exception-Code"] == "164"
    assert loader.query("SELECT count() FROM dnma.visites") == before
    bomb = gzip.compress(b"SELECT 1" + b" " * (50 * 1024 * 1024))
    too_big = httpx.post(base_url, content=bomb, headers={"Content-Encoding": "gzip"}, auth=AUTH)
    assert too_big.status_code == 400 and too_big.headers["X-ClickHouse-Exception-Code"] == "62"
    unknown = httpx.post(base_url, content=b"x", headers={"Content-Encoding": "br"}, auth=AUTH)
    # A client's error (ClickHouse answers it 500): 400, as every bad input (tests/test_listeners.py).
    assert unknown.status_code == 400 and unknown.text.startswith("Code: 1. DB::Exception: Unsupported Content-Encoding")


def test_concurrency_cap_waits_never_503(base_url: str) -> None:
    # Cap is 2: six 0.4 s queries take at least three rounds, and none is turned away.
    results: list[int] = []

    def one() -> None:
        results.append(httpx.post(base_url, content="SELECT sleep(0.4)", auth=AUTH, timeout=30).status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 6
    assert elapsed >= 1.15


@pytest.fixture()
def short_endpoint(loader: Loader) -> Iterator[EndpointHandle]:
    handle = start_endpoint(endpoint_settings(reader_max_execution_time=1), loader.path)
    yield handle
    handle.stop()


def test_timeout_408_and_nothing_left(short_endpoint: EndpointHandle, loader: Loader) -> None:
    started = time.monotonic()
    resp = httpx.post(f"http://127.0.0.1:{short_endpoint.port}/", content=LONG_QUERY, auth=AUTH, timeout=30)
    assert resp.status_code == 408 and resp.headers["X-ClickHouse-Exception-Code"] == "159", resp.text
    assert time.monotonic() - started < 10
    assert wait_until(lambda: running_endpoint_queries(loader) == [], timeout=5)


def test_client_disconnect_cancels_query(endpoint: EndpointHandle, loader: Loader) -> None:
    body = LONG_QUERY.encode()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    sock = socket.create_connection(("127.0.0.1", endpoint.port))
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + token.encode()
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    try:
        assert wait_until(lambda: any("numbers(100000000000)" in q for q in running_endpoint_queries(loader)))
    finally:
        sock.close()
    assert wait_until(lambda: running_endpoint_queries(loader) == [], timeout=5)
    # The slot came back: the endpoint still answers.
    assert httpx.post(f"http://127.0.0.1:{endpoint.port}/", content="SELECT 1", auth=AUTH).text == "1\n"


def test_refuses_to_start_without_password(loader: Loader) -> None:
    with pytest.raises(ValueError, match="PASSWORD"):
        start_endpoint(endpoint_settings(ch_http_password=""), loader.path)


def _raw(port: int, head: str, body: bytes = b"", *, timeout: float = 5.0) -> bytes:
    """Send a hand-made request and read the answer until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def _basic() -> str:
    return "Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() + "\r\n"


def test_credentials_are_checked_before_the_body_is_read(endpoint: EndpointHandle) -> None:
    """A caller without credentials announcing 100 MB (and sending none of it) is refused at once:
    the endpoint never waits for, reads or holds a body it has not authorised."""
    started = time.monotonic()
    answer = _raw(endpoint.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n")
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"X-ClickHouse-Exception-Code: 516" in answer
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "٣"])
def test_a_bad_content_length_is_a_400(endpoint: EndpointHandle, length: str) -> None:
    answer = _raw(endpoint.port, f"POST / HTTP/1.1\r\nHost: x\r\n{_basic()}Content-Length: {length}\r\n", b"SELECT 1")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"Invalid Content-Length" in answer


@pytest.mark.parametrize("size", [b"-1", b"zz", b"1" * 20])
def test_a_bad_chunk_size_is_a_400(endpoint: EndpointHandle, size: bytes) -> None:
    head = f"POST / HTTP/1.1\r\nHost: x\r\n{_basic()}Transfer-Encoding: chunked\r\n"
    answer = _raw(endpoint.port, head, size + b"\r\nSELECT 1\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"Invalid chunk size" in answer
    # A well-formed chunked body still works.
    good = _raw(endpoint.port, head + "Connection: close\r\n", b"8\r\nSELECT 1\r\n0\r\n\r\n")
    assert good.startswith(b"HTTP/1.1 200") and good.rstrip().endswith(b"1"), good[-200:]


def test_connections_past_the_cap_are_refused_at_once(loader: Loader) -> None:
    """With the cap reached by idle clients, another connection gets 503 and is closed; once one
    of them leaves, a new client is served again."""
    handle = start_endpoint(endpoint_settings(reader_max_connections=3), loader.path)
    try:
        idle = [socket.create_connection(("127.0.0.1", handle.port), timeout=5) for _ in range(3)]
        time.sleep(0.5)  # accepted, each holding its thread while it waits for a request line
        answer = _raw(handle.port, "GET /ping HTTP/1.1\r\nHost: x\r\n")
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        idle.pop().close()
        assert wait_until(lambda: _raw(handle.port, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
                          .startswith(b"HTTP/1.1 200"), timeout=10)
        for s in idle:
            s.close()
    finally:
        handle.stop()


def _expect_100(port: int, authorization: str) -> bytes:
    """POST with `Expect: 100-continue` and a 10 MB body announced but not sent: the first line
    the endpoint answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10000000\r\n"
                     + authorization.encode() + b"\r\n")
        return sock.makefile("rb").readline().rstrip()


def test_expect_100_continue_invites_only_a_caller_with_credentials(endpoint: EndpointHandle) -> None:
    good = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    bad = base64.b64encode(f"{USER}:not-the-password".encode()).decode()
    assert _expect_100(endpoint.port, f"Authorization: Basic {good}\r\n") == b"HTTP/1.1 100 Continue"
    assert _expect_100(endpoint.port, f"Authorization: Basic {bad}\r\n") == b"HTTP/1.1 403 Forbidden"
    assert _expect_100(endpoint.port, "") == b"HTTP/1.1 403 Forbidden"
