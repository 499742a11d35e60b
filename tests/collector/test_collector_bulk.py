"""Bulk tracking (TRACKING.md): JSON answers, item forms, per-item failures, top-level options."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from ct_support import DEMO_TOKEN, SUPER_TOKEN, Collector, page


def item(marker: str, n: int, **extra: Any) -> str:
    extra_qs = "".join(f"&{k}={v}" for k, v in extra.items())
    return f"?idsite=1&rec=1&url={page(marker)}/{n}{extra_qs}"


def bulk(collector: Collector, doc: Any) -> Any:
    return collector.http.post(
        "/matomo.php", content=orjson.dumps(doc), headers={"Content-Type": "application/json"}
    )


def test_string_and_object_items(collector: Collector, marker: str) -> None:
    doc = {
        "requests": [
            item(marker, 1),
            {"idsite": "1", "rec": "1", "url": f"{page(marker)}/2", "action_name": "objet", "new_visit": 1},
            "https://collector.example/matomo.php" + item(marker, 3),
            "no query part: skipped",
        ]
    }
    r = bulk(collector, doc)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "success", "tracked": 3, "invalid": 0}
    rows = collector.rows_with(marker)
    assert sorted(row["url"][-1] for row in rows) == ["1", "2", "3"]
    assert [row["new_visit"] for row in rows if row["url"].endswith("/2")] == [1]


def test_one_invalid_item_never_sinks_the_others_and_excluded_count_as_tracked(
    collector: Collector, marker: str
) -> None:
    doc = {
        "requests": [
            item(marker, 1),
            "?idsite=999&rec=1",
            item(marker, 2, rec=0),
            item(marker, 3, cid="bad"),
            item(marker, 4),
        ]
    }
    r = bulk(collector, doc)
    assert r.json() == {"status": "success", "tracked": 3, "invalid": 2}
    assert len(collector.rows_with(marker)) == 2


def test_super_user_token_gets_invalid_indices(collector: Collector, marker: str) -> None:
    doc = {
        "requests": [item(marker, 1), "?idsite=999&rec=1", item(marker, 2, e_c="")],
        "token_auth": SUPER_TOKEN,
    }
    r = bulk(collector, doc)
    assert r.json() == {"status": "success", "tracked": 2, "invalid": 1, "invalid_indices": [1]}


def test_top_level_token_applies_to_every_item(collector: Collector, marker: str) -> None:
    doc = {
        "requests": [item(marker, 1, cip="192.0.2.1"), item(marker, 2, cip="192.0.2.2")],
        "token_auth": DEMO_TOKEN,
    }
    assert bulk(collector, doc).json() == {"status": "success", "tracked": 2, "invalid": 0}
    doc.pop("token_auth")
    assert bulk(collector, doc).json() == {"status": "success", "tracked": 0, "invalid": 2}


@pytest.mark.parametrize("falsy", [0, "0", False, ""])
def test_falsy_send_image_gives_204(collector: Collector, marker: str, falsy: Any) -> None:
    r = bulk(collector, {"requests": [item(marker, 1)], "send_image": falsy})
    assert r.status_code == 204 and r.content == b""
    assert len(collector.rows_with(marker)) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"requests": "nope"}',
        b'{"no_requests": []}',
        b"[1,2]",
        b'{"requests": [' + b'"?a=1",' * 1000 + b'"?a=1"]}',
    ],
    ids=["truncated", "requests not array", "no requests", "not an object", "1001 items"],
)
def test_malformed_bulk_is_400_with_a_json_reason(collector: Collector, body: bytes) -> None:
    r = collector.http.post("/matomo.php", content=body)
    if body.startswith(
        b"["
    ):  # not a JSON object: not taken for a bulk, just a form body with no tracking parameters
        assert r.status_code == 400
        return
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["status"] == "error" and doc["message"]


def test_1000_items_accepted_in_one_append(collector: Collector, marker: str) -> None:
    before = collector.http.get("/healthz").json()["spool"]["fsyncs"]
    r = bulk(collector, {"requests": [item(marker, i) for i in range(1000)]})
    assert r.json() == {"status": "success", "tracked": 1000, "invalid": 0}
    assert len(collector.rows_with(marker)) == 1000
    after = collector.http.get("/healthz").json()["spool"]["fsyncs"]
    assert after - before <= 2  # one group commit (maybe shared with a neighbour's)


def test_invalid_utf8_in_bulk_is_replaced(collector: Collector, marker: str) -> None:
    body = b'{"requests":["?idsite=1&rec=1&url=' + page(marker).encode() + b'&action_name=caf\xe9"]}'
    r = collector.http.post("/matomo.php", content=body)
    assert r.json()["tracked"] == 1
    [row] = collector.rows_with(marker)
    assert row["title"] == "caf\ufffd"


def test_an_item_nested_too_deep_is_one_invalid_item(collector: Collector, marker: str) -> None:
    """An item nested deeper than the JSON parser reads (orjson stops at 1,024 levels) is an
    invalid item like any other: the items around it are judged and stored, the request is not
    refused as a whole; strings holding brackets, quotes and commas are not mistaken for nesting."""
    deep_list = "[" * 3000 + "]" * 3000
    deep_object = '{"a":' * 3000 + "1" + "}" * 3000
    tricky = item(marker, 3, action_name='%5B%7B%22a%2C%5D"]},[{\\"')
    body = ('{"token_auth": "' + SUPER_TOKEN + '", "requests": [' + orjson.dumps(item(marker, 1)).decode()
            + ", " + deep_list + ", " + orjson.dumps(item(marker, 2)).decode() + ", " + deep_object
            + ", " + orjson.dumps(tricky).decode() + "]}")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)  # the whole body is beyond orjson: the fallback is what is tested
    r = collector.http.post("/matomo.php", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "success", "tracked": 3, "invalid": 2, "invalid_indices": [1, 3]}
    assert sorted(row["url"].rsplit("/", 1)[1] for row in collector.rows_with(marker)) == ["1", "2", "3"]
    # Nesting elsewhere than in an item still refuses the request, with its reason.
    bad = '{"token_auth": ' + deep_list + ', "requests": [' + orjson.dumps(item(marker, 4)).decode() + "]}"
    r = collector.http.post("/matomo.php", content=bad.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "token_auth" in r.json()["message"]
