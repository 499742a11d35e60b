"""The validation route (issue 20, item 3): /matomo.php/validate judges a tracking request as
/matomo.php would — per hit, what would be stored and what would count — and stores nothing.
Through the real collector: the spool and the accepted-hits counter are read before and after."""

from __future__ import annotations

import time
from typing import Any

import httpx
from ct_support import DEMO_TOKEN, SITE3_TOKEN, SUPER_TOKEN, Collector, page
from harness import DEMO_SITE_ID

from dnma import uai

VALIDATE = "/matomo.php/validate"
BEARER = {"Authorization": f"Bearer {DEMO_TOKEN}"}
OUTSIDE = "0130001" + uai.check_letter("0130001")  # Bouches-du-Rhône: site 1 covers 035 and 094 only
GOOD = {"dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE"}


def _hit(marker: str, **params: Any) -> dict[str, Any]:
    return {"idsite": DEMO_SITE_ID, "rec": 1, "url": page(marker), **GOOD, **params}


def test_refused_without_a_token_of_the_site(collector: Collector, marker: str) -> None:
    params = _hit(marker)
    assert collector.http.get(VALIDATE, params=params).status_code == 401
    assert collector.http.get(VALIDATE, params=params, headers={"Authorization": "Bearer nope"}).status_code == 401
    # Refused before its body is read: a huge declared body gets the 401, not a wait or a 413.
    r = collector.http.post(VALIDATE, content=b"x" * 10, headers={"Content-Length": "10"})
    assert r.status_code == 401 and r.json()["status"] == "error"
    # Site 3's token may not validate site 1's hits: not judged, not echoed.
    r = collector.http.get(VALIDATE, params=params, headers={"Authorization": f"Bearer {SITE3_TOKEN}"})
    assert r.status_code == 200, r.text
    (h,) = r.json()["hits"]
    assert h["verdict"] == "forbidden" and "properties" not in h
    assert collector.rows_with(marker) == []


def test_verdicts_and_nothing_stored(collector: Collector, marker: str) -> None:
    good = collector.http.get(VALIDATE, params=_hit(marker), headers=BEARER)
    assert good.status_code == 200, good.text
    doc = good.json()
    assert doc["stored"] == 0 and doc["summary"]["accepted"] == 1 and doc["summary"]["counted"] == 1
    (h,) = doc["hits"]
    assert (h["verdict"], h["stored"], h["counted"], h["flags"]) == ("accepted", True, True, [])
    assert h["properties"]["uai"] == "0350122T"

    outside = collector.http.post(VALIDATE, data=_hit(marker, dimension1=OUTSIDE), headers=BEARER).json()
    (h,) = outside["hits"]
    assert [f["code"] for f in h["flags"]] == ["outside_perimeter"]
    assert h["stored"] is True and h["verdict_label"] == "enregistré"

    # A bulk body with its own token inside (as trackers send it; the route's credential is still
    # the header, read before the body): an invalid UAI, an unknown SERVICE, an event without
    # action (refused) and an unknown site.
    items = [
        "?" + str(httpx.QueryParams(_hit(marker, dimension1="0450822A"))),
        "?" + str(httpx.QueryParams(_hit(marker, dimension2="NOTE"))),
        "?" + str(httpx.QueryParams(_hit(marker, e_c="cat"))),
        "?" + str(httpx.QueryParams(_hit(marker, idsite=999))),
    ]
    bulk = collector.http.post(VALIDATE, json={"requests": items, "token_auth": DEMO_TOKEN},
                                headers=BEARER)
    assert bulk.status_code == 200, bulk.text
    invalid_uai, unknown_service, event, unknown_site = bulk.json()["hits"]
    assert invalid_uai["verdict_label"] == "enregistré, exclu des indicateurs : UAI invalide (lettre de contrôle Z attendue)"
    assert (invalid_uai["stored"], invalid_uai["counted"]) == (True, False)
    (flag,) = unknown_service["flags"]
    assert flag["code"] == "unknown_service" and "NOTES" in flag["allowed"] and "la plus proche : NOTES" in flag["label"]
    assert (event["verdict"], event["reason"], event["tracking_status"]) == ("refused", "invalid_event", 400)
    assert (unknown_site["reason"], unknown_site["idsite"]) == ("unknown_site", None)

    # Nothing reached the spool (the accepted-hits counter: tests/e2e/test_tag_check_no_side_effects.py).
    assert collector.rows_with(marker) == []
    # The same hit on the tracking route is stored: the check above could fail.
    assert collector.http.get("/matomo.php", params=_hit(marker)).status_code == 200
    assert len(collector.rows_with(marker)) == 1


def test_judged_as_the_tracking_route_would(collector: Collector, marker: str) -> None:
    """The Bearer token lets the check run; it does not authenticate the hit: an old `cdt` without
    the hit's own token_auth is refused here as on /matomo.php, and accepted with it."""
    old = int(time.time()) - 3 * 86_400
    params = _hit(marker, cdt=old)
    (h,) = collector.http.get(VALIDATE, params=params, headers=BEARER).json()["hits"]
    assert h["reason"] == "cdt_too_old"
    assert collector.http.get("/matomo.php", params=params).status_code == 400
    (h,) = collector.http.get(VALIDATE, params={**params, "token_auth": SUPER_TOKEN}).json()["hits"]
    assert h["verdict"] == "accepted"
    assert collector.rows_with(marker) == []
