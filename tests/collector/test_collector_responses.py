"""TRACKING.md "Responses" table, row by row, against the real collector over HTTP."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from ct_support import DEMO_TOKEN, Collector, page

from dnma import clock

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def hit(marker: str, **extra: Any) -> dict[str, Any]:
    return {"idsite": 1, "rec": 1, "url": page(marker), "action_name": f"t {marker}", **extra}


# (case, extra params, headers, stored?)
RECORDED_OR_EXCLUDED = [
    ("recorded", {}, {}, True),
    ("bot excluded", {}, {"User-Agent": BOT_UA}, False),
    ("bot kept with bots=1", {"bots": 1}, {"User-Agent": BOT_UA}, True),
    ("rec=0", {"rec": 0}, {}, False),
    ("rec missing", {"rec": None}, {}, False),
    ("DNT honoured by site 2", {"idsite": 2}, {"DNT": "1"}, False),
    ("DNT ignored by site 1", {}, {"DNT": "1"}, True),
    ("excluded IP of site 2", {"idsite": 2}, {"X-Forwarded-For": "10.9.3.4"}, False),
    ("other IP on site 2", {"idsite": 2}, {"X-Forwarded-For": "10.8.3.4"}, True),
    ("excluded UA substring of site 2", {"idsite": 2}, {"User-Agent": "Foo MonitoringProbe/1.0"}, False),
    ("X-Purpose: preview", {}, {"X-Purpose": "preview"}, False),
    ("Sec-Purpose: prefetch", {}, {"Sec-Purpose": "prefetch;prerender"}, False),
]


@pytest.mark.parametrize(
    ("case", "extra", "headers", "stored"), RECORDED_OR_EXCLUDED, ids=[c[0] for c in RECORDED_OR_EXCLUDED]
)
@pytest.mark.parametrize("path", ["/matomo.php", "/piwik.php"])
def test_recorded_or_silently_excluded_answers_the_gif(
    collector: Collector,
    marker: str,
    path: str,
    case: str,
    extra: dict[str, Any],
    headers: dict[str, str],
    stored: bool,
) -> None:
    params = {k: v for k, v in hit(marker, **extra).items() if v is not None}
    r = collector.http.get(path, params=params, headers={"User-Agent": FIREFOX_UA, **headers})
    assert r.status_code == 200
    assert r.content == GIF and len(r.content) == 43
    assert r.headers["content-type"] == "image/gif"
    assert r.headers["cache-control"] == "no-store"
    assert len(collector.rows_with(marker)) == (1 if stored else 0)
    if case.startswith("DNT honoured"):
        assert r.headers["tk"] == "N"


def test_send_image_0_answers_204_and_still_records(collector: Collector, marker: str) -> None:
    r = collector.http.get("/matomo.php", params=hit(marker, send_image=0))
    assert r.status_code == 204 and r.content == b""
    assert len(collector.rows_with(marker)) == 1


def test_send_image_0_on_an_excluded_hit_answers_204(collector: Collector, marker: str) -> None:
    r = collector.http.get("/matomo.php", params=hit(marker, send_image=0, rec=0))
    assert r.status_code == 204 and r.content == b""
    assert collector.rows_with(marker) == []


def test_get_without_parameters_is_a_text_page(collector: Collector) -> None:
    r = collector.http.get("/matomo.php")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "tracking endpoint" in r.text


def test_post_without_parameters_is_400_with_the_same_text(collector: Collector) -> None:
    get = collector.http.get("/piwik.php")
    r = collector.http.post(
        "/piwik.php", content=b"", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 400
    assert r.text == get.text


def _old(seconds: int) -> str:
    return str(int(clock.time()) - seconds)


INVALID = [
    ("idsite missing", {"idsite": None}, "missing_site"),
    ("idsite blank", {"idsite": ""}, "missing_site"),
    ("idsite unknown", {"idsite": 999}, "unknown_site"),
    ("idsite 0", {"idsite": 0}, "invalid_site"),
    ("idsite negative", {"idsite": -3}, "invalid_site"),
    ("idsite not a number", {"idsite": "abc"}, "invalid_site"),
    ("cid not hex", {"cid": "zzzzzzzzzzzzzzzz"}, "invalid_cid"),
    ("cid too short", {"cid": "0123456789abcde"}, "invalid_cid"),
    ("cid too long", {"cid": "0123456789abcdef0"}, "invalid_cid"),
    ("cip without token", {"cip": "1.2.3.4"}, "auth_required"),
    ("cip with a wrong token", {"cip": "1.2.3.4", "token_auth": "nope"}, "auth_required"),
    ("country without token", {"country": "fr"}, "auth_required"),
    ("region without token", {"region": "53"}, "auth_required"),
    ("city without token", {"city": "Rennes"}, "auth_required"),
    ("lat without token", {"lat": "48.1"}, "auth_required"),
    ("long without token", {"long": "-1.6"}, "auth_required"),
    ("cdt 2 days old without token", {"cdt": _old(2 * 86400)}, "cdt_too_old"),
    ("blank e_c", {"e_c": "  ", "e_a": "click"}, "invalid_event"),
    ("e_a missing", {"e_c": "cat"}, "invalid_event"),
    ("blank e_a", {"e_c": "cat", "e_a": " "}, "invalid_event"),
    ("blank c_n", {"c_n": "   "}, "invalid_content"),
    ("negative pf_net", {"pf_net": -1}, "invalid_performance"),
    ("negative pf_onl", {"pf_srv": 3, "pf_onl": -20}, "invalid_performance"),
]


@pytest.mark.parametrize(("case", "extra", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_request_is_400_gif_then_reason(
    collector: Collector, marker: str, case: str, extra: dict[str, Any], reason: str
) -> None:
    params = {k: v for k, v in hit(marker, **extra).items() if v is not None}
    r = collector.http.get("/matomo.php", params=params)
    assert r.status_code == 400
    # Our byte layout: the 43-byte GIF (a browser still gets an image), then "<reason>: <detail>\n".
    assert r.headers["content-type"] == "image/gif"
    assert r.content[:43] == GIF
    text = r.content[43:].decode()
    assert text.startswith(reason + ": ") and text.endswith("\n")
    assert collector.rows_with(marker) == []

    quiet = collector.http.get("/matomo.php", params={**params, "send_image": 0})
    assert quiet.status_code == 400
    assert quiet.headers["content-type"].startswith("text/plain")
    assert quiet.text == text


def test_valid_token_allows_the_auth_only_parameters(collector: Collector, marker: str) -> None:
    params = hit(marker, cip="203.0.113.9", country="fr", cdt=_old(3 * 86400), token_auth=DEMO_TOKEN)
    r = collector.http.get("/matomo.php", params=params)
    assert r.status_code == 200, r.content
    [row] = collector.rows_with(marker)
    assert abs(row["ts"] - (int(clock.time()) - 3 * 86400)) <= 5


def test_every_get_says_no_store_and_non_get_allow_the_origin(collector: Collector, marker: str) -> None:
    assert collector.http.get("/matomo.php", params={"idsite": 999}).headers["cache-control"] == "no-store"
    r = collector.http.post("/matomo.php", data=hit(marker), headers={"Origin": "https://ent.demo.example"})
    assert r.status_code == 200 and r.content == GIF
    assert r.headers["access-control-allow-origin"] == "https://ent.demo.example"
    assert r.headers["access-control-allow-credentials"] == "true"
    r = collector.http.post("/matomo.php", data=hit(marker))
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-credentials"] == "true"
    bad = collector.http.post("/matomo.php", data={"idsite": "x"}, headers={"Origin": "https://a.example"})
    assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == "https://a.example"


@pytest.mark.parametrize("path", ["/matomo.php", "/piwik.php"])
def test_options_preflight(collector: Collector, path: str) -> None:
    r = collector.http.options(path)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-methods"] == "GET, POST"
    assert r.headers["access-control-allow-headers"] == "*"
    assert r.headers["access-control-allow-origin"] == "*"
    r = collector.http.options(path, headers={"Origin": "https://ent.demo.example"})
    assert r.headers["access-control-allow-origin"] == "https://ent.demo.example"
    assert r.headers["access-control-allow-credentials"] == "true"


def test_other_methods_are_refused_cleanly(collector: Collector) -> None:
    r = collector.http.put("/matomo.php", content=b"idsite=1&rec=1")
    assert r.status_code == 405
