"""Conformance with Matomo itself: Matomo's own system-test fixtures (ThreeVisitsWithCustomEvents,
TwoSitesTwoVisitorsDifferentDays) replayed as tracking requests through the real collector and
loader, then the Reporting API calls Matomo's system tests make (expanded=1, hideIdSubDatable=1,
format=xml, the same dates and periods), compared field by field, in order, with what Matomo
answers (matomo_expected.py). The sites are in UTC, as Matomo's tests run; the clock is pinned to
2017-06-01 so that the periods of the expected files (up to 2016) are all in the past.

Allowed differences (README, "Differences from Matomo") are left out of the expected values (fields
not collected) or named in KNOWN below: each such triple is an xfail(strict), so a triple that
starts to conform, or a new difference in a conforming one, fails the test."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import httpx
import pytest
from harness import DEMO_TOKEN, SUPER_TOKEN, Stack

from dnma.sites import hash_token
from tests.client_sim.matomo_expected import EXPECTED
from tests.client_sim.matomo_fixtures import (
    three_visits_with_custom_events,
    two_sites_two_visitors_different_days,
)

NOW = "2017-06-01T12:00:00Z"
# DNMA site ids of each fixture's sites; ':all' is Matomo's idSite=all over the fixture's two sites.
SITE = {"ThreeVisitsWithCustomEvents": "3", "TwoSitesTwoVisitorsDifferentDays": "1",
        "TwoSitesTwoVisitorsDifferentDays:all": "1,2"}

_BOUNCE = ("visit length of a one-action visit is 1 s in DNMA (TRACKING.md: last - first + 1), "
                        "0 in Matomo")
_URLS = ("Matomo strips campaign parameters (pk_campaign) from page URLs and files a blank or invalid URL or "
         "title under 'Page URL/Name not defined'; DNMA keeps them")
KNOWN: dict[tuple[str, str, str], str] = {
    **{("TwoSitesTwoVisitorsDifferentDays", "VisitsSummary.get", p): _BOUNCE
       for p in ("day", "week", "month", "year")},
    ("TwoSitesTwoVisitorsDifferentDays:all", "VisitsSummary.get", "day"): _BOUNCE,
    ("TwoSitesTwoVisitorsDifferentDays:all", "VisitsSummary.get", "month"): _BOUNCE,
    **{("TwoSitesTwoVisitorsDifferentDays", m, p): f"{_URLS}; {_BOUNCE}"
       for m in ("Actions.getPageUrls", "Actions.getPageTitles") for p in ("day", "week", "month", "year")},
    **{("TwoSitesTwoVisitorsDifferentDays", "Referrers.getWebsites", p):
       f"{_BOUNCE}; a visit spanning "
       "UTC midnight keeps its referrer on both days in Matomo" for p in ("day", "week", "month", "year")},
}


def parse(xml: str) -> Any:
    """Matomo's XML as the expected values hold it: an object of strings, a list of rows (a row's
    `subtable` a list), periods or sites keyed by their `date` or `idSite`, [] for an empty one."""
    def node(el: ET.Element) -> Any:
        kids = list(el)
        if not kids:
            return el.text or ""
        if all(k.tag == "row" for k in kids):
            return [node(k) for k in kids]
        if all(k.tag == "result" for k in kids):
            return {k.get("date") or k.get("idSite"): node(k) if list(k) else [] for k in kids}
        return {k.tag: node(k) for k in kids}
    root = ET.fromstring(xml.encode())
    return node(root) if list(root) else (root.text or "")


def ordered(value: Any) -> Any:
    """Objects as lists of pairs, so that the comparison checks the order of columns too."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


