"""Matomo's visit-level reports (aggregator/reporting_visits.py) on embedded chDB, over visits whose
every figure is worked out by hand below (site 1, Paris; 2026-03-10 is a Tuesday, in CET):

A  visitor 42 (desktop, Windows, Firefox, a user id), Mon 03-09 09:00: 2 page views 100 s apart:
   2 actions, 101 s;
B  visitor 42, Tue 03-10 10:00: 7 page views over 390 s: 7 actions, 391 s, returning (after A);
C  visitor 42, Tue 12:00: 1 page view: 1 action, 1 s, a bounce, returning;
D  visitor 43 (smartphone, Android, Chrome Mobile), Tue 10:10: 5 page views over 160 s: 161 s, new;
E  visitor 44 (tablet, iOS, Safari), Tue 15:00: 2 page views 59 s apart: 60 s, new.

Referrers: A from Google (no keyword), B from Qwant ("Cahier de textes"), C from the site itself
(direct), D from www.ac-rennes.fr (a website), E none (direct).

Tuesday: 4 visits, 3 visitors, 15 actions, 613 s, 1 bounce. Matomo's duration buckets include both
ends, so E (exactly 60 s) is in 31–60s and in 1-2 min, as in Matomo.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator import reporting
from dnma.clock import PARIS
from tests.visits.conftest import Db, hit, open_db

DAY = date(2026, 3, 10)  # a Tuesday, pinned: the hits carry their own times
HOST = "https://ent-bretagne.example"
UA = {42: dict(device="ordinateur", os="windows", browser="firefox", user_hash=777),
      43: dict(device="smartphone", os="android", browser="chromemobile"),
      44: dict(device="tablette", os="ios", browser="safari")}


def _pages(visitor: int, start: datetime, offsets: list[int], referrer: str = "") -> list[dict[str, Any]]:
    """Page views of one visit; the first one carries the visit's referrer."""
    return [hit(start + timedelta(seconds=s), visitor_id=visitor, action="pageview", url=f"{HOST}/p{i}",
                referrer=referrer if i == 0 else f"{HOST}/p{i - 1}", **UA[visitor]) for i, s in enumerate(offsets)]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    d = open_db(Path(tmp_path_factory.mktemp("visits_reports")))
    d.insert([
        *_pages(42, datetime(2026, 3, 9, 9, 0, tzinfo=PARIS), [0, 100], "https://www.google.fr/"),
        *_pages(42, datetime(2026, 3, 10, 10, 0, tzinfo=PARIS), [0, 60, 120, 180, 240, 300, 390],
                "https://www.qwant.com/?q=Cahier+de+textes&t=web"),
        *_pages(42, datetime(2026, 3, 10, 12, 0, tzinfo=PARIS), [0], f"{HOST}/accueil"),
        *_pages(43, datetime(2026, 3, 10, 10, 10, tzinfo=PARIS), [0, 40, 80, 120, 160],
                "https://www.ac-rennes.fr/ent/acces.html"),
        *_pages(44, datetime(2026, 3, 10, 15, 0, tzinfo=PARIS), [0, 59]),
        # Another site's visit: never in site 1's reports.
        hit(datetime(2026, 3, 10, 10, 0, tzinfo=PARIS), site_id=2, visitor_id=7, action="pageview", url=HOST + "/"),
        # Site 3: a search keyword whose percent-encoding is not UTF-8.
        hit(datetime(2026, 3, 10, 11, 0, tzinfo=PARIS), site_id=3, visitor_id=9, action="pageview", url=HOST + "/",
            referrer="https://www.bing.com/search?q=%E9t%C3+Caf%C3%A9"),
    ])
    d.rebuild([DAY - timedelta(days=1), DAY])
    assert d.scalar("SELECT count() FROM dnma.visits WHERE site_id = 1") == 5
    yield d
    d.client.close()


def call(db: Db, method: str, period: str = "day", date_: str = DAY.isoformat(), **params: str) -> Any:
    return reporting.call(db.client, method, {"period": period, "date": date_, **params}, (1,), DAY)


def labels(rows: list[dict[str, Any]]) -> list[str]:
    return [r["label"] for r in rows]


