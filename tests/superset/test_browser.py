"""Real headless Chromium on the provisioned Superset: each dashboard loads, every chart renders
without an error box (screenshots in test-artifacts/superset/), and RLS holds on the rendered page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dnma_superset.browser import Browser
from dnma_superset.dashboards import DASHBOARDS, Dashboard

from .conftest import ADMIN, ARTIFACTS, SupersetHandle


@pytest.fixture(scope="module")
def admin_browser(superset: SupersetHandle) -> Iterator[Browser]:
    with Browser(superset.url) as b:
        b.login(ADMIN, superset.admin_password)
        yield b


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.slug)
def test_dashboard_renders(admin_browser: Browser, dashboard: Dashboard) -> None:
    load = admin_browser.open_dashboard(dashboard.slug, len(dashboard.charts()))
    admin_browser.screenshot(ARTIFACTS / f"{dashboard.slug}.png")
    assert load.charts == len(dashboard.charts()), load
    assert load.errors == [], load
    assert load.rendered == load.charts, load
    assert dashboard.title.split("— ")[1] in admin_browser.text()


def test_rendered_dashboard_respects_rls(superset: SupersetHandle) -> None:
    territoires = next(d for d in DASHBOARDS if d.slug == "dnma-territoires")
    with Browser(superset.url) as b:
        assert b.logged_in_as() is None  # a fresh browser is anonymous: login() has something to check
        b.login("dnma_academie_rennes", superset.users()["dnma_academie_rennes"])
        assert b.logged_in_as() == "dnma_academie_rennes"
        load = b.open_dashboard(territoires.slug, len(territoires.charts()))
        b.screenshot(ARTIFACTS / "rls-academie-rennes-territoires.png")
        text = b.text()
    assert load.errors == [], load
    assert "Rennes" in text
    for other in ("Créteil", "Lyon", "Grenoble"):
        assert other not in text
