"""Connections the collector cuts (collector/connection.py): idle ones, headers or a body sent a byte
at a time, an oversized head (431), connections past the bound (503); the worker lives on.

Real sockets on a real collector with short limits; every wait is a generous deadline for the
server to act, never a measure of its speed."""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ct_support import Collector, page, start

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
KEEP_ALIVE_S = 1
MAX_HEAD = 16 * 1024
MAX_CONNECTIONS = 4


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    stack = start(
        tmp_path_factory.mktemp("short"),
        collector_keep_alive_timeout_s=KEEP_ALIVE_S,
        collector_header_timeout_s=HEADER_TIMEOUT_S,
        collector_body_timeout_s=BODY_TIMEOUT_S,
        collector_max_header_bytes=MAX_HEAD,
    )
    try:
        yield Collector(stack)
    finally:
        stack.stop_all()


def connect(c: Collector) -> socket.socket:
    host, port = c.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """What the server sends until it closes the connection, which it must do within `within` s."""
    deadline = time.monotonic() + within
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {within} s; received {data[:200]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            continue
        if not chunk:
            return data
        data += chunk


def trickle(sock: socket.socket, piece: bytes, every: float, up_to: float) -> bytes:
    """Send `piece` every `every` s until the server answers or closes (it must, within `up_to` s);
    what it sent back."""
    deadline = time.monotonic() + up_to
    while time.monotonic() < deadline:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return read_until_closed(sock, within=5)
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            return read_until_closed(sock, within=5)
    raise AssertionError(f"the server kept a trickling connection open for {up_to} s")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def hit_is_acknowledged(c: Collector, marker: str) -> None:
    r = httpx.get(f"{c.url}/matomo.php", params={"idsite": 1, "rec": 1, "url": page(marker)}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    assert len(c.rows_with(marker)) == 1


def test_idle_keep_alive_connection_is_closed(short: Collector) -> None:
    with connect(short) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = read_until_closed(sock, within=KEEP_ALIVE_S + 3)
    assert answer.startswith(b"HTTP/1.1 200")


def test_connection_that_sends_nothing_is_closed(short: Collector) -> None:
    with connect(short) as sock:
        answer = read_until_closed(sock, within=HEADER_TIMEOUT_S + 8)
    assert answer == b""  # no request begun, none answered


def test_headers_sent_a_byte_a_second_are_cut(short: Collector, marker: str) -> None:
    with connect(short) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        answer = trickle(sock, b"a", every=1.0, up_to=HEADER_TIMEOUT_S + 15)
    # 408, unless the next byte reached the closed socket first and its reset ate the answer.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    hit_is_acknowledged(short, marker)


def test_body_sent_a_byte_a_second_is_cut(short: Collector, marker: str) -> None:
    with connect(short) as sock:
        sock.sendall(
            b"POST /matomo.php HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\nidsite=1&rec=1"
        )
        answer = trickle(sock, b"&", every=1.0, up_to=BODY_TIMEOUT_S + 15)
    assert answer == b""  # no answer to a request whose body never came
    hit_is_acknowledged(short, marker)


def test_oversized_head_gets_431_and_costs_no_memory(short: Collector, marker: str) -> None:
    pid = short.stack.procs["collector"].pid
    rss_before = rss_bytes(pid)
    chunk = b"a" * 65536
    sent = 0
    answer = b""
    with connect(short) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        while sent < 128 * 1024**2:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                answer = read_until_closed(sock, within=5)
                break
            sent += len(chunk)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = read_until_closed(sock, within=5)
                break
    assert answer.startswith(b"HTTP/1.1 431"), (sent, answer[:200])
    # The answer came once the cap was crossed, not after the 128 MiB: what the socket buffers of
    # both ends hold is all the client could send before reading it.
    assert sent < 32 * 1024**2
    assert rss_bytes(pid) - rss_before < 64 * 1024**2
    hit_is_acknowledged(short, marker)


def test_connections_past_the_bound_are_refused_and_the_worker_serves_on(tmp_path: Path, marker: str) -> None:
    stack = start(tmp_path, collector_max_connections=MAX_CONNECTIONS, collector_header_timeout_s=60,
                  collector_keep_alive_timeout_s=60)
    c = Collector(stack)
    held: list[socket.socket] = []
    try:
        # Each held connection is seen answered first: the server has it when the next one comes.
        # One refused means a connection of the start-up check was not gone yet: try again.
        for _ in range(MAX_CONNECTIONS):
            for _attempt in range(50):
                sock = connect(c)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                sock.settimeout(10)
                head = sock.recv(65536)
                if head.startswith(b"HTTP/1.1 200"):
                    held.append(sock)
                    break
                sock.close()
                time.sleep(0.1)
            else:
                raise AssertionError("a connection below the bound was never served")
        with connect(c) as extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            refused = read_until_closed(extra, within=10)
        assert refused == b"" or refused.startswith(b"HTTP/1.1 503"), refused[:200]
        assert stack.procs["collector"].poll() is None
        for sock in held:
            sock.close()
        held.clear()
        # The server sees the held connections go as their FINs arrive: a hit is served once it has.
        deadline = time.monotonic() + 10
        while True:
            try:
                hit_is_acknowledged(c, marker)
                break
            except (AssertionError, httpx.TransportError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        metrics = httpx.get(f"{c.url}/metrics", timeout=10).text
        refusals = re.search(r'^dnma_collector_connections_cut_total\{reason="too_many_connections"\} (\S+)$',
                             metrics, re.M)
        assert refusals and float(refusals[1]) >= 1
    finally:
        for sock in held:
            sock.close()
        stack.stop_all()
