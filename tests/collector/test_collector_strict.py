"""A second collector with the strict knobs: bulk authentication required, a tiny spool cap
(503 + Retry-After), two workers sharing the port (metrics must not crash)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import orjson
import pytest
from ct_support import DEMO_TOKEN, SUPER_TOKEN, Collector, page, start


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    stack = start(
        tmp_path_factory.mktemp("strict"),
        bulk_requests_require_authentication=True,
        spool_max_bytes=20_000,
        collector_workers=2,
    )
    try:
        yield Collector(stack)
    finally:
        stack.stop_all()


def bulk(c: Collector, doc: object) -> object:
    return c.http.post("/matomo.php", content=orjson.dumps(doc))


def test_bulk_without_a_valid_token_is_refused_whole(strict: Collector, marker: str) -> None:
    items = [f"?idsite=1&rec=1&url={page(marker)}/1", f"?idsite=2&rec=1&url={page(marker)}/2"]
    for doc in (
        {"requests": items},
        {"requests": items, "token_auth": "wrong"},
        {"requests": items, "token_auth": DEMO_TOKEN},
    ):
        r = bulk(strict, doc)
        assert r.status_code == 400
        assert r.json()["status"] == "error"
    assert strict.rows_with(marker) == []
    ok = bulk(strict, {"requests": items[:1], "token_auth": DEMO_TOKEN})
    assert ok.json() == {"status": "success", "tracked": 1, "invalid": 0}
    ok = bulk(strict, {"requests": items, "token_auth": SUPER_TOKEN})
    assert ok.json() == {"status": "success", "tracked": 2, "invalid": 0, "invalid_indices": []}


def test_single_hits_need_no_token(strict: Collector, marker: str) -> None:
    assert (
        strict.http.get("/matomo.php", params={"idsite": 1, "rec": 1, "url": page(marker)}).status_code == 200
    )


def test_metrics_with_two_workers(strict: Collector) -> None:
    for _ in range(10):
        r = strict.http.get("/metrics")
        assert r.status_code == 200
        assert "dnma_collector_step_calls_total" in r.text


def test_spool_full_answers_503_with_retry_after(strict: Collector, marker: str) -> None:
    # Runs last in this module: fills the 20 kB spool. Excluded hits need no storage and stay 200.
    statuses = []
    for i in range(80):
        r = strict.http.get(
            "/matomo.php", params={"idsite": 1, "rec": 1, "url": f"{page(marker)}/{i}", "x": "y" * 500}
        )
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["retry-after"].isdigit()
            break
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    r = bulk(strict, {"requests": [f"?idsite=1&rec=1&url={page(marker)}/b"], "token_auth": SUPER_TOKEN})
    assert r.status_code == 503 and "retry-after" in r.headers
    assert strict.http.get("/matomo.php", params={"idsite": 1, "rec": 0}).status_code == 200
    health = strict.http.get("/healthz")
    assert health.status_code == 200 and health.json()["spool"]["full"] is True
    # Both 503s counted under /matomo.php, whichever worker answered them (each flushes every second).
    deadline = time.monotonic() + 10
    while True:
        text = strict.http.get("/metrics").text
        counted = re.search(r'^dnma_collector_server_errors_total\{route="/matomo.php"\} (\S+)$', text, re.M)
        if counted and float(counted[1]) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counted and float(counted[1]) == 2, counted
