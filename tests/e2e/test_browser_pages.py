"""End to end in a real headless Chromium: the demo pages of tagging-sdk/js (served by a separate
static server) tag a short visit, the hits go through the real collector (two workers), spool and
loader into dnma.hits, and the loader's sessionizer turns them into ONE visit in dnma.visits."""

from __future__ import annotations

import time
from typing import Any

from e2e_support import GOOD_SITE, MATOMO_SITE
from harness import Stack
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HIT_COLUMNS = "action, url, title, uai, service, type, outil, profil, projet, exploitant, plateforme, flags, event_category, toUnixTimestamp(ts)"


def _hits(stack: Stack, site_id: int, n: int) -> list[dict[str, Any]]:
    rows = stack.wait_for(
        f"SELECT {HIT_COLUMNS} FROM dnma.hits WHERE site_id = {site_id} ORDER BY ts, action",
        lambda rows: len(rows) >= n,
        timeout=30,
    )
    names = [c.strip() for c in HIT_COLUMNS.split(",")]
    names[-1] = "ts"
    return [dict(zip(names, row, strict=True)) for row in rows]


def _visits(stack: Stack, site_id: int, hits: int) -> list[dict[str, Any]]:
    cols = "start, end, duration, hits, actions, pageviews, downloads, outlinks, events, uai, profil, services, outils, type_natif, type_tiers, projet"
    rows = stack.wait_for(
        f"SELECT {cols} FROM dnma.visits WHERE site_id = {site_id}",
        lambda rows: sum(r[3] for r in rows) >= hits,
        timeout=60,
    )
    return [dict(zip([c.strip() for c in cols.split(",")], row, strict=True)) for row in rows]


def _leave(driver: Any) -> None:
    """The page is hidden for good: the tag sends what it holds on pagehide/visibilitychange."""
    driver.get("about:blank")


def _check_one_visit(stack: Stack, site_id: int, hits: list[dict[str, Any]]) -> dict[str, Any]:
    visits = _visits(stack, site_id, len(hits))
    assert len(visits) == 1, visits
    visit = visits[0]
    first, last = min(h["ts"] for h in hits), max(h["ts"] for h in hits)
    assert visit["hits"] == len(hits)
    assert visit["duration"] == last - first + 1
    assert 1 < visit["duration"] < 120
    return visit


def test_good_page(stack: Stack, pages_url: str, chrome: Any) -> None:
    driver = chrome()
    endpoint = f"{stack.collector_url}/matomo.php"
    driver.get(f"{pages_url}/good.html?endpoint={endpoint}&idsite={GOOD_SITE}&heartbeat=0")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.dnmaReady === true"))
    time.sleep(1.5)  # the page view leaves (500 ms queue); the next hits land at least a second later
    click = lambda element_id: driver.find_element(By.ID, element_id).click()  # noqa: E731
    click("spa-nav")  # SPA route change: a page view with the new URL
    click("outlink")
    click("download")
    click("event")
    click("open-tool")  # dnma.tool('Pronote', {service: 'notes'})
    click("open-tool-declared")  # data-dnma-outil="Lumni"
    assert driver.execute_script("return window.dnmaWarnings") == []
    _leave(driver)

    hits = _hits(stack, GOOD_SITE, 7)
    assert len(hits) == 7, hits
    by_action: dict[str, list[dict[str, Any]]] = {}
    for h in hits:
        by_action.setdefault(h["action"], []).append(h)
    assert sorted(by_action) == ["download", "event", "outlink", "pageview"]
    assert len(by_action["pageview"]) == 4
    for h in hits:
        assert h["flags"] == [], h
        assert (h["uai"], h["profil"], h["projet"]) == ("0350122T", "ENSEIGNANT", "ENT_BRETAGNE")
        assert (h["exploitant"], h["plateforme"]) == ("Exploitant Démo", "Plateforme Démo")
    pages = {(h["service"], h["type"], h["outil"]) for h in by_action["pageview"]}
    assert pages == {
        ("accueil", "NATIF", ""),
        ("notes", "TIERS", "PRONOTE"),
        ("ressource_multimedia", "TIERS", "LUMNI"),
    }
    natif = [h for h in by_action["pageview"] if h["type"] == "NATIF"]
    assert sorted(h["url"].endswith("#/cahier-textes") for h in natif) == [False, True]
    assert by_action["download"][0]["url"] == f"{pages_url}/files/cours-sciences.pdf"
    assert by_action["outlink"][0]["url"] == "https://www.education.gouv.fr/"
    assert by_action["event"][0]["event_category"] == "engagement"

    visit = _check_one_visit(stack, GOOD_SITE, hits)
    assert (visit["pageviews"], visit["downloads"], visit["outlinks"], visit["events"]) == (4, 1, 1, 1)
    assert (visit["uai"], visit["profil"], visit["projet"]) == ("0350122T", "ENSEIGNANT", "ENT_BRETAGNE")
    assert set(visit["services"]) == {"accueil", "notes", "ressource_multimedia"}
    assert set(visit["outils"]) == {"PRONOTE", "LUMNI"}
    assert (visit["type_natif"], visit["type_tiers"]) == (1, 1)


def test_matomo_page(stack: Stack, pages_url: str, chrome: Any) -> None:
    """A page written for matomo.js (_paq), loading /matomo.js from the collector."""
    driver = chrome()
    endpoint = f"{stack.collector_url}/matomo.php"
    driver.get(f"{pages_url}/matomo.html?endpoint={endpoint}&idsite={MATOMO_SITE}&heartbeat=0")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return !!window.Matomo"))
    time.sleep(1.5)
    for element_id in ("event", "download", "outlink", "track-link"):
        driver.find_element(By.ID, element_id).click()
    _leave(driver)

    hits = _hits(stack, MATOMO_SITE, 5)
    assert len(hits) == 5, hits
    assert sorted(h["action"] for h in hits) == ["download", "download", "event", "outlink", "pageview"]
    for h in hits:
        assert h["flags"] == [], h
        assert (h["uai"], h["service"], h["type"], h["outil"]) == ("0350122T", "notes", "NATIF", "")
        assert (h["profil"], h["projet"]) == ("PARENT", "ENT_BRETAGNE")
    assert {h["url"] for h in hits if h["action"] == "download"} == {
        f"{pages_url}/files/bulletin.pdf",
        f"{pages_url}/files/releve.pdf",
    }
    assert [h["title"] for h in hits if h["action"] == "pageview"] == ["Notes - ENT démo"]

    visit = _check_one_visit(stack, MATOMO_SITE, hits)
    assert (visit["pageviews"], visit["downloads"], visit["outlinks"], visit["events"]) == (1, 2, 1, 1)
    assert (visit["services"], visit["profil"]) == (["notes"], "PARENT")
