"""The reporting API over HTTP on the real collector, reading visits the real loader built:
TRACKING.md's calibration (one visitor, two visits, 8 actions, one bounce) field by field, the
shapes of the other methods, periods, auth and errors."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dnma_client import Tracker
from harness import DEMO_TOKEN, SUPER_TOKEN, Stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnma import clock
from dnma.clock import PARIS

DAY = clock.today() - timedelta(days=6)  # any weekday: the test sends its own visits
SITE = 1  # the simulator's site 1, with the harness's DEMO_TOKEN as its write token
HOST = "https://ent-bretagne.example"


def api(stack: Stack, method: str, *, post: bool = False, **params: Any) -> Any:
    query = {"module": "API", "method": method, "format": "JSON", "token_auth": DEMO_TOKEN, **params}
    url = f"{stack.collector_url}/index.php"
    resp = httpx.post(url, data=query, timeout=30) if post else httpx.get(url, params=query, timeout=30)
    doc = resp.json()
    # Matomo's statuses: a refused access 401, an unknown method 400, anything else 200.
    error = doc.get("message", "") if isinstance(doc, dict) and doc.get("result") == "error" else ""
    expected = 401 if "access" in error or "logged in" in error else 400 if "not available in the module" in error else 200
    assert resp.status_code == expected, (resp.status_code, doc)
    return doc


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
        "nb_visits": 2, "nb_uniq_visitors": 1, "nb_users": 1, "nb_actions": 8, "nb_visits_converted": 0, "max_actions": 7,
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


def test_actions_and_events_over_http(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """The Actions and Events methods through the collector: additive with Actions.get, a subtable
    by id, Matomo's xml by default, and only the token's sites (aggregator/reporting_actions.py;
    their values by hand: tests/visits/test_reporting_actions.py)."""
    d = DAY.isoformat()
    totals = api(full_stack, "Actions.get", idSite=SITE, period="day", date=d)
    assert (totals["nb_pageviews"], totals["nb_downloads"], totals["nb_outlinks"]) == (6, 1, 0)
    pages = api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=d, flat=1, filter_limit=-1)
    assert sum(r["nb_hits"] for r in pages) == totals["nb_pageviews"]
    tree = api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=d)
    notes = next(r for r in tree if r["label"] == "notes")
    sub = api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=d, idSubtable=notes["idsubdatatable"])
    assert [(r["label"], r["nb_hits"]) for r in sub] == [("/liste", 2)]
    names = api(full_stack, "Events.getName", idSite=SITE, period="day", date=d, expanded=1)
    assert [(r["label"], r["subtable"][0]["label"]) for r in names] == [("manuel", "consultation")]
    xml = httpx.get(f"{full_stack.collector_url}/index.php", timeout=30, params={
        "module": "API", "method": "Actions.getDownloads", "idSite": SITE, "period": "day", "date": d,
        "token_auth": DEMO_TOKEN}).text
    assert "<label>ent-bretagne.example</label>" in xml and "<idsubdatatable>1</idsubdatatable>" in xml
    for method in ("Actions.get", "Actions.getPageTitles", "Events.getAction", "Actions.getSiteSearchKeywords"):
        refused = api(full_stack, method, idSite=2, period="day", date=d)
        assert refused["result"] == "error" and "view' access" in refused["message"], (method, refused)


def test_visit_reports_over_http(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """DevicesDetection, VisitorInterest, VisitTime, VisitFrequency, Referrers, MultiSites, Live and
    API.getSegmentsMetadata through the collector (aggregator/reporting_visits.py and
    reporting_referrers.py; their values by hand: tests/visits/test_reporting_visits.py): the
    calibration's two visits add up in each, and only the token's sites are read."""
    d = DAY.isoformat()
    visits = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=d)["nb_visits"]
    assert visits == 2
    for method in ("DevicesDetection.getType", "DevicesDetection.getBrowsers", "DevicesDetection.getOsFamilies",
                   "VisitTime.getVisitInformationPerServerTime", "VisitorInterest.getNumberOfVisitsPerPage",
                   "VisitorInterest.getNumberOfVisitsPerVisitDuration", "Referrers.getReferrerType"):
        rows = api(full_stack, method, idSite=SITE, period="day", date=d, filter_limit=-1)
        assert sum(r["nb_visits"] for r in rows) == visits, (method, rows)
        refused = api(full_stack, method, idSite=2, period="day", date=d)
        assert refused["result"] == "error" and "view' access" in refused["message"], (method, refused)
    pages = api(full_stack, "VisitorInterest.getNumberOfVisitsPerPage", idSite=SITE, period="day", date=d)
    assert {r["label"]: r["nb_visits"] for r in pages if r["nb_visits"]} == {"1 page": 1, "6-7 pages": 1}
    durations = api(full_stack, "VisitorInterest.getNumberOfVisitsPerVisitDuration", idSite=SITE, period="day", date=d)
    assert {r["label"]: r["nb_visits"] for r in durations if r["nb_visits"]} == {"0\u201310s": 1, "4-7 min": 1}
    types = api(full_stack, "DevicesDetection.getType", idSite=SITE, period="day", date=d, filter_limit=-1)
    assert {"Desktop", "Smartphone", "Tablet", "Car browser"} <= {r["label"] for r in types}
    hours = api(full_stack, "VisitTime.getVisitInformationPerServerTime", idSite=SITE, period="day", date=d)
    assert (len(hours), hours[10]["nb_visits"], hours[12]["nb_visits"]) == (24, 1, 1)  # 10:00 and 12:00 Paris
    frequency = api(full_stack, "VisitFrequency.get", idSite=SITE, period="day", date=d)
    assert frequency.get("nb_visits_new", 0) + frequency.get("nb_visits_returning", 0) == visits
    week = api(full_stack, "VisitTime.getByDayOfWeek", idSite=SITE, period="week", date=d)
    assert [r["nb_visits"] for r in week if r["day_of_week"] == DAY.isoweekday()] == [visits]
    # MultiSites.getAll: every site of the token (site 1 only here), named; getOne for one site.
    every = api(full_stack, "MultiSites.getAll", period="day", date=d)
    assert [(r["idsite"], r["nb_visits"], r["label"] != "") for r in every] == [(SITE, visits, True)]
    assert api(full_stack, "MultiSites.getOne", idSite=SITE, period="day", date=d)["nb_actions"] == 8
    assert len(api(full_stack, "MultiSites.getAll", period="day", date=d, token_auth=SUPER_TOKEN)) > 1
    counters = api(full_stack, "Live.getCounters", idSite=SITE, lastMinutes=30)
    assert list(counters[0]) == ["visits", "actions", "visitors", "visitsConverted"]
    segments = api(full_stack, "API.getSegmentsMetadata", idSites=SITE)
    assert "deviceType" in {r["segment"] for r in segments}
    refused = api(full_stack, "API.getSegmentsMetadata", idSites=2)
    assert refused["result"] == "error"
    xml = httpx.get(f"{full_stack.collector_url}/index.php", timeout=30, params={
        "module": "API", "method": "DevicesDetection.getType", "idSite": SITE, "period": "day", "date": d,
        "token_auth": DEMO_TOKEN}).text
    assert "<segment>deviceType==car+browser</segment>" in xml


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


def test_bad_input_answers_matomo_errors(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """Each bad parameter: Matomo's error document and a message naming what is wrong, never a 500."""
    d = DAY.isoformat()
    pages = {"method": "Actions.getPageUrls", "idSite": SITE, "period": "day", "date": d}
    errors_before, server_errors_before = _api_errors(full_stack), _server_errors(full_stack)
    cases = (
        ({"date": "0001-01-01"}, "before first website"),
        ({"period": "range", "date": "0001-01-01,9999-12-31"}, "before first website"),
        ({"date": "9999-12-31"}, "9999-12-31"),
        ({"filter_limit": "--5"}, "filter_limit"),
        ({"filter_limit": "\u00b2"}, "filter_limit"),
        ({"filter_offset": "x"}, "filter_offset"),
        ({"filter_sort_order": "up"}, "filter_sort_order"),
        ({"filter_pattern": "(unclosed"}, "filter_pattern"),
        ({"filter_truncate": "2"}, "filter_truncate"),
        ({"idSite": "\u00b9"}, "idSite"),
        ({"idSite": "--1"}, "idSite"),
        ({"segment": "visitCount==1"}, "Segment 'visitCount' is not a supported segment."),
        ({"segment": "deviceType==phablet"}, "not one DNMA distinguishes"),
        ({"segment": "deviceType=@phone"}, "only == and !="),
        ({"segment": "actions>many"}, "a number"),
        ({"segment": "profil<X"}, "does not apply to text"),
        ({"segment": "deviceType"}, "segment condition"),
        ({"method": "CustomDimensions.getCustomDimension", "idDimension": "\u00b2"}, "idDimension"),
        ({"method": "CustomDimensions.getCustomDimension", "idDimension": "99"}, "Dimension 99 for website 1 does not exist."),
    )
    for params, says in cases:
        got = api(full_stack, **{**pages, **params})  # type: ignore[arg-type]
        assert got["result"] == "error" and says in got["message"], (params, got)
    # Counted as the callers' errors, by status, and never as the server's.
    assert _api_errors(full_stack) == errors_before + len(cases)
    assert _server_errors(full_stack) == server_errors_before
    # A range reaching past what ClickHouse's Date holds still reads the days it holds.
    far = api(full_stack, "VisitsSummary.get", idSite=SITE, period="range", date=f"{DAY},2200-12-31")
    assert far["nb_actions"] == 8


