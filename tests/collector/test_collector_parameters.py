"""TRACKING.md "Parameters" table: what each parameter does to the spooled row."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from ct_support import Collector, page

from dnma import clock


def track(collector: Collector, marker: str, **extra: Any) -> dict[str, Any]:
    headers = extra.pop("_headers", None)
    params = {"idsite": 1, "rec": 1, "url": page(marker), "action_name": marker, **extra}
    r = collector.http.get("/matomo.php", params=params, headers=headers)
    assert r.status_code == 200, r.content
    [row] = collector.rows_with(marker)
    return row


def test_get_post_form_and_query_string_wins(collector: Collector, marker: str) -> None:
    body = {
        "idsite": "1",
        "rec": "1",
        "url": page(marker),
        "action_name": "from body",
        "e_c": "c",
        "e_a": "a",
    }
    r = collector.http.post("/matomo.php?action_name=from+query", data=body)
    assert r.status_code == 200
    [row] = collector.rows_with(marker)
    assert row["title"] == "from query"
    assert row["action"] == "event"


def test_empty_post_with_url_parameters(collector: Collector, marker: str) -> None:
    r = collector.http.post(f"/matomo.php?idsite=1&rec=1&url={page(marker)}", content=b"")
    assert r.status_code == 200
    assert len(collector.rows_with(marker)) == 1


def test_unknown_parameters_ignored_and_wrong_types_default(collector: Collector, marker: str) -> None:
    row = track(
        collector, marker, foo="bar", e_c="c", e_a="a", e_v="not-a-number", search_count="x", new_visit="yes"
    )
    assert row["event_value"] is None
    assert row["new_visit"] == 0


def test_url_title_referrer(collector: Collector, marker: str) -> None:
    long_url = page(marker) + "?" + "x" * 2000
    row = track(
        collector, marker, url=long_url, action_name="Cahier de textes", urlref="https://ref.example/"
    )
    assert len(row["url"]) == 1024 and row["url"] == long_url[:1024]
    assert row["title"] == "Cahier de textes"  # marker still in the (cut) url
    assert row["referrer"] == "https://ref.example/"


def test_http_referer_used_only_when_url_and_urlref_are_empty(collector: Collector, marker: str) -> None:
    r = collector.http.get(
        "/matomo.php",
        params={"idsite": 1, "rec": 1, "action_name": marker},
        headers={"Referer": "https://hdr.example/x"},
    )
    assert r.status_code == 200
    [row] = collector.rows_with(marker)
    assert row["referrer"] == "https://hdr.example/x"
    row2 = track(collector, marker + "b", _headers={"Referer": "https://hdr.example/y"})
    assert row2["referrer"] == ""


def test_visitor_id_precedence(collector: Collector, marker: str) -> None:
    with_id = track(collector, marker + "1", _id="00000000000000ff")
    assert with_id["visitor_id"] == 0xFF
    longer = track(collector, marker + "2", _id="00000000000000fe99999")
    assert longer["visitor_id"] == 0xFE
    not_hex = track(collector, marker + "3", _id="not-a-hex-visitor")
    assert not_hex["visitor_id"] not in (0, 0xFF)
    cid = track(collector, marker + "4", _id="00000000000000ff", cid="0000000000000abc")
    assert cid["visitor_id"] == 0xABC
    uid = track(collector, marker + "5", _id="00000000000000ff", cid="0000000000000abc", uid="eleve-42")
    assert uid["user_hash"] != 0 and uid["visitor_id"] == uid["user_hash"]
    # Keyed, not Matomo's bare sha1: the stored id cannot be recomputed from the uid alone.
    assert uid["visitor_id"] != int(hashlib.sha1(b"eleve-42").hexdigest()[:16], 16)
    again = track(collector, marker + "6", uid="eleve-42")
    assert again["user_hash"] == uid["user_hash"]


def test_cookieless_fingerprint_is_stable_per_site_and_config(collector: Collector, marker: str) -> None:
    h = {
        "X-Forwarded-For": "198.51.100.7",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    }
    a = track(collector, marker + "a", _headers=h)
    b = track(collector, marker + "b", _headers=h)
    other_ip = track(collector, marker + "c", _headers={**h, "X-Forwarded-For": "198.51.100.8"})
    other_lang = track(collector, marker + "d", lang="de", _headers=h)
    assert a["visitor_id"] == b["visitor_id"] != 0
    assert other_ip["visitor_id"] != a["visitor_id"]
    assert other_lang["visitor_id"] != a["visitor_id"]


def test_new_visit(collector: Collector, marker: str) -> None:
    assert track(collector, marker, new_visit=1)["new_visit"] == 1


def test_dimensions(collector: Collector, marker: str) -> None:
    row = track(
        collector,
        marker,
        dimension1=" 0350122t ",
        dimension9="  libre  ",
        dimension12="x" * 400,
        dimensionx="no",
    )
    assert row["uai"] == "0350122T"
    assert row["dimensions"] == {"dimension9": "libre", "dimension12": "x" * 250}


def test_legacy_custom_variables(collector: Collector, marker: str) -> None:
    cvar = '{"1":["UAI","0940176F"],"2":["classe","6e B"],"3":"garbage"}'
    row = track(collector, marker, _cvar=cvar, cvar="{not json")
    assert row["uai"] == "0940176F"
    assert row["dimensions"] == {"cvar_classe": "6e B"}


def test_event(collector: Collector, marker: str) -> None:
    row = track(collector, marker, e_c="Ressources", e_a="Ouvrir", e_n=marker, e_v="2.5")
    assert (row["action"], row["event_category"], row["event_action"], row["event_value"]) == (
        "event",
        "Ressources",
        "Ouvrir",
        2.5,
    )


@pytest.mark.parametrize(
    ("extra", "action"),
    [
        (
            {
                "download": "https://ent.demo.example/f.pdf",
                "link": "https://x.example",
                "e_c": "c",
                "e_a": "a",
            },
            "download",
        ),
        ({"link": "https://x.example/", "e_c": "c", "e_a": "a", "c_n": "banner"}, "outlink"),
        ({"e_c": "c", "e_a": "a", "c_n": "banner", "search": "maths"}, "event"),
        ({"c_n": "banner", "c_p": "/img.png", "search": "maths"}, "content"),
        ({"search": "maths", "search_cat": "docs", "search_count": "4"}, "search"),
        ({}, "pageview"),
        ({"ping": 1}, "ping"),
        ({"idgoal": 3, "revenue": "9.5"}, "goal"),
        ({"idgoal": 3, "e_c": "c", "e_a": "a"}, "event"),
    ],
)
def test_action_type_priority(collector: Collector, marker: str, extra: dict[str, Any], action: str) -> None:
    row = track(collector, marker, **extra)
    assert row["action"] == action


def test_search_goal_pvid_fields(collector: Collector, marker: str) -> None:
    row = track(collector, marker, search="Maths ", search_cat="docs", search_count="4", pv_id="abc123zz")
    assert (row["search_keyword"], row["search_category"], row["search_count"]) == ("Maths", "docs", 4)
    assert row["pv_id"] == "abc123"
    goal = track(collector, marker + "g", idgoal="3", revenue="9.5")
    assert (goal["goal_id"], goal["revenue"]) == (3, 9.5)


def test_download_and_outlink_store_the_target_url(collector: Collector, marker: str) -> None:
    row = track(collector, marker, download=f"https://ent.demo.example/f/{marker}.pdf")
    assert row["url"].endswith(f"{marker}.pdf") and row["action"] == "download"


@pytest.mark.parametrize(
    ("extra", "campaign"),
    [
        ({"_rcn": "Rentree"}, "rentree"),
        ({"url_suffix": "?mtm_campaign=Printemps&x=1"}, "printemps"),
        ({"url_suffix": "?utm_source=a&utm_campaign=ETE"}, "ete"),
        ({"url_suffix": "?pk_campaign=Hiver"}, "hiver"),
        ({}, ""),
    ],
)
def test_campaign(collector: Collector, marker: str, extra: dict[str, Any], campaign: str) -> None:
    suffix = extra.pop("url_suffix", "")
    row = track(collector, marker, url=page(marker) + suffix, **extra)
    assert row["campaign"] == campaign


def test_cdt(collector: Collector, marker: str) -> None:
    now = int(clock.time())
    assert abs(track(collector, marker + "f", cdt=str(now + 3600))["ts"] - now) <= 5  # future → now
    assert (
        abs(track(collector, marker + "a", cdt=str(now - 25 * 365 * 86400))["ts"] - now) <= 5
    )  # > 20 y → now
    assert track(collector, marker + "r", cdt=str(now - 3600))["ts"] == now - 3600
    iso = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 7200))
    assert track(collector, marker + "i", cdt=iso)["ts"] == now - 7200
    assert abs(track(collector, marker + "g", cdt="garbage")["ts"] - now) <= 5


def test_ua_override_and_device_classes(collector: Collector, marker: str) -> None:
    ipad = "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1"
    row = track(collector, marker, ua=ipad, _headers={"User-Agent": "curl/8"})
    assert (row["device"], row["os"], row["browser"]) == ("tablette", "ios", "safari")
    android = "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
    row = track(collector, marker + "a", _headers={"User-Agent": android})
    assert (row["device"], row["os"], row["browser"]) == ("smartphone", "android", "chromemobile")
    win = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
    row = track(collector, marker + "w", _headers={"User-Agent": win})
    assert (row["device"], row["os"], row["browser"]) == ("ordinateur", "windows", "edge")


def test_accepted_but_no_effect_parameters(collector: Collector, marker: str) -> None:
    row = track(
        collector, marker, rand="123", r="456", apiv="1", cs="utf-8", dp="1", bw_bytes="100", consent="1",
        queuedtracking="0", res="1920x1080", h="10", m="5", s="3", cookie="1", fla="0", pdf="1", ca="0",
    )  # fmt: skip
    assert row["action"] == "pageview"


def test_ca_1_without_an_action_is_not_a_page_view(collector: Collector, marker: str) -> None:
    assert track(collector, marker, ca=1)["action"] != "pageview"


def test_invalid_utf8_replaced(collector: Collector, marker: str) -> None:
    r = collector.http.get(f"/matomo.php?idsite=1&rec=1&url={page(marker)}&action_name=caf%E9%FF%20ok")
    assert r.status_code == 200
    [row] = collector.rows_with(marker)
    assert row["title"] == "caf\ufffd\ufffd ok"


def test_a_record_holds_only_the_columns_its_hit_sets(collector: Collector, marker: str) -> None:
    """Missing keys are the columns' defaults for ClickHouse (JSONEachRow): a page view's record
    carries no event, search, goal or empty column, which makes it ~40 % shorter to spool and parse."""
    import orjson

    from dnma.hits import HIT_COLUMN_NAMES, HIT_DEFAULTS
    from dnma.spool import iter_records

    track(collector, marker, dimension1="0350122T", dimension5="ELEVE")
    [raw] = [orjson.loads(r) for r in iter_records(collector.spool_dir) if marker.encode() in r]
    assert set(raw) <= set(HIT_COLUMN_NAMES)
    assert {"ts", "received_at", "site_id", "action", "url", "title", "visitor_id", "uai", "profil"} <= set(raw)
    assert not {"event_category", "event_name", "event_value", "search_keyword", "goal_id", "revenue",
                "referrer", "campaign", "user_hash", "new_visit"} & set(raw)
    assert [key for key, value in raw.items() if value == HIT_DEFAULTS[key] and key != "action"] == []
