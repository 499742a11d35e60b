"""Reports of sites outside Europe/Paris (sites registry `timezone`) on embedded chDB: every hit of
the site's local day joins its visit (visits are built per site-local day), whatever its Paris day,
and VisitTime's server time is the site's hour (Matomo's archiver: the UTC hour converted to the
site's zone). 2026-03-10 is pinned: Paris is UTC+1, Cayenne UTC-3, Noumea UTC+11 (no DST there).

Site 2 (America/Cayenne), local day 03-10 = Paris 03-10 04:00 .. 03-11 04:00:
  A visitor 50, 21:30 local (Paris 03-11 01:30): pages /late1, /late2 a minute apart, an event
    (cat/act) and an outlink, from Google;
  B visitor 51, 08:00 local: page /day;
  C visitor 52, 03-09 23:30 local (Paris 03-10 03:30): page /before, a visit of 03-09.
Site 3 (Pacific/Noumea), local day 03-10 = Paris 03-09 14:00 .. 03-10 14:00:
  E visitor 60, 00:30 local (Paris 03-09 14:30): page /early and an event, from Qwant;
  F visitor 61, 23:30 local (Paris 03-10 13:30): page /late;
  G visitor 62, 03-11 00:30 local (Paris 03-10 14:30): page /next, a visit of 03-11.
Site 1 (Paris): visitor 70 at 00:30 and 23:30 Paris, two visits: the common case unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aggregator import reporting
from tests.visits.conftest import Db, hit, open_db, paris

DAY = date(2026, 3, 10)
ZONES = {2: "America/Cayenne", 3: "Pacific/Noumea"}
HOST = "https://ent.example"


def _at(site: int, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(ZONES[site]))  # type: ignore[misc]


def _page(ts: datetime, site: int, visitor: int, path: str, **fields: Any) -> dict[str, Any]:
    return hit(ts, site_id=site, visitor_id=visitor, action="pageview", url=HOST + path, title=path[1:], **fields)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    sites = [{"id": 1, "name": "paris", "main_url": HOST}] + [
        {"id": s, "name": f"s{s}", "main_url": HOST, "timezone": tz} for s, tz in ZONES.items()]
    d = open_db(Path(tmp_path_factory.mktemp("reporting_tz")), sites)
    a = _at(2, 2026, 3, 10, 21, 30)
    e = _at(3, 2026, 3, 10, 0, 30)
    d.insert([
        _page(a, 2, 50, "/late1", referrer="https://www.google.fr/"),
        _page(a + timedelta(seconds=60), 2, 50, "/late2"),
        hit(a + timedelta(seconds=90), site_id=2, visitor_id=50, action="event", url=HOST + "/late2",
            event_category="cat", event_action="act"),
        hit(a + timedelta(seconds=100), site_id=2, visitor_id=50, action="outlink", url="https://education.gouv.fr/x"),
        _page(_at(2, 2026, 3, 10, 8, 0), 2, 51, "/day"),
        _page(_at(2, 2026, 3, 9, 23, 30), 2, 52, "/before"),
        _page(e, 3, 60, "/early", referrer="https://www.qwant.com/?q=notes"),
        hit(e + timedelta(seconds=30), site_id=3, visitor_id=60, action="event", url=HOST + "/early",
            event_category="cat", event_action="act"),
        _page(_at(3, 2026, 3, 10, 23, 30), 3, 61, "/late"),
        _page(_at(3, 2026, 3, 11, 0, 30), 3, 62, "/next"),
        _page(paris(2026, 3, 10, 0, 30), 1, 70, "/morning"),
        _page(paris(2026, 3, 10, 23, 30), 1, 70, "/night"),
    ])
    d.rebuild([DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)])
    assert d.scalar("SELECT count() FROM dnma.visits WHERE day = {d:Date}", d=DAY) == 6
    yield d
    d.client.close()


def call(db: Db, site: int, method: str, period: str = "day", **params: str) -> Any:
    return reporting.call(db.client, method, {"period": period, "date": DAY.isoformat(), **params}, (site,), DAY,
                          timezones={1: "Europe/Paris", **ZONES})


def _hits(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["label"]: r["nb_hits"] for r in rows}


def test_pages_and_titles_hold_the_hits_of_the_local_day(db: Db) -> None:
    assert _hits(call(db, 2, "Actions.getPageUrls", flat="1")) == {"/late1": 1, "/late2": 1, "/day": 1}
    assert _hits(call(db, 3, "Actions.getPageUrls", flat="1")) == {"/early": 1, "/late": 1}
    assert _hits(call(db, 1, "Actions.getPageUrls", flat="1")) == {"/morning": 1, "/night": 1}
    titles = call(db, 2, "Actions.getPageTitles", flat="1")
    assert {r["label"].strip() for r in titles} == {"late1", "late2", "day"}
    # Time spent on /late1 (60 s to /late2) and entries come from the whole visit.
    late1 = next(r for r in call(db, 2, "Actions.getPageUrls", flat="1") if r["label"] == "/late1")
    assert (late1["sum_time_spent"], late1["entry_nb_visits"]) == (60, 1)
    # A week buckets by the local day too: 03-09's /before is in it, 03-11's /next in Noumea's.
    week = _hits(call(db, 2, "Actions.getPageUrls", period="week", flat="1"))
    assert week == {"/late1": 1, "/late2": 1, "/day": 1, "/before": 1}
    assert set(_hits(call(db, 3, "Actions.getPageUrls", period="week", flat="1"))) == {"/early", "/late", "/next"}


def test_events_outlinks_and_referrers_of_the_local_day(db: Db) -> None:
    assert [(r["label"], r["nb_events"]) for r in call(db, 2, "Events.getCategory")] == [("cat", 1)]
    assert [(r["label"], r["nb_events"]) for r in call(db, 3, "Events.getCategory")] == [("cat", 1)]
    assert [r["label"] for r in call(db, 2, "Actions.getOutlinks")] == ["education.gouv.fr"]
    assert call(db, 2, "Actions.get")["nb_pageviews"] == 3
    kinds = {r["label"]: r["nb_visits"] for r in call(db, 2, "Referrers.getReferrerType")}
    assert (kinds.get("Search Engines"), kinds.get("Direct Entry")) == (1, 1)
    engines = {r["label"]: r["nb_visits"] for r in call(db, 3, "Referrers.getSearchEngines")}
    assert engines == {"Qwant": 1}


def test_server_time_is_the_site_hour(db: Db) -> None:
    cayenne = call(db, 2, "VisitTime.getVisitInformationPerServerTime")
    assert [r["label"] for r in cayenne if r["nb_visits"]] == ["08", "21"]
    # Matomo's segment: the site's hour in UTC (Cayenne is UTC-3).
    assert (cayenne[21]["segment"], cayenne[8]["segment"]) == ("visitStartServerHour==0", "visitStartServerHour==11")
    noumea = call(db, 3, "VisitTime.getVisitInformationPerServerTime")
    assert [r["label"] for r in noumea if r["nb_visits"]] == ["00", "23"]
    assert noumea[0]["segment"] == "visitStartServerHour==13"  # 00:00 in Noumea is 13:00 UTC the day before
    paris_hours = call(db, 1, "VisitTime.getVisitInformationPerServerTime")
    assert [r["label"] for r in paris_hours if r["nb_visits"]] == ["00", "23"]
    assert paris_hours[0]["segment"] == "visitStartServerHour==23"


def test_a_bad_time_zone_is_the_callers_error(db: Db) -> None:
    with pytest.raises(reporting.ReportError, match="time zone"):
        reporting.call(db.client, "Actions.get", {"period": "day", "date": DAY.isoformat()}, (2,), DAY,
                       timezones={2: "Mars/Olympus"})
