"""The reporting API over HTTP on the real collector, reading visits the real loader built:
TRACKING.md's calibration (one visitor, two visits, 8 actions, one bounce) field by field, the
shapes of the other methods, periods, auth and errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from dnma_client import Tracker
from harness import DEMO_TOKEN, SUPER_TOKEN, Stack

from dnma import clock
from dnma.clock import PARIS

DAY = clock.today() - timedelta(days=6)  # any weekday: the test sends its own visits
SITE = 1  # the simulator's site 1, with the harness's DEMO_TOKEN as its write token
HOST = "https://ent-bretagne.example"


def api(stack: Stack, method: str, *, post: bool = False, **params: Any) -> Any:
    query = {"module": "API", "method": method, "format": "JSON", "token_auth": DEMO_TOKEN, **params}
    url = f"{stack.collector_url}/index.php"
    resp = httpx.post(url, data=query, timeout=30) if post else httpx.get(url, params=query, timeout=30)
    assert resp.status_code == 200
    return resp.json()


@pytest.fixture(scope="module")
def calibrated(full_stack: Stack) -> dict[str, int]:
    """Visit 1: 5 page views, an event, a download, then a heartbeat; visit 2, two hours later:
    one page view (the bounce)."""
    t0 = int(datetime(DAY.year, DAY.month, DAY.day, 10, 0, tzinfo=PARIS).timestamp())
    props = {"uai": "0350002M", "profil": "ENSEIGNANT", "type": "NATIF"}
    with Tracker(full_stack.collector_url, SITE, DEMO_TOKEN, uid="calibration-user", properties=props) as t:
        hits = [
            t.page_hit(f"{HOST}/accueil", "Accueil", cdt=t0, service="ACCUEIL"),
            t.page_hit(f"{HOST}/notes/liste", "Notes", cdt=t0 + 60, service="NOTES"),
            t.event_hit("ressource", "consultation", "manuel", 3.0, url=f"{HOST}/notes/liste", cdt=t0 + 120,
                        service="NOTES"),
            t.page_hit(f"{HOST}/cahier_textes/", "Cahier", cdt=t0 + 180, service="CAHIER_TEXTES"),
            t.download_hit(f"{HOST}/docs/devoir.pdf", cdt=t0 + 240, service="CAHIER_TEXTES"),
            t.page_hit(f"{HOST}/notes/liste", "Notes", cdt=t0 + 300, service="NOTES"),
            t.page_hit(f"{HOST}/accueil", "Accueil", cdt=t0 + 360, service="ACCUEIL"),
            t.ping_hit(cdt=t0 + 390, service="ACCUEIL"),
            t.page_hit(f"{HOST}/accueil", "Accueil", cdt=t0 + 7200, service="ACCUEIL"),
        ]
        answer = t.bulk(hits)
    assert (answer["tracked"], answer["invalid"]) == (len(hits), 0)
    full_stack.wait_for(
        f"SELECT count() FROM dnma.visits WHERE site_id = {SITE} AND day = '{DAY}'",
        lambda r: r[0][0] == 2, timeout=90,
    )
    return {"sum_visit_length": 391 + 1}


def test_visits_summary_calibration(full_stack: Stack, calibrated: dict[str, int]) -> None:
    got = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=DAY.isoformat())
    total = calibrated["sum_visit_length"]
    assert got == {
        "nb_visits": 2, "nb_uniq_visitors": 1, "nb_users": 1, "nb_actions": 8, "max_actions": 7,
        "sum_visit_length": total, "bounce_count": 1, "bounce_rate": "50%", "nb_actions_per_visit": 4,
        "avg_time_on_site": round(total / 2),
    }
    # Same through a POST form, a week, a range, and the super-user token.
    assert api(full_stack, "VisitsSummary.get", post=True, idSite=SITE, period="week", date=DAY.isoformat()) == got
    rng = f"{DAY - timedelta(days=1)},{DAY + timedelta(days=1)}"
    assert api(full_stack, "VisitsSummary.get", idSite=SITE, period="range", date=rng,
               token_auth=SUPER_TOKEN)["nb_actions"] == 8


def test_empty_period_and_keyed_periods(full_stack: Stack, calibrated: dict[str, int]) -> None:
    assert api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=(DAY - timedelta(days=30)).isoformat()) == []
    around = f"{DAY - timedelta(days=1)},{DAY + timedelta(days=1)}"
    keyed = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=around)
    assert list(keyed) == [(DAY + timedelta(days=i)).isoformat() for i in (-1, 0, 1)]
    assert keyed[str(DAY - timedelta(days=1))] == [] and keyed[str(DAY)]["nb_visits"] == 2
    last = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date="last10")
    assert len(last) == 10 and last[DAY.isoformat()]["bounce_count"] == 1


def test_custom_dimension_events_and_pages(full_stack: Stack, calibrated: dict[str, int]) -> None:
    d = DAY.isoformat()
    profils = api(full_stack, "CustomDimensions.getCustomDimension", idSite=SITE, period="day", date=d, idDimension=5)
    assert profils == [{"label": "ENSEIGNANT", "nb_visits": 2, "nb_actions": 8, "nb_uniq_visitors": 1, "nb_users": 1}]
    services = api(full_stack, "CustomDimensions.getCustomDimension", idSite=SITE, period="day", date=d, idDimension=2)
    by_label = {r["label"]: r for r in services}
    assert set(by_label) == {"accueil", "notes", "cahier_textes"}
    assert (by_label["accueil"]["nb_visits"], by_label["accueil"]["nb_actions"]) == (2, 3)
    assert by_label["notes"]["nb_actions"] == 3 and by_label["notes"]["nb_visits"] == 1

    events = api(full_stack, "Events.getCategory", idSite=SITE, period="day", date=d)
    assert len(events) == 1 and events[0]["label"] == "ressource"
    assert (events[0]["nb_events"], events[0]["nb_visits"], events[0]["sum_event_value"]) == (1, 1, 3.0)

    pages = api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=d, flat=1)
    hits = {r["label"]: r["nb_hits"] for r in pages}
    assert hits == {"/accueil": 3, "/notes/liste": 2, "/cahier_textes/": 1}
    assert next(r for r in pages if r["label"] == "/accueil")["nb_visits"] == 2


def test_bulk_request(full_stack: Stack, calibrated: dict[str, int]) -> None:
    d = DAY.isoformat()
    got = api(full_stack, "API.getBulkRequest", **{
        "urls[0]": f"method=VisitsSummary.get&idSite={SITE}&period=day&date={d}",
        "urls[1]": f"method=SitesManager.getSiteFromId&idSite={SITE}",
        "urls[2]": f"method=VisitsSummary.get&idSite={SITE}&period=decade&date={d}",
    })
    assert len(got) == 3
    assert got[0]["nb_visits"] == 2
    assert got[1]["idsite"] == str(SITE)
    assert got[2]["result"] == "error"


def test_auth_and_errors(full_stack: Stack) -> None:
    d = DAY.isoformat()
    for token in ("", "wrong"):
        got = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=d, token_auth=token)
        assert got["result"] == "error"
    # The site-1 token does not open site 2.
    assert api(full_stack, "VisitsSummary.get", idSite=2, period="day", date=d)["result"] == "error"
    assert api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date="someday")["result"] == "error"
    assert api(full_stack, "CustomDimensions.getCustomDimension", idSite=SITE, period="day", date=d)["result"] == "error"
    assert api(full_stack, "Nope.get", idSite=SITE, period="day", date=d)["result"] == "error"