def test_device_type_every_column_and_the_empty_types(db: Db) -> None:
    rows = call(db, "DevicesDetection.getType")
    assert rows[0] == {"label": "Desktop", "nb_uniq_visitors": 1, "nb_visits": 2, "nb_actions": 8, "nb_users": 1,
                       "max_actions": 7, "sum_visit_length": 392, "bounce_count": 1, "nb_visits_converted": 0,
                       "segment": "deviceType==desktop", "logo": "plugins/Morpheus/icons/dist/devices/desktop.png"}
    assert list(rows[0]) == ["label", "nb_uniq_visitors", "nb_visits", "nb_actions", "nb_users", "max_actions",
                             "sum_visit_length", "bounce_count", "nb_visits_converted", "segment", "logo"]
    # Most visits first, ties and the types without visits in PHP's natural order (spaces skipped).
    assert labels(rows) == ["Desktop", "Smartphone", "Tablet", "Camera", "Car browser", "Console", "Feature phone",
                            "Peripheral", "Phablet", "Portable media player", "Smart display", "Smart speaker", "Tv",
                            "Wearable"]
    assert rows[1]["sum_visit_length"] == 161 and rows[2]["sum_visit_length"] == 60
    assert rows[4] == {"label": "Car browser", "nb_visits": 0, "segment": "deviceType==car+browser",
                       "logo": "plugins/Morpheus/icons/dist/devices/car_browser.png"}
    summary = call(db, "VisitsSummary.get")
    assert sum(r["nb_visits"] for r in rows) == summary["nb_visits"] == 4
    assert sum(r.get("nb_actions", 0) for r in rows) == summary["nb_actions"] == 15
    # An empty day: Matomo's empty table, without the zero rows.
    assert call(db, "DevicesDetection.getType", date_="2026-03-08") == []
    # Generic filters and a segment.
    assert labels(call(db, "DevicesDetection.getType", filter_pattern="^smart")) == [
        "Smartphone", "Smart display", "Smart speaker"]
    assert labels(call(db, "DevicesDetection.getType", filter_limit="2", filter_offset="1")) == ["Smartphone", "Tablet"]
    seg = call(db, "DevicesDetection.getType", segment="browserName==firefox")
    assert (seg[0]["label"], seg[0]["nb_visits"], seg[1]["nb_visits"]) == ("Desktop", 2, 0)


def test_browsers_and_os_families(db: Db) -> None:
    got = call(db, "DevicesDetection.getBrowsers")
    assert [(r["label"], r["nb_visits"], r["segment"]) for r in got] == [
        ("Firefox", 2, "browserCode==FF"), ("Chrome Mobile", 1, "browserCode==CM"), ("Safari", 1, "browserCode==SF")]
    assert list(got[0])[-2:] == ["logo", "segment"] and got[0]["logo"].endswith("/browsers/FF.png")
    os_rows = call(db, "DevicesDetection.getOsFamilies")
    assert [(r["label"], r["nb_visits"], r["logo"].rsplit("/", 1)[1]) for r in os_rows] == [
        ("Windows", 2, "WIN.png"), ("Android", 1, "AND.png"), ("iOS", 1, "IOS.png")]
    assert "segment" not in os_rows[0]
    # A week: Matomo's columns for periods longer than a day (daily uniques summed).
    week = call(db, "DevicesDetection.getOsFamilies", period="week")
    assert week[0] == {"label": "Windows", "nb_visits": 3, "nb_actions": 10, "max_actions": 7,
                       "sum_visit_length": 493, "bounce_count": 1, "nb_visits_converted": 0,
                       "sum_daily_nb_uniq_visitors": 2, "sum_daily_nb_users": 2,
                       "logo": "plugins/Morpheus/icons/dist/os/WIN.png"}


def test_server_time_and_local_time(db: Db) -> None:
    hours = call(db, "VisitTime.getVisitInformationPerServerTime")
    assert labels(hours) == [f"{h:02d}" for h in range(24)]
    assert hours[10] == {"label": "10", "nb_uniq_visitors": 2, "nb_visits": 2, "nb_actions": 12, "nb_users": 1,
                         "max_actions": 7, "sum_visit_length": 552, "bounce_count": 0, "nb_visits_converted": 0,
                         "segment": "visitStartServerHour==9"}  # 10:00 in Paris is 09:00 UTC in March
    assert (hours[12]["bounce_count"], hours[15]["sum_visit_length"], hours[0]["nb_visits"]) == (1, 60, 0)
    assert sum(r["nb_visits"] for r in hours) == 4
    assert call(db, "VisitTime.getVisitInformationPerServerTime", date_="2026-03-08") == []
    # Local time is not collected: Matomo's empty answer.
    assert call(db, "VisitTime.getVisitInformationPerLocalTime") == []


