"""Result size of the endpoint: small answers whole, large ones streamed in HTTP chunks, and past
reader_max_result_bytes the query cancelled with ClickHouse's error 396, before the first byte as
an error status, after it as ClickHouse's tagged block; the loader's memory stays bounded."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, USER, Loader, endpoint_settings, running_endpoint_queries, wait_until

from aggregator.endpoint import BUFFERED_RESULT, EndpointHandle, start_endpoint

AUTH = (USER, PASSWORD)
CAP = 8 * 1024**2
# Each a TSV answer larger than BUFFERED_RESULT and the cap, in chDB chunks of about 0.5 MiB.
PAST_THE_CAP = "SELECT number FROM numbers(100000000)"


@pytest.fixture(scope="module")
def capped(loader: Loader) -> Iterator[EndpointHandle]:
    handle = start_endpoint(endpoint_settings(reader_max_result_bytes=CAP), loader.path)
    yield handle
    handle.stop()


def _client(port: int) -> Any:
    import clickhouse_connect

    return clickhouse_connect.get_client(host="127.0.0.1", port=port, username=USER, password=PASSWORD)


def _raw_post(port: int, sql: str, sink: Any) -> tuple[bytes, dict[str, str], bool]:
    """POST `sql`, hand every piece of the (de-chunked) body to `sink`; returns the status line,
    the headers, and whether the body ended with the terminating zero-size chunk."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    body = sql.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic " + token.encode()
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        stream = sock.makefile("rb")
        status = stream.readline().rstrip()
        headers = {}
        while (line := stream.readline().rstrip(b"\r\n")):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") != "chunked":
            sink(stream.read(int(headers["content-length"])))
            return status, headers, True
        while True:
            size_line = stream.readline()
            if not size_line:
                return status, headers, False  # closed without the last chunk
            size = int(size_line.strip(), 16)
            if size == 0:
                return status, headers, True
            sink(stream.read(size))
            stream.readline()


def test_a_small_answer_is_sent_whole(base_url: str) -> None:
    resp = httpx.post(base_url, content="SELECT 40 + 2", auth=AUTH)
    assert resp.status_code == 200 and resp.text == "42\n"
    assert resp.headers["Content-Length"] == "3" and "Transfer-Encoding" not in resp.headers


def test_a_large_answer_streams_in_chunks_complete(endpoint: EndpointHandle, loader: Loader) -> None:
    sql = "SELECT number, toString(number * 7) FROM numbers(2000000)"
    expected = loader.query(sql, "TSV").encode()
    assert len(expected) > 10 * BUFFERED_RESULT
    digest = hashlib.sha256()
    sizes: list[int] = []

    def sink(piece: bytes) -> None:
        digest.update(piece)
        sizes.append(len(piece))

    status, headers, terminated = _raw_post(endpoint.port, sql, sink)
    assert status == b"HTTP/1.1 200 OK" and terminated
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert headers["x-clickhouse-exception-tag"].isalnum()
    assert len(sizes) > 2 and max(sizes) < len(expected) // 2  # pieces, not the whole
    assert sum(sizes) == len(expected) and digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    # httpx reads the same answer as a well-formed chunked body.
    with httpx.stream("POST", f"http://127.0.0.1:{endpoint.port}/", content=sql, auth=AUTH, timeout=60) as resp:
        assert sum(len(b) for b in resp.iter_bytes()) == len(expected)


def test_clients_read_a_streamed_answer(endpoint: EndpointHandle) -> None:
    """clickhouse-connect (Native) and its DB-API cursor (what Superset's dialect uses) get every row."""
    from clickhouse_connect import dbapi

    client = _client(endpoint.port)
    try:
        result = client.query("SELECT number, toString(number) AS s FROM numbers(1000000)")
        assert len(result.result_rows) == 1000000
        assert result.result_rows[-1] == (999999, "999999")
        assert sum(r[0] for r in result.result_rows) == 999999 * 1000000 // 2
    finally:
        client.close()
    conn = dbapi.connect(host="127.0.0.1", port=endpoint.port, username=USER, password=PASSWORD)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT number FROM numbers(700000)")
        assert len(cursor.fetchall()) == 700000
    finally:
        conn.close()


def test_past_the_cap_before_the_first_byte_is_an_error_status(capped: EndpointHandle, loader: Loader) -> None:
    # One chDB chunk (65,409 rows of 201 bytes, 13 MB) is already past the 8 MiB cap.
    url = f"http://127.0.0.1:{capped.port}/"
    resp = httpx.post(url, content="SELECT repeat('x', 200) FROM numbers(1000000)", auth=AUTH, timeout=60)
    assert resp.status_code == 500, resp.text[:300]
    assert resp.headers["X-ClickHouse-Exception-Code"] == "396"
    assert resp.text.startswith("Code: 396. DB::Exception: Limit for result exceeded (reader_max_result_bytes, DNMA_READER_MAX_RESULT_BYTES), max bytes: 8.00 MiB")
    assert "reader_max_result_bytes" in resp.text and resp.text.rstrip().endswith("(TOO_MANY_ROWS_OR_BYTES)")
    assert wait_until(lambda: running_endpoint_queries(loader) == [], timeout=5)
    assert httpx.post(url, content="SELECT 1", auth=AUTH).text == "1\n"