def dnma_segment(value: Any) -> Any:
    """Matomo builds a row's segment from the HTML-escaped value it stores (l'eau: l&#039;eau,
    '>' : &gt;); DNMA stores values as sent, so its segment names the raw value (a listed
    difference): the expected segments are unescaped before the comparison."""
    if isinstance(value, dict):
        return {k: (_unescape_segment(v) if k == "segment" else dnma_segment(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [dnma_segment(v) for v in value]
    return value


def _unescape_segment(segment: str) -> str:
    m = re.fullmatch(r"(event(?:Category|Action|Name)==)(.*)", segment)
    if not m:
        return segment
    return m.group(1) + quote_plus(html.unescape(unquote_plus(m.group(2))), safe="")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    token = hash_token(DEMO_TOKEN)
    sites = [{"id": i, "name": name, "main_url": "http://piwik.net", "timezone": "UTC", "token_sha256": token,
              "created": "2010-01-03"} for i, name in ((1, "Site 1"), (2, "Site 2"), (3, "Piwik test"))]
    root: Path = tmp_path_factory.mktemp("matomo")
    with Stack(root, sites=sites, now=NOW, loader_aggregate_interval_s=0.5, visits_ttl_months=1200,
               quality_checks_interval_s=0, loader_insert_interval_ms=100) as stack:
        stack.start_loader()
        stack.start_collector()
        requests = three_visits_with_custom_events(3) + two_sites_two_visitors_different_days(1, 2)
        with httpx.Client(timeout=30) as client:
            for q in requests:
                resp = client.get(f"{stack.collector_url}/matomo.php", params={**q, "token_auth": DEMO_TOKEN},
                                  headers={"User-Agent": q["ua"]})
                assert resp.status_code in (200, 204), (resp.status_code, resp.text)
        stack.wait_for("SELECT count() FROM dnma.hits", lambda r: r[0][0] == len(requests), timeout=60)
        # Site 3: 2 days; site 1: 2010-01-03 to 2010-01-12 (10 days); site 2: 2010-01-04.
        stack.wait_for("SELECT uniqExact(site_id, day) FROM dnma.visits", lambda r: r[0][0] == 13, timeout=90)
        yield stack


def _cases() -> Iterator[Any]:
    for (fixture, method, period, date), expected in EXPECTED.items():
        reason = KNOWN.get((fixture, method, period))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(fixture, method, period, date, expected, marks=marks,
                           id=f"{fixture}-{method}-{period}")


@pytest.mark.parametrize(("fixture", "method", "period", "date", "expected"), list(_cases()))
def test_matches_matomo(replayed: Stack, fixture: str, method: str, period: str, date: str, expected: Any) -> None:
    resp = httpx.get(f"{replayed.collector_url}/index.php", timeout=30, params={
        "module": "API", "method": method, "idSite": SITE[fixture], "period": period, "date": date,
        "expanded": 1, "hideIdSubDatable": 1, "format": "xml", "token_auth": SUPER_TOKEN})
    assert resp.status_code == 200
    assert ordered(parse(resp.text)) == ordered(dnma_segment(expected))


def test_known_differences_name_real_triples() -> None:
    """Every KNOWN entry names a compared triple, and at least 10 of the compared triples conform as they are."""
    compared = {(f, m, p) for f, m, p, _ in EXPECTED}
    assert set(KNOWN) <= compared
    assert len(compared - set(KNOWN)) >= 10


def test_a_utc_site_has_its_own_days_and_hours(replayed: Stack) -> None:
    """Site 1 is in UTC: visitor A's page view at 23:55 UTC on 2010-01-03 (00:55 on the 4th in Paris)
    is in that day's page report, and server time is the UTC hour, as Matomo's for a UTC site
    (DNMA's per-site time zones through the HTTP API)."""
    def get(method: str, **params: str) -> Any:
        resp = httpx.get(f"{replayed.collector_url}/index.php", timeout=30, params={
            "module": "API", "method": method, "idSite": "1", "period": "day", "date": "2010-01-03",
            "format": "json", "token_auth": SUPER_TOKEN, **params})
        assert resp.status_code == 200, resp.text
        return resp.json()

    pages = {r["label"]: r["nb_hits"] for r in get("Actions.getPageUrls", flat="1")}
    assert pages == {"/index.htm": 1, "/products": 1}
    hours = get("VisitTime.getVisitInformationPerServerTime")
    assert [r["label"] for r in hours if r["nb_visits"]] == ["12", "23"]
    assert hours[23]["segment"] == "visitStartServerHour==23"