def test_day_of_week(db: Db) -> None:
    rows = call(db, "VisitTime.getByDayOfWeek", period="week")
    assert labels(rows) == ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    assert rows[0] == {"label": "Monday", "nb_visits": 1, "nb_uniq_visitors": 1, "nb_actions": 2, "nb_users": 1,
                       "sum_visit_length": 101, "bounce_count": 0, "nb_visits_converted": 0, "day_of_week": 1}
    assert rows[1]["nb_visits"] == 4 and rows[1]["nb_uniq_visitors"] == 3 and rows[1]["sum_visit_length"] == 613
    assert rows[2] == {"label": "Wednesday", "nb_visits": 0, "day_of_week": 3}
    assert sum(r["nb_visits"] for r in rows) == call(db, "VisitsSummary.get", period="week")["nb_visits"] == 5
    with pytest.raises(reporting.ReportError, match="does not support multiple dates"):
        call(db, "VisitTime.getByDayOfWeek", date_="last3")


def test_visitor_interest_buckets(db: Db) -> None:
    durations = call(db, "VisitorInterest.getNumberOfVisitsPerVisitDuration")
    assert [(r["label"], r["nb_visits"]) for r in durations] == [
        ("0\u201310s", 1), ("11\u201330s", 0), ("31\u201360s", 1), ("1-2 min", 1), ("2-4 min", 1), ("4-7 min", 1),
        ("7-10 min", 0), ("10-15 min", 0), ("15-30 min", 0), ("30+ min", 0)]
    assert [r["segment"] for r in durations][::3] == [
        "visitDuration>=0;visitDuration<=10", "visitDuration>=60;visitDuration<=120",
        "visitDuration>=420;visitDuration<=600", "visitDuration>=1801"]
    # Additive but for a visit of exactly 60 s, counted twice as by Matomo's buckets.
    other = call(db, "VisitorInterest.getNumberOfVisitsPerVisitDuration", segment="visitDuration!=60")
    assert sum(r["nb_visits"] for r in other) == call(db, "VisitsSummary.get", segment="visitDuration!=60")["nb_visits"] == 3
    pages = call(db, "VisitorInterest.getNumberOfVisitsPerPage")
    assert [(r["label"], r["nb_visits"], r["segment"]) for r in pages] == [
        ("1 page", 1, "actions==1"), ("2 pages", 1, "actions==2"), ("3 pages", 0, "actions==3"),
        ("4 pages", 0, "actions==4"), ("5 pages", 1, "actions==5"), ("6-7 pages", 1, "actions>=6;actions<=7"),
        ("8-10 pages", 0, "actions>=8;actions<=10"), ("11-14 pages", 0, "actions>=11;actions<=14"),
        ("15-20 pages", 0, "actions>=15;actions<=20"), ("21+ pages", 0, "actions>=21")]
    assert sum(r["nb_visits"] for r in pages) == 4
    month = call(db, "VisitorInterest.getNumberOfVisitsPerPage", period="month")
    assert month[1]["nb_visits"] == 2 and sum(r["nb_visits"] for r in month) == 5
    assert call(db, "VisitorInterest.getNumberOfVisitsPerPage", date_="2026-03-08") == []


def test_visit_frequency(db: Db) -> None:
    got = call(db, "VisitFrequency.get")
    assert dict(got) == {
        "nb_uniq_visitors_new": 2, "nb_users_new": 0, "nb_visits_new": 2, "nb_actions_new": 7,
        "nb_visits_converted_new": 0, "bounce_count_new": 0, "sum_visit_length_new": 221, "max_actions_new": 5,
        "bounce_rate_new": "0%", "nb_actions_per_visit_new": 3.5, "avg_time_on_site_new": 111,
        "nb_uniq_visitors_returning": 1, "nb_users_returning": 1, "nb_visits_returning": 2, "nb_actions_returning": 8,
        "nb_visits_converted_returning": 0, "bounce_count_returning": 1, "sum_visit_length_returning": 392,
        "max_actions_returning": 7, "bounce_rate_returning": "50%", "nb_actions_per_visit_returning": 4,
        "avg_time_on_site_returning": 196}
    assert list(got)[:3] == ["nb_uniq_visitors_new", "nb_users_new", "nb_visits_new"]
    # New + returning = every visit.
    assert got["nb_visits_new"] + got["nb_visits_returning"] == call(db, "VisitsSummary.get")["nb_visits"]
    week = call(db, "VisitFrequency.get", period="week")
    assert (week["nb_visits_new"], week["nb_users_new"], week["avg_time_on_site_new"], week["nb_visits_returning"]) == (
        3, 1, 107, 2)
    # Only the kinds seen: A alone on Monday is new; a year leaves out unique visitors and users.
    monday = call(db, "VisitFrequency.get", date_="2026-03-09")
    assert set(monday) == {k for k in got if k.endswith("_new")}
    year = call(db, "VisitFrequency.get", period="year")
    assert "nb_uniq_visitors_new" not in year and year["nb_visits_new"] == 3
    # A segment applies to the visits, never to what makes a visitor returning.
    desktop = call(db, "VisitFrequency.get", segment="deviceType==desktop")
    assert desktop["nb_visits_returning"] == 2 and "nb_visits_new" not in desktop
    assert call(db, "VisitFrequency.get", date_="2026-03-08") == {}