def test_past_the_cap_mid_stream_ends_with_clickhouse_error(capped: EndpointHandle, loader: Loader) -> None:
    received = bytearray()
    status, headers, terminated = _raw_post(capped.port, PAST_THE_CAP, received.extend)
    assert status == b"HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    # Not terminated: a client that ignores the tag still sees a broken answer, never a short one.
    assert not terminated
    tag = headers["x-clickhouse-exception-tag"]
    assert BUFFERED_RESULT < len(received) < CAP + 4096
    body, marker, block = bytes(received).partition(b"__exception__\r\n" + tag.encode() + b"\r\n")
    assert marker and body.endswith(b"\n")
    message, _, footer = block.partition(b"\n")
    assert message.startswith(b"Code: 396. DB::Exception: Limit for result exceeded (reader_max_result_bytes, DNMA_READER_MAX_RESULT_BYTES), max bytes: 8.00 MiB")
    assert b"reader_max_result_bytes" in message
    assert footer == f"{len(message)} {tag}\r\n__exception__\r\n".encode()
    assert wait_until(lambda: running_endpoint_queries(loader) == [], timeout=5)
    assert httpx.post(f"http://127.0.0.1:{capped.port}/", content="SELECT 1", auth=AUTH).text == "1\n"


def test_past_the_cap_clients_raise_the_error(capped: EndpointHandle) -> None:
    from clickhouse_connect import dbapi
    from clickhouse_connect.driver.exceptions import DatabaseError

    client = _client(capped.port)
    try:
        with pytest.raises(DatabaseError, match="396") as caught:
            client.query("SELECT number, toString(number) FROM numbers(100000000)").result_rows  # noqa: B018 - reads the rows
        assert "reader_max_result_bytes, DNMA_READER_MAX_RESULT_BYTES), max bytes: 8.00 MiB" in str(caught.value)
        assert client.query("SELECT 2").result_rows == [(2,)]  # the client is still usable
    finally:
        client.close()
    conn = dbapi.connect(host="127.0.0.1", port=capped.port, username=USER, password=PASSWORD)
    try:
        cursor = conn.cursor()
        with pytest.raises(DatabaseError, match="reader_max_result_bytes"):
            cursor.execute("SELECT number FROM numbers(100000000)")
            cursor.fetchall()
    finally:
        conn.close()


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"{field} not in /proc/self/status")


def test_a_huge_answer_keeps_memory_bounded(loader: Loader) -> None:
    """A 1 GB answer past a 64 MiB cap: the endpoint (in this process) streams it and stops at
    the cap; the peak RSS of the process grows by far less than the answer. Held whole, the
    answer and its copy grew it by over 2 GB."""
    cap = 64 * 1024**2
    handle = start_endpoint(endpoint_settings(reader_max_result_bytes=cap), loader.path)
    try:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM, the peak RSS, to the current RSS
        except OSError:
            pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
        before = _status_mib("VmRSS")
        tail = bytearray()
        seen = 0

        def sink(piece: bytes) -> None:
            nonlocal seen
            seen += len(piece)
            tail.extend(piece[-4096:])
            del tail[:-4096]

        status, _, terminated = _raw_post(handle.port, "SELECT repeat('x', 100) FROM numbers(10000000) FORMAT RowBinary", sink)
        growth = _status_mib("VmHWM") - before
        assert growth < 200, f"peak RSS grew by {growth:.0f} MiB serving a capped answer"
        assert status == b"HTTP/1.1 200 OK" and not terminated
        assert b"Code: 396. DB::Exception: Limit for result exceeded (reader_max_result_bytes, DNMA_READER_MAX_RESULT_BYTES), max bytes: 64.00 MiB" in tail
        assert seen < cap + 4096
        assert wait_until(lambda: running_endpoint_queries(loader) == [], timeout=5)
    finally:
        handle.stop()


def test_one_huge_block_is_refused_within_the_reader_memory_cap(loader: Loader) -> None:
    """The probe's query: one block of 1,024 rows of a million bytes, 976 MiB that chDB formats
    whole before the endpoint sees a byte, out of reach of the result cap. The default memory cap
    of a reader query refuses it (241) before the process grows by more than about that cap; on
    the former 4 GiB default the loader grew by 3 GB and answered it."""
    from dnma.settings import Settings

    cap = Settings.model_fields["reader_max_memory_usage"].default
    assert cap <= 1024**3
    handle = start_endpoint(endpoint_settings(), loader.path)
    try:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
        before = _status_mib("VmRSS")
        status, headers, _ = _raw_post(handle.port, "SELECT repeat('x',1000000) FROM numbers(1024) FORMAT RowBinary",
                                       lambda piece: None)
        growth = _status_mib("VmHWM") - before
        assert status.startswith(b"HTTP/1.1 5") and headers.get("x-clickhouse-exception-code") == "241", (status, headers)
        assert growth < cap / 1024**2 + 300, f"peak RSS grew by {growth:.0f} MiB"
    finally:
        handle.stop()
