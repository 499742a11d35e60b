"""Property tests of the protocol parser (any bytes → parameters, bounded, no exception) and an
HTTP fuzz run: thousands of random query strings, bodies and bulk JSON never get a 5xx."""

from __future__ import annotations

import random
import string

import orjson
import pytest
from ct_support import Collector
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.protocol import (
    MAX_BULK_ITEMS,
    MAX_PARAMS,
    MAX_VALUE_CHARS,
    ProtocolError,
    looks_like_bulk,
    parse_bulk,
    request_params,
)

KEYS = ["idsite", "rec", "url", "_id", "cid", "uid", "e_c", "e_a", "e_v", "c_n", "cdt", "pf_net", "dimension1",
        "dimension2", "_cvar", "send_image", "ping", "idgoal", "search_count", "cip", "token_auth", "bots", "ua", "new_visit"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_any_bytes_parse_without_exception_and_bounded(query: bytes, body: bytes) -> None:
    params = request_params(query, body)
    assert len(params) <= 2 * MAX_PARAMS
    for k, v in params.items():
        assert isinstance(k, str) and isinstance(v, str) and k
        assert len(v) <= MAX_VALUE_CHARS


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(KEYS) | st.text(min_size=1, max_size=8), st.text(max_size=50), max_size=12
    )
)
def test_query_string_round_trip(params: dict[str, str]) -> None:
    from urllib.parse import urlencode

    params = {k: v for k, v in params.items() if k.strip("\x00")}
    parsed = request_params(urlencode(params).encode(), b"")
    assert parsed == {k: v for k, v in params.items() if k}


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(KEYS), st.text(max_size=10), max_size=5),
    st.dictionaries(st.sampled_from(KEYS), st.text(max_size=10), max_size=5),
)
def test_query_string_wins_over_body(query: dict[str, str], body: dict[str, str]) -> None:
    from urllib.parse import urlencode

    parsed = request_params(urlencode(query).encode(), urlencode(body).encode())
    assert parsed == {**body, **query}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.builds(lambda x: orjson.dumps(x), st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.sampled_from(["requests", "token_auth", "send_image", "idsite"]), children, max_size=4),
    max_leaves=20,
)))  # fmt: skip
def test_any_bulk_body_parses_or_is_a_protocol_error(body: bytes) -> None:
    try:
        bulk = parse_bulk(body)
    except ProtocolError as exc:
        assert exc.status == 400 and exc.reason
        return
    assert len(bulk.items) <= MAX_BULK_ITEMS
    for item in bulk.items:
        assert item is None or all(isinstance(k, str) and isinstance(v, str) for k, v in item.items())


def test_looks_like_bulk() -> None:
    assert looks_like_bulk(b'  {"requests":[]}') and not looks_like_bulk(b"idsite=1")


def _random_value(rng: random.Random) -> str:
    choices = [
        lambda: str(rng.randint(-5, 5)),
        lambda: "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 30))),
        lambda: "".join(rng.choice("0123456789abcdefXYZ") for _ in range(rng.randint(10, 20))),
        lambda: rng.choice(
            ["", " ", "%", "%zz", "%E9", "1e999", "nan", "-0", "\u00e9\u4e2d", "[]", "{}", '{"1":["a"]}']
        ),
        lambda: str(rng.random() * 10 ** rng.randint(0, 12)),
    ]
    return rng.choice(choices)()


def _random_query(rng: random.Random) -> str:
    from urllib.parse import quote

    keys = [rng.choice(KEYS) if rng.random() < 0.8 else _random_value(rng) for _ in range(rng.randint(0, 12))]
    if rng.random() < 0.7:
        keys[:0] = ["idsite", "rec"]
    parts = []
    for k in keys:
        v = "1" if k in ("idsite", "rec") and rng.random() < 0.7 else _random_value(rng)
        parts.append(
            f"{quote(k, safe='') if rng.random() < 0.8 else k}={quote(v, safe='') if rng.random() < 0.8 else v}"
        )
    return "&".join(parts)


@pytest.mark.timeout(240)
def test_http_fuzz_never_5xx(collector: Collector) -> None:
    from urllib.parse import quote

    rng = random.Random(20261128)
    statuses: dict[int, int] = {}
    http = collector.http
    for i in range(2500):
        kind = i % 5
        q = _random_query(rng)
        if kind == 0:  # raw bytes in the URL are fine, control characters cannot be sent
            r = http.get("/matomo.php?" + quote(q, safe="=&%+"))
        elif kind == 1:
            r = http.post(
                "/piwik.php",
                content=q.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        elif kind == 2:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
            r = http.post("/matomo.php?" + quote(q[:100], safe="=&%+"), content=raw)
        elif kind == 3:
            items: list[object] = []
            for _ in range(rng.randint(0, 6)):
                items.append(
                    rng.choice(
                        [
                            "?" + _random_query(rng),
                            _random_query(rng),
                            {"idsite": rng.choice([1, "1", None, [], "x"])},
                            3,
                            None,
                        ]
                    )
                )
            doc: dict[str, object] = {"requests": items}
            if rng.random() < 0.3:
                doc["token_auth"] = rng.choice(["super-user-token", "x", 5])
            if rng.random() < 0.2:
                doc["send_image"] = rng.choice([0, "0", True, None])
            r = http.post("/matomo.php", content=orjson.dumps(doc))
        else:
            body = (
                orjson.dumps({"requests": "?" + q})
                if rng.random() < 0.5
                else b'{"requests":[' + q.encode()[:50]
            )
            r = http.post("/matomo.php", content=body)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (r.status_code, q)
    assert collector.healthy()
    assert statuses.get(200, 0) > 100 and statuses.get(400, 0) > 100, statuses
    metrics = http.get("/metrics").text
    assert "dnma_collector_unexpected_errors_total 0.0" in metrics, [
        line for line in metrics.splitlines() if "unexpected" in line
    ]
