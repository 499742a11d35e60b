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


# Every territory path of the page's country maps: its code (the GeoJSON feature d3 bound to it)
# and the fill the browser computes.
_MAP_FILLS_JS = """
return [...document.querySelectorAll('.superset-legacy-chart-country-map path.region')]
  .filter(p => p.__data__ && p.__data__.properties)
  .map(p => [p.__data__.properties.ISO, getComputedStyle(p).fill]);
"""


def _rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


# The legend's gradient as the browser computes it.
_LEGEND_JS = """
const g = document.querySelector('.dnma-legende .dnma-degrade');
return g ? getComputedStyle(g).backgroundImage : null;
"""


@pytest.mark.parametrize(("slug", "map_key"), [("dnma-deploiement", "dep_carte"),
                                               ("dnma-territoires", "ter_carte_dep")])
def test_maps_are_drawn_on_their_sequential_scale_with_a_legend(
        admin_browser: Browser, superset: SupersetHandle, slug: str, map_key: str) -> None:
    """Read in the rendered SVG: the département with the smallest value is filled with the scale's
    lightest colour, the one with the largest with its darkest (under the dashboard's categorical
    scheme, Superset issue #23070, each got a hue of its own whatever its value), and the legend
    beside shows that scale, light to dark."""
    import time

    from dnma_superset.charts import MAP_COLORS

    from .test_provision import _chart_ids, _data

    dashboard = next(d for d in DASHBOARDS if d.slug == slug)
    chart = next(c for c in dashboard.charts() if c.key == map_key)
    entity, metric = chart.params["entity"], chart.params["metric"]
    api = superset.client()
    values = {r[entity]: r[metric] for r in _data(api, _chart_ids(api)[map_key])}
    low, high = min(values.values()), max(values.values())
    assert low < high, values

    load = admin_browser.open_dashboard(slug, len(dashboard.charts()))
    assert load.errors == [] and load.charts == len(dashboard.charts()), load
    fills: dict[str, str] = {}
    deadline = time.monotonic() + 30  # the map's GeoJSON loads after the chart renders
    while time.monotonic() < deadline and not fills:
        fills = dict(admin_browser.driver.execute_script(_MAP_FILLS_JS))
        time.sleep(0.5)
    admin_browser.screenshot(ARTIFACTS / f"{slug}-carte.png")
    lowest = {fills[c] for c, v in values.items() if v == low and c in fills}
    highest = {fills[c] for c, v in values.items() if v == high and c in fills}
    assert lowest == {_rgb(MAP_COLORS[0])}, (lowest, low)
    assert highest == {_rgb(MAP_COLORS[-1])}, (highest, high)
    assert len(set(fills.values())) > 2  # and the others in between

    gradient = admin_browser.driver.execute_script(_LEGEND_JS) or ""
    assert gradient.startswith("linear-gradient"), gradient
    assert [m for m in (_rgb(c) for c in MAP_COLORS) if m in gradient] == [_rgb(c) for c in MAP_COLORS], gradient
    assert gradient.index(_rgb(MAP_COLORS[0])) < gradient.index(_rgb(MAP_COLORS[-1]))
    assert "du plus clair (la valeur la plus faible" in admin_browser.text()
