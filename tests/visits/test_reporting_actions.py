"""Matomo's Actions and Events reports (aggregator/reporting_actions.py) on embedded chDB, over a
small calibration set of hits whose every value is worked out by hand below:

visit 1 (visitor 42, 10:00 Paris): page views /accueil (0 s), /notes/liste (60), event
  ressource/consultation/manuel = 3 (120), /cahier_textes/ (180), download devoir.pdf (240),
  /notes/liste (300), /accueil (360), a heartbeat (390): 7 actions, 391 s;
visit 2 (visitor 42, 12:00): /accueil: 1 action, 1 s, a bounce;
visit 3 (visitor 43, 10:10): /notes/eval?trimestre=1 (600), search "bulletin" (630), event
  ressource/telechargement, no name, no value (650), outlink www.education.gouv.fr/actu (700),
  /notes/liste (760): 5 actions, 161 s.

Time spent (each non-event action credits the time since the previous action, events included,
to the last page view or search before it): /accueil 60; /notes/liste 60 + 60 = 120;
/cahier_textes/ 60 + 60 = 120; /notes/eval 30; "bulletin" 50 + 60 = 110.
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
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _page(s: int, path: str, title: str, visitor: int = 42) -> dict[str, Any]:
    return hit(_at(s), visitor_id=visitor, action="pageview", url=HOST + path, title=title)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    d = open_db(Path(tmp_path_factory.mktemp("actions")))
    d.insert([
        _page(0, "/accueil", "Accueil"),
        _page(60, "/notes/liste", "Notes"),
        hit(_at(120), action="event", url=HOST + "/notes/liste", event_category="ressource",
            event_action="consultation", event_name="manuel", event_value=3.0),
        _page(180, "/cahier_textes/", "Cahier"),
        hit(_at(240), action="download", url=HOST + "/docs/devoir.pdf"),
        _page(300, "/notes/liste", "Notes"),
        _page(360, "/accueil", "Accueil"),
        hit(_at(390), action="ping", url=HOST + "/accueil"),
        _page(7200, "/accueil", "Accueil"),
        _page(600, "/notes/eval?trimestre=1", "Evaluations", visitor=43),
        hit(_at(630), visitor_id=43, action="search", url=HOST + "/recherche?q=bulletin", search_keyword="bulletin"),
        hit(_at(650), visitor_id=43, action="event", url=HOST + "/recherche", event_category="ressource",
            event_action="telechargement"),
        hit(_at(700), visitor_id=43, action="outlink", url="https://www.education.gouv.fr/actu"),
        _page(760, "/notes/liste", "Notes", visitor=43),
        # Another site's hits and a flagged hit: never in site 1's reports.
        hit(_at(100), site_id=2, visitor_id=7, action="pageview", url=HOST + "/accueil"),
        hit(_at(110), visitor_id=44, action="pageview", url=HOST + "/accueil", flags=["invalid_uai"]),
    ])
    d.rebuild([DAY])
    assert d.scalar("SELECT count() FROM dnma.visits WHERE site_id = 1") == 3
    yield d
    d.client.close()


def call(db: Db, method: str, period: str = "day", date_: str = DAY.isoformat(), sites: tuple[int, ...] = (1,),
         **params: str) -> Any:
    return reporting.call(db.client, method, {"period": period, "date": date_, **params}, sites, DAY)


def by_label(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in rows}


def _seg(url: str) -> str:
    """The segment Matomo writes for a URL: urlencoded twice."""
    from urllib.parse import quote_plus

    return quote_plus(quote_plus(url, safe=""), safe="")


def test_actions_get(db: Db) -> None:
    got = call(db, "Actions.get")
    assert dict(got) == {"nb_pageviews": 8, "nb_uniq_pageviews": 6, "nb_downloads": 1, "nb_uniq_downloads": 1,
                         "nb_outlinks": 1, "nb_uniq_outlinks": 1, "nb_searches": 1, "nb_keywords": 1}
    assert list(got) == ["nb_pageviews", "nb_uniq_pageviews", "nb_downloads", "nb_uniq_downloads", "nb_outlinks",
                         "nb_uniq_outlinks", "nb_searches", "nb_keywords"]  # Matomo's order
    # An empty day: Matomo's zeros, not an empty answer; a month sums the day.
    assert set(call(db, "Actions.get", date_="2026-03-09").values()) == {0}
    assert call(db, "Actions.get", period="month")["nb_pageviews"] == 8


def test_page_urls_flat_every_column(db: Db) -> None:
    rows = call(db, "Actions.getPageUrls", flat="1")
    pages = by_label(rows)
    assert set(pages) == {"/accueil", "/notes/liste", "/cahier_textes/", "/notes/eval?trimestre=1"}
    assert pages["/accueil"] == {
        "label": "/accueil", "nb_visits": 2, "nb_uniq_visitors": 1, "nb_hits": 3, "sum_time_spent": 60,
        "entry_nb_uniq_visitors": 1, "entry_nb_visits": 2, "entry_nb_actions": 8, "entry_sum_visit_length": 392,
        "entry_bounce_count": 1, "exit_nb_uniq_visitors": 1, "exit_nb_visits": 2, "avg_time_on_page": 20,
        "bounce_rate": "50%", "exit_rate": "100%", "url": HOST + "/accueil", "Actions_PageUrl": "/accueil",
        "segment": "pageUrl==" + _seg(HOST + "/accueil"),
    }
    # Matomo's column order, as in its expected answers.
    assert list(pages["/accueil"]) == [
        "label", "nb_visits", "nb_uniq_visitors", "nb_hits", "sum_time_spent", "entry_nb_uniq_visitors",
        "entry_nb_visits", "entry_nb_actions", "entry_sum_visit_length", "entry_bounce_count",
        "exit_nb_uniq_visitors", "exit_nb_visits", "avg_time_on_page", "bounce_rate", "exit_rate", "url",
        "Actions_PageUrl", "segment"]
    # No entry or exit columns where the page was none; rates still there.
    assert pages["/notes/liste"] == {
        "label": "/notes/liste", "nb_visits": 2, "nb_uniq_visitors": 2, "nb_hits": 3, "sum_time_spent": 120,
        "exit_nb_uniq_visitors": 1, "exit_nb_visits": 1, "avg_time_on_page": 40, "bounce_rate": "0%",
        "exit_rate": "50%", "url": HOST + "/notes/liste", "Actions_PageUrl": "/notes/liste",
        "segment": "pageUrl==" + _seg(HOST + "/notes/liste")}
    assert (pages["/cahier_textes/"]["sum_time_spent"], pages["/cahier_textes/"]["avg_time_on_page"]) == (120, 120)
    assert "entry_nb_visits" not in pages["/cahier_textes/"] and "exit_nb_visits" not in pages["/cahier_textes/"]
    ev = pages["/notes/eval?trimestre=1"]
    assert (ev["entry_nb_visits"], ev["entry_nb_actions"], ev["entry_sum_visit_length"], ev["sum_time_spent"]) == (
        1, 5, 161, 30)
    # Additive: the pages' hits are Actions.get's page views, their visits its unique page views.
    totals = call(db, "Actions.get")
    assert sum(r["nb_hits"] for r in rows) == totals["nb_pageviews"]
    assert sum(r["nb_visits"] for r in rows) == totals["nb_uniq_pageviews"]
    # Entry visits are the visits, exit visits too.
    assert sum(r.get("entry_nb_visits", 0) for r in rows) == 3 == sum(r.get("exit_nb_visits", 0) for r in rows)


def test_page_urls_tree_expanded_and_subtables(db: Db) -> None:
    top = call(db, "Actions.getPageUrls")
    assert [r["label"] for r in top] == ["notes", "/accueil", "cahier_textes"]  # most visits first
    notes = top[0]
    # A folder sums its pages, without unique visitors or url; its segment is a prefix.
    assert notes == {"label": "notes", "nb_visits": 3, "nb_hits": 4, "sum_time_spent": 150, "entry_nb_visits": 1,
                     "entry_nb_actions": 5, "entry_sum_visit_length": 161, "entry_bounce_count": 0,
                     "exit_nb_visits": 1, "avg_time_on_page": 38, "bounce_rate": "0%", "exit_rate": "33%",
                     "segment": "pageUrl=^" + _seg(HOST + "/notes"), "idsubdatatable": 1}
    assert top[2]["idsubdatatable"] == 3 and "idsubdatatable" not in top[1]
    sub = call(db, "Actions.getPageUrls", idSubtable="1")
    assert [r["label"] for r in sub] == ["/liste", "/eval?trimestre=1"]
    assert sub[0]["url"] == HOST + "/notes/liste" and sub[0]["nb_hits"] == 3
    assert [r["label"] for r in call(db, "Actions.getPageUrls", idSubtable="3")] == ["/index"]
    assert call(db, "Actions.getPageUrls", idSubtable="2") == []  # a page has no subtable
    expanded = call(db, "Actions.getPageUrls", expanded="1")
    assert [r["label"] for r in expanded[0]["subtable"]] == ["/liste", "/eval?trimestre=1"]
    assert "idsubdatatable" not in expanded[0]
    with pytest.raises(reporting.ReportError, match="idSubtable"):
        call(db, "Actions.getPageUrls", idSubtable="-1")


def test_entry_exit_titles(db: Db) -> None:
    entry = by_label(call(db, "Actions.getEntryPageUrls", flat="1"))
    assert set(entry) == {"/accueil", "/notes/eval?trimestre=1"}
    exits = by_label(call(db, "Actions.getExitPageUrls", flat="1"))
    assert {k: v["exit_nb_visits"] for k, v in exits.items()} == {"/accueil": 2, "/notes/liste": 1}
    # Only folders holding an entry page stay, their columns as they were (Matomo deletes rows only).
    assert [r["label"] for r in call(db, "Actions.getEntryPageUrls")] == ["notes", "/accueil"]
    titles = by_label(call(db, "Actions.getPageTitles"))
    assert {k: v["nb_hits"] for k, v in titles.items()} == {" Accueil": 3, " Notes": 3, " Cahier": 1,
                                                           " Evaluations": 1}
    assert titles[" Notes"]["segment"] == "pageTitle==" + _seg("Notes") and "url" not in titles[" Notes"]
    assert titles[" Accueil"]["entry_bounce_count"] == 1 and titles[" Accueil"]["bounce_rate"] == "50%"


def test_downloads_outlinks_keywords(db: Db) -> None:
    downloads = call(db, "Actions.getDownloads", expanded="1")
    assert downloads == [{
        "label": "ent-bretagne.example", "nb_visits": 1, "nb_hits": 1, "sum_time_spent": 0,
        "subtable": [{"label": "/docs/devoir.pdf", "nb_visits": 1, "nb_uniq_visitors": 1, "nb_hits": 1,
                      "sum_time_spent": 0, "url": HOST + "/docs/devoir.pdf",
                      "segment": "downloadUrl==" + _seg(HOST + "/docs/devoir.pdf")}]}]
    outlinks = call(db, "Actions.getOutlinks")
    assert outlinks == [{"label": "education.gouv.fr", "nb_visits": 1, "nb_hits": 1, "sum_time_spent": 0,
                         "idsubdatatable": 1}]
    flat = call(db, "Actions.getOutlinks", flat="1")
    assert [(r["label"], r["Actions_ClickedUrl"]) for r in flat] == [("education.gouv.fr/actu",) * 2]
    # A folder's own page ends in '/' when flat (Matomo's DataTable/Filter/Actions).
    assert "/cahier_textes/" in by_label(call(db, "Actions.getPageUrls", flat="1"))
    assert [r["label"] for r in call(db, "Actions.getPageUrls", flat="1", idSubtable="3")] == ["/"]
    keywords = call(db, "Actions.getSiteSearchKeywords")
    assert keywords == [{"label": "bulletin", "nb_visits": 1, "nb_hits": 1, "sum_time_spent": 110,
                         "nb_pages_per_search": 1, "avg_time_on_page": 110, "bounce_rate": "0%",
                         "exit_rate": "0%", "segment": "siteSearchKeyword==bulletin"}]


def test_events_with_subtables(db: Db) -> None:
    cats = call(db, "Events.getCategory")
    assert cats == [{"label": "ressource", "nb_uniq_visitors": 2, "nb_visits": 2, "nb_events": 2,
                     "nb_events_with_value": 1, "sum_event_value": 3, "min_event_value": 3, "max_event_value": 3,
                     "avg_event_value": 3, "segment": "eventCategory==ressource", "idsubdatatable": 1}]
    expanded = call(db, "Events.getCategory", expanded="1")[0]["subtable"]
    assert by_label(expanded)["telechargement"] == {
        "label": "telechargement", "nb_uniq_visitors": 1, "nb_visits": 1, "nb_events": 1, "nb_events_with_value": 0,
        "sum_event_value": 0, "min_event_value": None, "max_event_value": None, "avg_event_value": 0}
    assert call(db, "Events.getActionFromCategoryId", idSubtable="1") == sorted(expanded, key=lambda r: r["label"])
    names = by_label(call(db, "Events.getName"))
    assert set(names) == {"manuel", "Event Name not defined"}
    assert "segment" not in names["Event Name not defined"]  # Matomo: no segment for a missing name
    flat = call(db, "Events.getAction", flat="1")
    # Matomo: an event without a name counts in its action's row, in no subtable row.
    assert {r["label"]: r["nb_events"] for r in flat} == {"consultation - manuel": 1, "telechargement": 1}
    # Matomo 5's flat rows name each level's value; no segment.
    assert by_label(flat)["consultation - manuel"] == {
        "label": "consultation - manuel", "nb_uniq_visitors": 1, "nb_visits": 1, "nb_events": 1,
        "nb_events_with_value": 1, "sum_event_value": 3, "min_event_value": 3, "max_event_value": 3,
        "avg_event_value": 3, "Events_EventAction": "consultation", "Events_EventName": "manuel"}
    by_cat = call(db, "Events.getName", secondaryDimension="eventCategory", expanded="1")
    assert {r["label"]: r["subtable"][0]["label"] for r in by_cat} == {"manuel": "ressource",
                                                                       "Event Name not defined": "ressource"}
    with pytest.raises(reporting.ReportError, match="Secondary dimension 'eventName' is not valid"):
        call(db, "Events.getName", secondaryDimension="eventName")
    # Longer periods: unique visitors become Matomo's sum of daily unique visitors.
    month = call(db, "Events.getCategory", period="month")[0]
    assert "nb_uniq_visitors" not in month and month["sum_daily_nb_uniq_visitors"] == 2


def test_periods_filters_and_sites(db: Db) -> None:
    week = by_label(call(db, "Actions.getPageUrls", period="week", flat="1"))
    assert "nb_uniq_visitors" not in week["/accueil"] and week["/accueil"]["sum_daily_nb_uniq_visitors"] == 1
    keyed = call(db, "Actions.getPageUrls", date_="2026-03-09,2026-03-10")
    assert list(keyed) == ["2026-03-09", "2026-03-10"] and keyed["2026-03-09"] == []
    limited = call(db, "Actions.getPageUrls", flat="1", filter_limit="1", filter_sort_column="nb_hits",
                   filter_sort_order="asc")
    assert len(limited) == 1 and limited[0]["nb_hits"] == 1
    assert [r["label"] for r in call(db, "Actions.getPageUrls", filter_pattern="^not")] == ["notes"]
    # Site 2's own page view only; the flagged hit is in nobody's report.
    other = call(db, "Actions.getPageUrls", sites=(2,), flat="1")
    assert [(r["label"], r["nb_hits"]) for r in other] == [("/accueil", 1)]



def test_columns_filters_keep_the_tree(db: Db) -> None:
    hidden = call(db, "Actions.getPageUrls", hideColumns="label,segment")
    assert hidden[0] == {k: v for k, v in call(db, "Actions.getPageUrls")[0].items() if k not in ("label", "segment")}
    shown = call(db, "Events.getCategory", showColumns="nb_events", expanded="1")
    assert [list(r) for r in shown] == [["label", "nb_events", "subtable"]]


def test_php_rounding() -> None:
    from aggregator.reporting_actions import php_round

    assert (php_round(2.5), php_round(0.125, 2), php_round(7 / 3, 1), php_round(3.0)) == (3, 0.13, 2.3, 3)
    assert isinstance(php_round(3.0), int)


def test_xml_as_matomo_writes_it(db: Db) -> None:
    """Matomo's XML of an expanded events report: the subtable inside the row after the segment,
    an event without a value has empty min and max (test_CustomEvents__Events.getCategory_day.xml)."""
    from collector.matomo_render import render

    answer = call(db, "Events.getCategory", expanded="1")
    xml = render(answer, {"format": "xml"}).body.decode()
    columns = """				<nb_uniq_visitors>1</nb_uniq_visitors>
				<nb_visits>1</nb_visits>
				<nb_events>1</nb_events>
