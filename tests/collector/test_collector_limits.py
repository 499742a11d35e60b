"""TRACKING.md "Limits": oversize URLs and bodies get a clear answer, the worker lives on."""

from __future__ import annotations

import socket

from ct_support import Collector, page


def test_url_over_8_kib_is_414(collector: Collector, marker: str) -> None:
    r = collector.http.get(
        "/matomo.php", params={"idsite": 1, "rec": 1, "url": page(marker), "x": "a" * 8300}
    )
    assert r.status_code == 414
    assert "8 KiB" in r.text
    assert collector.rows_with(marker) == []
    ok = collector.http.get(
        "/matomo.php", params={"idsite": 1, "rec": 1, "url": page(marker), "x": "a" * 7000}
    )
    assert ok.status_code == 200


def test_body_over_1_mib_is_413(collector: Collector, marker: str) -> None:
    body = f"idsite=1&rec=1&url={page(marker)}&x=".encode() + b"a" * (1024 * 1024)
    r = collector.http.post(
        "/matomo.php", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413
    assert collector.healthy()


def test_chunked_body_over_1_mib_is_413(collector: Collector) -> None:
    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(20):
            yield b"a" * 65536

    r = collector.http.post("/matomo.php", content=chunks())
    assert r.status_code == 413
    assert collector.healthy()


def test_field_lengths(collector: Collector, marker: str) -> None:
    r = collector.http.post(
        "/matomo.php",
        data={
            "idsite": "1",
            "rec": "1",
            "url": page(marker),
            "uid": "u" * 5000,
            "dimension2": "s" * 900,
            "action_name": "t" * 5000,
        },
    )
    assert r.status_code == 200
    [row] = collector.rows_with(marker)
    assert len(row["service"]) <= 250 and len(row["title"]) <= 1024


def test_raw_garbage_request_line_does_not_kill_the_worker(collector: Collector) -> None:
    host, port = collector.url.removeprefix("http://").split(":")
    for payload in (
        b"GET /matomo.php?" + b"%" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\xff garbage\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert collector.healthy()
