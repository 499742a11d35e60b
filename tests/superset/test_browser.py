"""Real headless Chromium on the provisioned Superset: each dashboard loads, every chart renders
without an error box (screenshots in test-artifacts/superset/), and RLS holds on the rendered page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

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


# Every territory path of one country map (arguments[0]: the chart's title; Déploiement holds
# several maps): its code (the GeoJSON feature d3 bound to it) and the fill the browser computes.
MAP_FILLS_JS = """
const slice = [...document.querySelectorAll('.chart-slice')]
  .find(s => s.getAttribute('data-test-chart-name') === arguments[0]);
return [...(slice ? slice.querySelectorAll('.superset-legacy-chart-country-map path.region') : [])]
  .filter(p => p.__data__ && p.__data__.properties)
  .map(p => [p.__data__.properties.ISO, getComputedStyle(p).fill]);
"""


def rgb(hex_color: str) -> str:
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
        fills = dict(admin_browser.driver.execute_script(MAP_FILLS_JS, chart.title))
        time.sleep(0.5)
    admin_browser.screenshot(ARTIFACTS / f"{slug}-carte.png")
    lowest = {fills[c] for c, v in values.items() if v == low and c in fills}
    highest = {fills[c] for c, v in values.items() if v == high and c in fills}
    assert lowest == {rgb(MAP_COLORS[0])}, (lowest, low)
    assert highest == {rgb(MAP_COLORS[-1])}, (highest, high)
    assert len(set(fills.values())) > 2  # and the others in between

    gradient = admin_browser.driver.execute_script(_LEGEND_JS) or ""
    assert gradient.startswith("linear-gradient"), gradient
    assert [m for m in (rgb(c) for c in MAP_COLORS) if m in gradient] == [rgb(c) for c in MAP_COLORS], gradient
    assert gradient.index(rgb(MAP_COLORS[0])) < gradient.index(rgb(MAP_COLORS[-1]))
    assert "du plus clair (la valeur la plus faible" in admin_browser.text()


# The rows of one table chart (arguments[0]: its title), as the browser shows them.
_TABLE_ROWS_JS = """
const slice = [...document.querySelectorAll('.chart-slice')]
  .find(s => s.getAttribute('data-test-chart-name') === arguments[0]);
return [...(slice ? slice.querySelectorAll('tbody tr') : [])]
  .map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim()));
"""


def test_census_map_fills_and_legend_counts(admin_browser: Browser, superset: SupersetHandle) -> None:
    """The collèges census map, read in the rendered SVG: three départements of known class (by an
    independent SQL count on the stack's ClickHouse, of as many different classes as the demo
    has) are filled with their class's palette colour; the legends beside the écoles and collèges
    maps list the five classes with the independent counts of départements."""
    import time

    from dnma import clock
    from dnma.indicators import (
        ACTIVE_SCHOOL_WEEKS,
        CENSUS_CLASSES,
        CENSUS_COLORS,
        census_class_sql,
        school_weeks,
    )

    dashboard = next(d for d in DASHBOARDS if d.slug == "dnma-deploiement")
    charts = {c.key: c for c in dashboard.charts()}
    weeks = ", ".join(f"'{m}'" for m in school_weeks(clock.today(), ACTIVE_SCHOOL_WEEKS))
    reader = superset.stack.reader()

    def classes(natures: str, weeks: str = weeks, until: date | None = None) -> dict[str, int]:
        rows = reader.query(
            f"SELECT departement_iso, {census_class_sql('a', 'n')} FROM (SELECT departement_iso, count() AS n, "
            f"countIf(uai IN (SELECT uai FROM dnma.visits_daily WHERE toMonday(day) IN ({weeks}) "
            f"AND day <= '{until or clock.today()}' AND uai != '')) AS a FROM dnma.etablissements FINAL WHERE secteur = 'PU' "
            f"AND code_nature BETWEEN {natures} GROUP BY departement_iso)").result_rows
        return {iso: int(c) for iso, c in rows}

    colleges, ecoles = classes("340 AND 359"), classes("100 AND 199")
    by_class: dict[int, list[str]] = {}
    for iso, c in sorted(colleges.items()):
        by_class.setdefault(c, []).append(iso)
    known = [isos[0] for isos in by_class.values()][:3]
    known += [iso for iso in sorted(colleges) if iso not in known][:3 - len(known)]
    assert len(known) == 3 and len(by_class) >= 2, by_class

    load = admin_browser.open_dashboard(dashboard.slug, len(dashboard.charts()))
    assert load.errors == [] and load.charts == len(dashboard.charts()), load
    title = charts["dep_recensement_colleges"].title
    fills: dict[str, str] = {}
    deadline = time.monotonic() + 30  # the map's GeoJSON loads after the chart renders
    while time.monotonic() < deadline and not all(iso in fills for iso in known):
        fills = dict(admin_browser.driver.execute_script(MAP_FILLS_JS, title))
        time.sleep(0.5)
    admin_browser.screenshot(ARTIFACTS / "dnma-deploiement-recensement.png")
    assert {iso: fills.get(iso) for iso in known} == {iso: rgb(CENSUS_COLORS[colleges[iso]]) for iso in known}

    for key, expected in (("dep_legende_colleges", colleges), ("dep_legende_ecoles", ecoles)):
        rows = admin_browser.driver.execute_script(_TABLE_ROWS_JS, charts[key].title)
        shown = {r[0]: int("".join(ch for ch in r[-1] if ch.isdigit())) for r in rows if r}
        assert shown == {label: sum(c == i for c in expected.values()) for i, label in enumerate(CENSUS_CLASSES)}, key

    # Class changes since the same week a year earlier (the demo also sends those weeks: dnma demo
    # --year-ago-scale): the collèges' rows of the table equal the independent classes then and now.
    ago = clock.today() - timedelta(days=364)
    weeks_ago = ", ".join(f"'{m}'" for m in school_weeks(ago, ACTIVE_SCHOOL_WEEKS))
    colleges_ago = classes("340 AND 359", weeks_ago, ago)
    measured_ago = reader.query(f"SELECT count() FROM dnma.visits_daily WHERE toMonday(day) IN ({weeks_ago}) "
                                f"AND day <= '{ago}' AND uai != ''").result_rows[0][0] > 0
    expected: dict[str, int] = {}
    for iso, now_class in colleges.items():
        then = colleges_ago.get(iso, 0)
        if not measured_ago:
            phrase = "Aucune mesure la même semaine un an plus tôt"
        elif then == now_class:
            phrase = f"Inchangée : « {CENSUS_CLASSES[now_class]} »"
        else:
            phrase = (f"{'Progression' if now_class > then else 'Recul'} de « {CENSUS_CLASSES[then]} » "
                      f"à « {CENSUS_CLASSES[now_class]} »")
        expected[phrase] = expected.get(phrase, 0) + 1
    rows = admin_browser.driver.execute_script(_TABLE_ROWS_JS, charts["dep_evolution"].title)
    shown_evolution: dict[str, int] = {}
    for r in rows:
        if r and r[0] == "Collèges":
            key = r[1] if measured_ago else "Aucune mesure la même semaine un an plus tôt"
            shown_evolution[key] = shown_evolution.get(key, 0) + int("".join(ch for ch in r[-1] if ch.isdigit()))
    assert shown_evolution == expected, (rows, expected)