def test_generic_filters_in_matomos_order(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """filter_pattern, then sort, then offset and limit, then the columns (DataTableGenericFilter)."""
    d = DAY.isoformat()

    def pages(**params: Any) -> Any:
        return api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=d, flat=1, **params)

    default = [r["label"] for r in pages()]
    assert default == ["/accueil", "/cahier_textes/", "/notes/liste"]  # most visits, then label
    # Paging ends: a client looping on filter_offset meets an empty page.
    assert [[r["label"] for r in pages(filter_limit=1, filter_offset=i)] for i in range(4)] == [
        ["/accueil"], ["/cahier_textes/"], ["/notes/liste"], []]
    assert len(pages(filter_limit=-1)) == 3 and pages(filter_limit=0) == []
    by_hits = pages(filter_sort_column="nb_hits", filter_sort_order="asc")
    assert [(r["label"], r["nb_hits"]) for r in by_hits] == [("/cahier_textes/", 1), ("/notes/liste", 2), ("/accueil", 3)]
    assert [r["label"] for r in pages(filter_sort_column="nb_hits", filter_limit=1, filter_offset=1)] == ["/notes/liste"]
    assert [r["label"] for r in pages(filter_pattern="NOTES")] == ["/notes/liste"]  # case-insensitive, as Matomo
    assert [r["label"] for r in pages(filter_column="url", filter_pattern="cahier_t")] == ["/cahier_textes/"]
    assert pages(filter_pattern="^/(accueil|notes)", filter_sort_column="label", filter_sort_order="asc",
                 showColumns="nb_hits") == [{"label": "/accueil", "nb_hits": 3}, {"label": "/notes/liste", "nb_hits": 2}]
    hidden = pages(hideColumns="url,nb_visits", filter_limit=1)
    assert len(hidden) == 1 and hidden[0]["label"] == "/accueil" and hidden[0]["nb_hits"] == 3
    assert "url" not in hidden[0] and "nb_visits" not in hidden[0]
    summary = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=d, showColumns="nb_visits,bounce_count")
    assert summary == {"nb_visits": 2, "bounce_count": 1}
    # Over keyed periods, each period's rows are filtered alike.
    around = f"{DAY - timedelta(days=1)},{DAY}"
    keyed = api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=around, filter_limit=1,
                flat=1)
    assert keyed == {str(DAY - timedelta(days=1)): [], d: [pages(filter_limit=1)[0]]}