def test_referrer_type_all_websites_search_engines(db: Db) -> None:
    types = call(db, "Referrers.getReferrerType")
    assert types[0] == {"label": "Direct Entry", "nb_uniq_visitors": 2, "nb_visits": 2, "nb_actions": 3,
                        "nb_users": 1, "max_actions": 2, "sum_visit_length": 61, "bounce_count": 1,
                        "nb_visits_converted": 0, "segment": "referrerType==direct", "referrer_type": 1}
    assert [(r["label"], r["nb_visits"], r.get("idsubdatatable")) for r in types] == [
        ("Direct Entry", 2, None), ("Search Engines", 1, 2), ("Websites", 1, 3)]
    assert sum(r["nb_visits"] for r in types) == call(db, "VisitsSummary.get")["nb_visits"]
    expanded = call(db, "Referrers.getReferrerType", expanded="1")
    assert [r["label"] for r in expanded[1]["subtable"]] == ["cahier de textes"]
    assert expanded[1]["subtable"][0]["segment"] == "referrerType==search;referrerKeyword==cahier+de+textes"
    # idSubtable is a referrer type: that type's rows.
    assert [r["label"] for r in call(db, "Referrers.getReferrerType", idSubtable="3")] == ["www.ac-rennes.fr"]

    every = call(db, "Referrers.getAll")
    assert [(r["label"], r["nb_visits"], r["segment"], r["referer_type"]) for r in every] == [
        ("cahier de textes", 1, "referrerType==search;referrerKeyword==cahier+de+textes", 2),
        ("www.ac-rennes.fr", 1, "referrerName==www.ac-rennes.fr", 3)]
    with pytest.raises(reporting.ReportError, match="multiple sites or dates"):
        call(db, "Referrers.getAll", date_="last2")

    sites = call(db, "Referrers.getWebsites")
    assert [(r["label"], r["nb_actions"], r["segment"], r["idsubdatatable"]) for r in sites] == [
        ("www.ac-rennes.fr", 5, "referrerName==www.ac-rennes.fr", 1)]
    urls = call(db, "Referrers.getWebsites", idSubtable="1")
    assert [(r["label"], r["sum_visit_length"]) for r in urls] == [("https://www.ac-rennes.fr/ent/acces.html", 161)]

    engines = call(db, "Referrers.getSearchEngines", period="week", expanded="1")
    assert [(r["label"], r["nb_visits"], r["segment"], r["url"], r["logo"]) for r in engines] == [
        ("Google", 1, "referrerType==search;referrerName==Google", "http://google.com",
         "plugins/Morpheus/icons/dist/searchEngines/google.com.png"),
        ("Qwant", 1, "referrerType==search;referrerName==Qwant", "http://qwant.com",
         "plugins/Morpheus/icons/dist/searchEngines/qwant.com.png")]
    assert engines[0]["subtable"][0]["label"] == "Keyword not defined"
    assert engines[1]["subtable"][0]["sum_daily_nb_uniq_visitors"] == 1
    # Nothing of a kind: Matomo's empty answer; a segment applies.
    assert call(db, "Referrers.getSearchEngines", date_="2026-03-08") == []
    assert call(db, "Referrers.getWebsites", segment="deviceType==desktop") == []


