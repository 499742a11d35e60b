"""The endpoint's deadlines over real sockets: a request head or body trickled a byte at a time is
cut at its deadline, an idle keep-alive connection is closed, and a crowd of such clients filling
every connection slot is gone in time for a real client's query."""

from __future__ import annotations

import base64
import select
import socket
import time
from collections.abc import Iterator

import pytest
from conftest import PASSWORD, USER, Loader, endpoint_settings, running_endpoint_queries

from aggregator.endpoint import EndpointHandle, start_endpoint

DEADLINE_S = 1.0
CUT_WITHIN_S = 8.0  # generous: the deadline plus the reaper's and the scheduler's slack
SLOTS = 64


@pytest.fixture(scope="module")
def endpoint(loader: Loader) -> Iterator[EndpointHandle]:
    handle = start_endpoint(
        endpoint_settings(reader_header_timeout_s=DEADLINE_S, reader_body_timeout_s=DEADLINE_S,
                          reader_keep_alive_timeout_s=DEADLINE_S, reader_max_connections=SLOTS),
        loader.path,
    )
    yield handle
    handle.stop()


def _closed(sock: socket.socket) -> bool:
    """The server closed or reset its side (whatever it sent before is read and dropped)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def _trickle(socks: list[socket.socket], byte: bytes, within: float, step: float = 0.25) -> float:
    """Send `byte` on every open socket each `step` seconds until the server closed them all;
    the seconds that took (or `within` when some are still open then)."""
    started = time.monotonic()
    open_ = list(socks)
    while open_ and time.monotonic() - started < within:
        for sock in list(open_):
            if _closed(sock):
                open_.remove(sock)
                continue
            try:
                sock.send(byte)
            except OSError:
                open_.remove(sock)
        time.sleep(step)
    return time.monotonic() - started


def _connect(port: int, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(first)
    return sock


def _basic() -> str:
    return "Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() + "\r\n"


def test_headers_sent_a_byte_at_a_time_are_cut(endpoint: EndpointHandle) -> None:
    """Each byte comes well within the per-read timeout; the head as a whole never ends."""
    sock = _connect(endpoint.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        took = _trickle([sock], b"a", within=CUT_WITHIN_S + 5)
        assert took < CUT_WITHIN_S, f"still open after {took:.1f} s"
    finally:
        sock.close()


def test_a_body_sent_a_byte_at_a_time_is_cut_and_not_run(endpoint: EndpointHandle, loader: Loader) -> None:
    head = f"POST / HTTP/1.1\r\nHost: x\r\n{_basic()}Content-Length: 100000\r\n\r\n"
    sock = _connect(endpoint.port, head.encode() + b"SELECT 1 ")
    try:
        took = _trickle([sock], b" ", within=CUT_WITHIN_S + 5)
        assert took < CUT_WITHIN_S, f"still open after {took:.1f} s"
    finally:
        sock.close()
    assert running_endpoint_queries(loader) == []


def _assert_closed_soon(sock: socket.socket) -> None:
    """The endpoint closes `sock` within CUT_WITHIN_S (waited a little longer, to say how long)."""
    started = time.monotonic()
    while not _closed(sock) and time.monotonic() - started < CUT_WITHIN_S + 5:
        time.sleep(0.1)
    assert time.monotonic() - started < CUT_WITHIN_S

def test_an_idle_keep_alive_connection_is_closed(endpoint: EndpointHandle) -> None:
    sock = _connect(endpoint.port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        _assert_closed_soon(sock)
    finally:
        sock.close()


def test_a_silent_connection_is_closed(endpoint: EndpointHandle) -> None:
    sock = socket.create_connection(("127.0.0.1", endpoint.port), timeout=5)
    try:
        _assert_closed_soon(sock)
    finally:
        sock.close()


def test_slowloris_clients_filling_every_slot_are_cut_then_a_real_client_is_served(endpoint: EndpointHandle) -> None:
    """More slow clients than connection slots (those past the slots get a 503 at once); once the
    slow ones are cut, clickhouse-connect connects and queries as usual."""
    import clickhouse_connect

    socks = [_connect(endpoint.port, b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(SLOTS + 8)]
    try:
        took = _trickle(socks, b"a", within=CUT_WITHIN_S + 5)
        assert took < CUT_WITHIN_S, f"slow clients still connected after {took:.1f} s"
        client = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username=USER,
                                               password=PASSWORD, database="dnma")
        try:
            assert client.query("SELECT count() FROM dnma.visites").result_rows == [(1000,)]
        finally:
            client.close()
    finally:
        for sock in socks:
            sock.close()