# Single conditions and their negations over what the calibration visits store.
_NEGATION = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">", "=@": "!@", "!@": "=@"}
_CONDITIONS = [("deviceType", ("==", "!="), ("desktop", "smartphone", "tablet")),
               ("operatingSystemCode", ("==", "!="), ("WIN", "AND", "LIN")),
               ("browserName", ("==", "!="), ("Chrome", "Firefox", "Unknown")),
               ("actions", ("==", "!=", "<", ">=", ">", "<="), ("0", "1", "2", "7", "8")),
               ("visitDuration", ("<", ">=", ">", "<="), ("0", "1", "391", "392", "10000")),
               ("profil", ("==", "!=", "=@", "!@"), ("ENSEIGNANT", "enseignant", "SEIGN", "ELEVE")),
               ("dimension5", ("==", "=@"), ("ENSEIGNANT", "ELEVE")),
               ("uai", ("==", "=@", "!="), ("0350002M", "0350002m", "035"))]


@st.composite
def conditions(draw: st.DrawFn) -> tuple[str, str]:
    name, operators, values = draw(st.sampled_from(_CONDITIONS))
    operator, value = draw(st.sampled_from(operators)), draw(st.sampled_from(values))
    return f"{name}{operator}{quote(value)}", f"{name}{_NEGATION[operator]}{quote(value)}"


