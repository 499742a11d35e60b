"""The endpoint under load: the loader's inserts stay fast while readers hammer it, and memory,
threads and file descriptors stay flat over a few hundred stateless requests."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import httpx
from conftest import PASSWORD, USER, Loader, running_endpoint_queries, wait_until

from aggregator.endpoint import EndpointHandle

AUTH = (USER, PASSWORD)
HEAVY = "SELECT uai, profil, count(), sum(visites), uniqExact(number % 100003) FROM dnma.visites AS v, numbers(3000) AS n GROUP BY uai, profil"


def test_insert_latency_bounded_under_heavy_readers(endpoint: EndpointHandle, loader: Loader) -> None:
    import chdb

    writer = chdb.connect(loader.path)  # the loader's own connection, as in production
    stop = threading.Event()
    answered: list[tuple[int, str]] = []

    def reader() -> None:
        with httpx.Client(auth=AUTH, timeout=60) as http:
            while not stop.is_set():
                resp = http.post(f"http://127.0.0.1:{endpoint.port}/", content=HEAVY)
                answered.append((resp.status_code, resp.text[:300] if resp.status_code != 200 else ""))

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    assert wait_until(lambda: len(running_endpoint_queries(loader)) >= 1)
    latencies: list[float] = []
    try:
        for n in range(150):  # 150 inserts, one every 10 ms
            started = time.monotonic()
            writer.query(f"INSERT INTO dnma.ticks VALUES ({n}, now64(3))")
            latencies.append(time.monotonic() - started)
            time.sleep(0.01)
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=120)
        writer.close()
    # Merge the 150 parts now, so background merges do not open files during the soak test.
    loader.query("OPTIMIZE TABLE dnma.ticks FINAL")
    assert loader.query("SELECT count() FROM dnma.ticks").strip() == "150"
    assert answered and {status for status, _ in answered} == {200}, answered[:3]
    latencies.sort()
    assert latencies[-1] < 1.0, f"max insert latency {latencies[-1]:.3f}s"
    assert latencies[len(latencies) // 2] < 0.2, f"median insert latency {latencies[len(latencies) // 2]:.3f}s"


def _footprint() -> tuple[int, int, int]:
    """(threads, open file descriptors, resident bytes) of this process."""
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return threading.active_count(), len(os.listdir("/proc/self/fd")), rss_pages * os.sysconf("SC_PAGE_SIZE")


def test_soak_flat_memory_threads_fds(endpoint: EndpointHandle, loader: Loader) -> None:
    import clickhouse_connect

    http = httpx.Client(auth=AUTH, headers={"Connection": "close"})  # a new TCP connection per request

    def burst(n: int) -> None:
        for i in range(n):
            # A new client (so a new session id) every 10 requests, a fresh session id on the others.
            if i % 10 == 0:
                client: Any = clickhouse_connect.get_client(
                    host="127.0.0.1", port=endpoint.port, username=USER, password=PASSWORD,
                    database="dnma", session_id=str(uuid.uuid4()),
                )
            client.query("SELECT profil, sum(visites) FROM visites WHERE uai != {u:String} GROUP BY profil",
                         parameters={"u": str(i)})
            resp = http.post(f"http://127.0.0.1:{endpoint.port}/", content="SELECT 1", params={"session_id": str(uuid.uuid4())})
            assert resp.text == "1\n"
            if i % 10 == 9:
                client.close()

    burst(40)  # warm-up: pools, caches, lazy imports
    time.sleep(0.3)
    threads0, fds0, rss0 = _footprint()
    burst(250)
    http.close()
    time.sleep(0.3)
    threads1, fds1, rss1 = _footprint()
    assert threads1 <= threads0 + 2, (threads0, threads1)
    assert fds1 <= fds0 + 8, (fds0, fds1)
    assert rss1 - rss0 < 40 * 1024 * 1024, (rss0, rss1)
    assert running_endpoint_queries(loader) == []