def test_live_counters(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from dnma import clock

    # DNMA's clock at Tuesday 15:20 in Paris.
    monkeypatch.setattr(clock, "_follow", None)
    monkeypatch.setattr(clock, "_offset", datetime(2026, 3, 10, 15, 20, tzinfo=PARIS).timestamp() - time.time())
    assert list(call(db, "Live.getCounters", lastMinutes="30")) == [
        {"visits": 1, "actions": 2, "visitors": 1, "visitsConverted": 0}]  # E, ended at 15:00:59
    assert list(call(db, "Live.getCounters", lastMinutes="2880")) == [
        {"visits": 5, "actions": 17, "visitors": 3, "visitsConverted": 0}]
    assert list(call(db, "Live.getCounters", lastMinutes="2880", segment="deviceType==desktop")) == [
        {"visits": 3, "actions": 10, "visitors": 1, "visitsConverted": 0}]
    assert list(call(db, "Live.getCounters", lastMinutes="30", showColumns="visits")) == [{"visits": 1}]
    for bad in ("0", "2881", "x", ""):
        with pytest.raises(reporting.ReportError, match="lastMinutes"):
            call(db, "Live.getCounters", lastMinutes=bad)
    # No period is needed.
    assert reporting.call(db.client, "Live.getCounters", {"lastMinutes": "30"}, (1,), DAY)[0]["visits"] == 1


def test_multi_sites(db: Db) -> None:
    one = call(db, "MultiSites.getOne")
    assert dict(one) == {"nb_visits": 4, "nb_actions": 15, "visits_evolution": "300%", "visits_evolution_trend": 1,
                         "actions_evolution": "650%", "actions_evolution_trend": 1, "pageviews_evolution": "650%",
                         "pageviews_evolution_trend": 1, "revenue_evolution": "0%", "revenue_evolution_trend": 0,
                         "nb_pageviews": 15, "revenue": 0}
    monday = call(db, "MultiSites.getOne", date_="2026-03-09")
    assert (monday["nb_visits"], monday["visits_evolution"], monday["visits_evolution_trend"]) == (1, "100%", 1)
    wednesday = call(db, "MultiSites.getOne", date_="2026-03-11")
    assert (wednesday["visits_evolution"], wednesday["visits_evolution_trend"]) == ("-100%", -1)
    every = reporting.call(db.client, "MultiSites.getAll", {"period": "day", "date": DAY.isoformat()}, (2, 1), DAY)
    assert [(r["idsite"], r["nb_visits"], r["previous_nb_visits"], r["previousRange"], r["periodName"]) for r in every] == [
        (1, 4, 1, "Mon, Mar 9", "day"), (2, 1, 0, "Mon, Mar 9", "day")]
    week = call(db, "MultiSites.getOne", period="week")
    assert (week["nb_visits"], week["visits_evolution"]) == (5, "100%")


def test_segments_metadata(db: Db) -> None:
    rows = reporting.call(db.client, "API.getSegmentsMetadata", {}, (1,), DAY)
    assert rows[0] == {"type": "metric", "category": "Visitors", "name": "Actions In Visit", "segment": "actions"}
    assert [r["segment"] for r in rows][:6] == ["actions", "visitDuration", "browserName", "deviceType",
                                               "operatingSystemName", "operatingSystemCode"]
    assert {"type": "dimension", "category": "Visitors", "name": "Device type", "segment": "deviceType",
            "acceptedValues": "desktop, smartphone, tablet, other"} in rows
    # Every segment listed compiles, and every name the compiler knows is listed.
    from aggregator.segments import DIMENSIONS, PER_PERSON_SEGMENTS, compile_segment

    for row in rows:
        value = "1" if row["type"] == "metric" else "desktop" if row["segment"] == "deviceType" else "x"
        if row["segment"] in ("operatingSystemCode", "operatingSystemName", "browserName"):
            value = "unknown" if row["segment"] != "operatingSystemCode" else "unk"
        assert compile_segment(f"{row['segment']}=={value}") is not None
    # ... but the per-person ones (userId: off unless a site turns them on, never listed).
    assert set(DIMENSIONS) - PER_PERSON_SEGMENTS <= {r["segment"] for r in rows}
    assert not PER_PERSON_SEGMENTS & {r["segment"] for r in rows}
    assert any(r["segment"].startswith("dimension") for r in rows)


def test_a_keyword_not_in_utf8_is_read(db: Db) -> None:
    got = reporting.call(db.client, "Referrers.getSearchEngines", {"period": "day", "date": DAY.isoformat(),
                                                                    "expanded": "1"}, (3,), DAY)
    assert [r["label"] for r in got] == ["Bing"]
    assert got[0]["subtable"][0]["label"] == "\ufffdt\ufffd caf\u00e9"  # invalid bytes replaced, as valid UTF-8