def test_segments_split_the_totals(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """report(S) + report(!S) is the unsegmented report for additive metrics, a segment selecting
    every visit is the unsegmented report, and hit reports keep the hits of the segment's visits."""
    d = DAY.isoformat()

    def summary(segment: str = "") -> Any:
        return api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=d, segment=segment)

    total = summary()
    long, bounce = summary("actions>=2"), summary("actions<2")
    assert (long["nb_visits"], long["nb_actions"], bounce["nb_visits"], bounce["bounce_count"]) == (1, 7, 1, 1)
    assert summary("profil==enseignant,actions>100") == total == summary("actions>=0;profil=@NSEIGN")
    pages = api(full_stack, "Actions.getPageUrls", idSite=SITE, period="day", date=d, segment="actions<2")
    assert [(r["label"], r["nb_visits"], r["nb_hits"]) for r in pages] == [("/accueil", 1, 1)]

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(conditions())
    def additive(pair: tuple[str, str]) -> None:
        yes, no = summary(pair[0]) or {}, summary(pair[1]) or {}
        for metric in ("nb_visits", "nb_actions", "sum_visit_length", "bounce_count"):
            assert yes.get(metric, 0) + no.get(metric, 0) == total[metric], (pair, metric, yes, no)

    additive()


def test_bulk_request_items_fail_alone(full_stack: Stack, calibrated: dict[str, int]) -> None:
    d = DAY.isoformat()
    ok = f"method=VisitsSummary.get&idSite={SITE}&period=day&date={d}"
    bad = [f"{ok}&filter_limit=--5", f"{ok}&segment=visitCount%3D%3D1", "method=Nope.get",
           f"method=VisitsSummary.get&idSite=2&period=day&date={d}", f"method=VisitsSummary.get&idSite={SITE}&period=day&date=9999-12-31"]
    got = api(full_stack, "API.getBulkRequest", **{f"urls[{i}]": q for i, q in enumerate([ok, *bad, ok])})
    assert len(got) == len(bad) + 2
    assert got[0]["nb_visits"] == 2 and got[-1] == got[0]
    assert all(item["result"] == "error" and item["message"] for item in got[1:-1]), got


# The fuzz run's size: DNMA_FUZZ_EXAMPLES=5000 for a long run (random, not derandomised).
FUZZ_EXAMPLES = int(os.environ.get("DNMA_FUZZ_EXAMPLES", "0") or 0)
# Every parameter a served method reads (and a few Matomo clients send that DNMA does not read).
FUZZ_PARAMS = ["idSite", "idsite", "period", "date", "idDimension", "filter_limit", "filter_offset",
               "filter_sort_column", "filter_sort_order", "filter_pattern", "filter_column", "filter_truncate",
               "filter_excludelowpop", "showColumns", "hideColumns", "segment", "format", "url", "urls[0]",
               "urls[1]", "token_auth", "flat", "expanded", "idSubtable", "label", "format_metrics", "method"]
NASTY = ["", " ", "\u00b2", "\u00b9", "--1", "--5", "-1", "0", "1", "2", "99", "1,2", "all", "1,\u00b2", "1e3", "0x10",
         "nan", "9" * 40, "last9999999999", "previous0", "last3", "9999-12-31", "0001-01-01", "1991-08-05",
         "2149-06-07", "2024-02-30", "today", "yesterday", "today,0001-01-01", "0001-01-01,9999-12-31", "day",
         "week", "month", "year", "range", "decade", "json", "xml", "csv", "tsv", "original", "html", "(", "[",
         "a(?=b)", "(a+)+$", "\\", "%", "%ZZ", "\x00", "é" * 300, "label", "nb_visits", "asc", "desc", "DESC",
         "deviceType==smartphone", "deviceType", ";", ",", "a==b;c!=d,e=@f", "x=^", "method=VisitsSummary.get",
         "method=Nope.get&idSite=1", "null", "[]", "{}"]