"""
    assert xml == f"""<?xml version="1.0" encoding="utf-8" ?>
<result>
	<row>
		<label>ressource</label>
		<nb_uniq_visitors>2</nb_uniq_visitors>
		<nb_visits>2</nb_visits>
		<nb_events>2</nb_events>
		<nb_events_with_value>1</nb_events_with_value>
		<sum_event_value>3</sum_event_value>
		<min_event_value>3</min_event_value>
		<max_event_value>3</max_event_value>
		<avg_event_value>3</avg_event_value>
		<segment>eventCategory==ressource</segment>
		<subtable>
			<row>
				<label>consultation</label>
{columns}				<nb_events_with_value>1</nb_events_with_value>
				<sum_event_value>3</sum_event_value>
				<min_event_value>3</min_event_value>
				<max_event_value>3</max_event_value>
				<avg_event_value>3</avg_event_value>
			</row>
			<row>
				<label>telechargement</label>
{columns}				<nb_events_with_value>0</nb_events_with_value>
				<sum_event_value>0</sum_event_value>
				<min_event_value />
				<max_event_value />
				<avg_event_value>0</avg_event_value>
			</row>
		</subtable>
	</row>
</result>"""
    csv = render(call(db, "Actions.getOutlinks", flat="1"), {"format": "csv", "convertToUnicode": "0"}).body.decode()
    assert csv.splitlines()[0] == ("label,nb_visits,nb_uniq_visitors,nb_hits,sum_time_spent,metadata_url,"
                                   "metadata_Actions_ClickedUrl,metadata_segment")


def test_segments_split_and_ranges(db: Db) -> None:
    """A segment and its negation add up to the whole report (the segment keeps its visits' hits);
    a range is one table."""
    for method, column in (("Actions.getPageUrls", "nb_hits"), ("Events.getCategory", "nb_events"),
                           ("Actions.getPageTitles", "sum_time_spent"), ("Actions.getPageUrls", "entry_nb_visits")):
        whole = sum(r.get(column, 0) for r in call(db, method, flat="1"))
        part = sum(r.get(column, 0) for r in call(db, method, flat="1", segment="actions>=5"))
        rest = sum(r.get(column, 0) for r in call(db, method, flat="1", segment="actions<5"))
        assert (part, part + rest) != (0, 0) and part + rest == whole, (method, column, part, rest, whole)
    assert call(db, "Actions.get", segment="actions==1")["nb_pageviews"] == 1  # visit 2 alone
    ranged = by_label(call(db, "Actions.getPageUrls", period="range", date_="2026-03-01,2026-03-31", flat="1"))
    assert ranged["/accueil"]["nb_hits"] == 3 and ranged["/accueil"]["sum_daily_nb_uniq_visitors"] == 1
    # The hit reports of aggregator/reporting.py over a range alike.
    profils = call(db, "CustomDimensions.getCustomDimension", period="range", date_="2026-03-01,2026-03-31",
                   idDimension="5")
    assert [(r["label"], r["nb_actions"]) for r in profils] == [("ELEVE", 13)]