def _served_methods() -> list[str]:
    """Every method the collector serves, as `dnma serve` builds it (the table in its code)."""
    from aggregator import reporting
    from collector.api import SITE_METHODS

    return sorted({*reporting.METHODS, *SITE_METHODS, "API.getBulkRequest"})


@st.composite
def requests(draw: st.DrawFn) -> dict[str, str]:
    """A served method with valid parameters, some of them replaced or added by bad values."""
    method = draw(st.sampled_from(_served_methods()))
    params = {"module": "API", "method": method, "format": "json", "token_auth": SUPER_TOKEN, "idSite": str(SITE),
              "period": "day", "date": DAY.isoformat(), "idDimension": "5"}
    for name in draw(st.lists(st.sampled_from(FUZZ_PARAMS), min_size=1, max_size=4, unique=True)):
        params[name] = draw(st.sampled_from(NASTY) | st.text(max_size=30) | st.integers().map(str))
    if draw(st.booleans()):
        # A segment the grammar reads, on the names DNMA computes, with any value.
        from aggregator.segments import DIMENSIONS, OPERATORS

        terms = st.tuples(st.sampled_from([*DIMENSIONS, "dimension5", "dimension2", "visitCount"]),
                          st.sampled_from(OPERATORS),
                          st.sampled_from(NASTY) | st.text(max_size=12) | st.floats().map(str))
        tree = draw(st.lists(st.lists(terms, min_size=1, max_size=2), min_size=1, max_size=2))
        params["segment"] = ";".join(",".join(f"{n}{op}{quote(v, safe='', errors='surrogatepass')}"
                                              for n, op, v in ors) for ors in tree)
    if method == "API.getBulkRequest" and draw(st.booleans()):
        inner = "&".join(f"{k}={quote(v, safe='', errors='surrogatepass')}" for k, v in params.items()
                         if k not in ("module", "token_auth", "method"))
        params["urls[0]"] = f"method={draw(st.sampled_from(_served_methods()))}&{inner}"
    return params


def _api_errors(stack: Stack, status: int = 200) -> float:
    text = httpx.get(f"{stack.collector_url}/metrics", timeout=30).text
    found = re.search(rf'^dnma_collector_responses_total{{kind="api_error",status="{status}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def _server_errors(stack: Stack) -> float:
    text = httpx.get(f"{stack.collector_url}/metrics", timeout=30).text
    return sum(float(m[1]) for m in re.finditer(r'^dnma_collector_server_errors_total\{[^}]*\} (\S+)$', text, re.M))


def test_fuzz_every_parameter_of_every_method(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """Hypothesis over every parameter of every served method (bad values, with valid ones around
    them, and inside API.getBulkRequest items): never a 5xx, never a traceback, an error always
    Matomo's document; the collector's 5xx counter does not move. About 10 s with the default
    bounded, derandomised run; DNMA_FUZZ_EXAMPLES=N runs N random examples."""
    before = _server_errors(full_stack)
    url = f"{full_stack.collector_url}/index.php"
    failures: list[str] = []

    with httpx.Client(timeout=60) as http:
        @settings(max_examples=FUZZ_EXAMPLES or 120, deadline=None, derandomize=not FUZZ_EXAMPLES,
                  database=None, suppress_health_check=[HealthCheck.too_slow])
        @given(requests())
        def probe(params: dict[str, str]) -> None:
            query = "&".join(f"{quote(k, safe='[]')}={quote(v, safe='', errors='surrogatepass')}"
                             for k, v in params.items())
            r = http.get(f"{url}?{query}")
            assert r.status_code < 500, (params, r.status_code, r.text[:300])
            assert "Traceback" not in r.text and 'File "' not in r.text, (params, r.text[:300])
            assert r.status_code in (200, 400, 401), (params, r.status_code, r.text[:300])
            if r.headers["content-type"].startswith("application/json"):
                doc = r.json()
                if r.status_code != 200:  # 400 / 401: Matomo's error document
                    assert doc["result"] == "error" and doc["message"], (params, doc)
                if isinstance(doc, dict) and doc.get("result") == "error":
                    assert isinstance(doc["message"], str) and doc["message"], (params, doc)
                if params["method"] == "API.getBulkRequest" and isinstance(doc, list):
                    failures.extend(f"{params}: {item}" for item in doc if isinstance(item, dict)
                                    and item.get("result") == "error" and "failed on the server" in item["message"])

        probe()
    assert not failures, failures[:5]
    assert _server_errors(full_stack) == before


def test_answers_keyed_by_site_and_by_period_in_each_format(full_stack: Stack, calibrated: dict[str, int]) -> None:
    """Matomo keys the answer by site for idSite=all or several sites, by period for several dates,
    and both together; xml when no format is asked for, csv in UTF-16LE with a byte-order mark."""
    d, before = DAY.isoformat(), (DAY - timedelta(days=1)).isoformat()
    one = api(full_stack, "VisitsSummary.get", idSite=SITE, period="day", date=d)
    sites = api(full_stack, "VisitsSummary.get", idSite=f"{SITE},2", period="day", date=d, token_auth=SUPER_TOKEN)
    assert sites == {"1": one, "2": []}
    every = api(full_stack, "VisitsSummary.get", idSite="all", period="day", date=d, token_auth=SUPER_TOKEN)
    assert list(every) == ["1", "2", "3", "4", "5"] and every["1"] == one  # the simulator's five sites
    # "all" is keyed even when the token reads one site; a repeated id is one site.
    assert api(full_stack, "VisitsSummary.get", idSite="all", period="day", date=d) == {"1": one}
    assert api(full_stack, "VisitsSummary.get", idSite=f"{SITE},{SITE}", period="day", date=d) == one
    both = api(full_stack, "VisitsSummary.get", idSite="1,2", period="day", date=f"{before},{d}", token_auth=SUPER_TOKEN)
    assert both == {"1": {before: [], d: one}, "2": {before: [], d: []}}
    pages = api(full_stack, "Actions.getPageUrls", idSite="2,1", period="day", date=d, token_auth=SUPER_TOKEN)
    assert list(pages) == ["2", "1"] and pages["2"] == [] and {r["label"] for r in pages["1"]} >= {"/accueil"}
    bulk = api(full_stack, "API.getBulkRequest", token_auth=SUPER_TOKEN,
               **{"urls[0]": f"method=VisitsSummary.get&idSite=1,2&period=day&date={d}"})
    assert bulk == [sites]

    url = f"{full_stack.collector_url}/index.php"
    query = {"module": "API", "method": "VisitsSummary.get", "idSite": "1,2", "period": "day", "date": f"{before},{d}",
             "token_auth": SUPER_TOKEN}
    xml = httpx.get(url, params=query, timeout=30)
    assert xml.headers["content-type"] == "text/xml; charset=utf-8"
    assert xml.text.startswith(f'<?xml version="1.0" encoding="utf-8" ?>\n<results>\n\t<result idSite="1">\n'
                               f'\t\t<result date="{before}" />\n\t\t<result date="{d}">\n\t\t\t<nb_uniq_visitors>1</nb_uniq_visitors>\n')
    assert xml.text.endswith(f'\t<result idSite="2">\n\t\t<result date="{before}" />\n\t\t<result date="{d}" />\n'
                             "\t</result>\n</results>")
    csv = httpx.get(url, params={**query, "format": "csv"}, timeout=30)
    assert csv.headers["content-type"] == "application/vnd.ms-excel" and csv.content[:2] == b"\xff\xfe"
    lines = csv.content[2:].decode("utf-16-le").split("\n")
    assert len(lines) == 2  # the empty periods have no line in Matomo's csv
    row = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert (row["idSite"], row["date"], row["nb_visits"], row["bounce_rate"]) == ("1", d, "2", "50%")
    tsv = httpx.get(url, params={**query, "method": "Actions.getPageUrls", "idSite": "1", "date": d, "format": "tsv",
                                 "convertToUnicode": "0"}, timeout=30)
    # Matomo's Csv renderer: the columns, then the row metadata, then idsubdatatable (folders only).
    head = tsv.text.split("\n")[0].split("\t")
    assert head[:5] == ["label", "nb_visits", "nb_uniq_visitors", "nb_hits", "sum_time_spent"]
    assert head[-6:] == ["avg_time_on_page", "bounce_rate", "exit_rate", "metadata_url", "metadata_segment",
                         "idsubdatatable"]
