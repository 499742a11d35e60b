"""The charts' queries on embedded chDB (no Superset needed): each dataset's SQL as Superset runs it
(its Jinja rendered with no filter, today pinned), grouped and aggregated as the chart asks, and
compared with an independent query on the tables it reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from dnma_superset.charts import ROW_LIMIT, Chart, query_context
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.dataset_sql import SQL
from dnma_superset.datasets import DATASETS
from dnma_superset.labels import NO_DURATION, duration_label, duration_sql

from aggregator.migrate import migrate
from dnma.indicators import CENSUS_SCHEME
from dnma.settings import Settings
from dnma.vocab import PROFIL_LABELS, PROFILS, SERVICE_LABELS, SERVICES

TODAY = date(2026, 3, 18)  # a pinned "today": the quality dataset reads the 14 days before it
CHARTS = {c.key: c for d in DASHBOARDS for c in d.charts()}


def render(sql: str, today: date = TODAY) -> str:
    """A dataset's SQL with no native filter and no RLS rule: every Jinja block off, today pinned.
    The last branch of an if/elif/else chain is the one read without filters (the coarsest tier)."""
    if "{%- if" in sql:
        sql = re.split(r"\{%- (?:if|elif|else)[^%]*%\}", sql)[-1]
    sql = sql.replace("{{ dnma_today() }}", today.isoformat()).replace("{{ dnma_active_weeks() }}", "4")
    sql = re.sub(r"\{%-? set .*?-?%\}\n?", "", sql, flags=re.S)
    sql = re.sub(r"\{%-? for .*?%\}.*?\{%-? endfor -?%\}", "", sql, flags=re.S)
    # {% if x %}a{% else %}b{% endif %}: b (no filter, no RLS rule); {% if x %}a{% endif %}: nothing
    sql = re.sub(r"\{%-? if [^%]*%\}(?:(?!\{%-? (?:if|endif)).)*?\{%-? else -?%\}(.*?)\{%-? endif -?%\}", r"\1",
                 sql, flags=re.S)
    sql = re.sub(r"\{%-? if .*?%\}.*?\{%-? endif -?%\}", "", sql, flags=re.S)
    sql = re.sub(r"\{%-? endif -?%\}", "", sql)
    assert "{%" not in sql and "{{" not in sql, sql
    return sql


def metric_sql(dataset: str, metric: str) -> str:
    return next(m[2] for m in DATASETS[dataset].metrics if m[0] == metric)


def chart_rows(client: Any, chart: Chart, today: date = TODAY) -> list[tuple[Any, ...]]:
    """The chart's grouped query as Superset builds it: its columns, its metrics, its row limit."""
    q = query_context(chart)["queries"][0]
    columns = [c if isinstance(c, str) else c["sqlExpression"] for c in q["columns"]]
    metrics = [metric_sql(chart.dataset, m) for m in q["metrics"]]
    where = f"WHERE {q['extras']['where']}" if q["extras"]["where"] else ""
    group = f"GROUP BY {', '.join(columns)}" if columns else ""
    sql = (f"SELECT {', '.join([*columns, *metrics])} FROM ({render(SQL[chart.dataset], today)}) {where} "
           f"{group} ORDER BY {', '.join(columns) or '1'} LIMIT {q['row_limit']}")
    return [tuple(r) for r in client.query(sql).result_rows]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("chart_queries")
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}")
    c = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    migrate(c, settings)
    try:
        yield c
    finally:
        c.close()


def test_durations_in_french_words(client: Any) -> None:
    """duration_sql (the datasets' SQL) writes what duration_label says, at every unit boundary;
    an aggregate over no rows is NO_DURATION, never '0 s'."""
    cases = {0: "0 s", 0.4: "0 s", 45: "45 s", 59.5: "1 min", 199: "3 min 19 s", 3600: "1 h", 3660: "1 h 1 min",
             7500: "2 h 5 min", 86399.5: "1 j", 93659: "1 j 2 h", -5: "0 s"}
    for seconds, text in cases.items():
        assert duration_label(seconds) == text
        assert client.query(f"SELECT {duration_sql(repr(float(seconds)))}").result_rows[0][0] == text, seconds
    for empty in ("avg(number)", "sum(number) / nullIf(count(), 0)"):
        assert client.query(f"SELECT {duration_sql(empty)} FROM numbers(0)").result_rows[0][0] == NO_DURATION


def test_duration_tiles_write_the_average_in_french(client: Any) -> None:
    """The national and establishment duration tiles: the average visit duration in French words,
    the same as the label written apart (duration_label) of the average computed apart."""
    # Without a filter both read the national rollup (the coarsest tier of the dataset's SQL).
    client.command("INSERT INTO dnma.visits_national_daily (day, visites, duree) VALUES "
                   "('2026-03-10', 2, 300), ('2026-03-11', 1, 97)")
    direct = client.query("SELECT sum(duree) / sum(visites) FROM dnma.visits_national_daily").result_rows[0][0]
    assert duration_label(direct) == "2 min 12 s"  # 397 s over 3 visits
    for key in ("nat_duree", "eta_duree"):
        assert chart_rows(client, CHARTS[key]) == [(duration_label(direct),)], key
    client.command("TRUNCATE TABLE dnma.visits_national_daily")


def test_native_third_party_pie_counts_each_visit_once(client: Any) -> None:
    """A visit touching native and third-party services both is one visit: the pie's slices are
    exclusive and add up to the visits (the former pie showed it in both slices)."""
    rows = []
    for i, (natif, tiers) in enumerate([(1, 0)] * 7 + [(0, 1)] * 2 + [(1, 1)] * 5 + [(0, 0)] * 1):
        rows.append(f"({i + 1}, 1, '2026-03-10', 1000 + {i}, {natif}, {tiers})")
    client.command("INSERT INTO dnma.visits (visit_id, site_id, day, visitor_id, type_natif, type_tiers) VALUES "
                   + ", ".join(rows))
    got = dict(chart_rows(client, CHARTS["svc_types"]))
    expected = dict(client.query(
        "SELECT multiIf(type_natif AND type_tiers, 'Natif et tiers', type_natif, 'Natif seul', type_tiers, "
        "'Tiers seul', 'Type non renseigné'), count() FROM dnma.visits GROUP BY 1").result_rows)
    assert got == expected == {"Natif seul": 7, "Tiers seul": 2, "Natif et tiers": 5, "Type non renseigné": 1}
    assert sum(got.values()) == client.query("SELECT count() FROM dnma.visits").result_rows[0][0]


def test_median_ingestion_delay_is_the_median_of_the_hits(client: Any) -> None:
    """The KPI and the daily line read the median of the hits' delays, not a median of per-day or
    per-site medians: one busy on-time site and two sites each sending one hit two hours late have
    a median of 0 (the former dataset said 2 h). Beyond a minute, the delay is exact to the minute.
    The tile writes it in French ("0 s"), the daily line in minutes."""
    hits = [("2026-03-10 10:00:00", 0, 1)] * 9 + [("2026-03-11 10:00:00", 7200, 2), ("2026-03-12 10:00:00", 7200, 3)]
    hits += [("2026-03-13 09:00:00", 3725, 4)] * 3 + [("2026-03-13 09:00:00", 30, 4)] * 2
    hits += [("2026-03-01 09:00:00", 99_999, 5)]  # older than the 14 days read: left out
    values = ", ".join(f"(toDateTime('{ts}', 'Europe/Paris'), toDateTime('{ts}', 'Europe/Paris') + {delay}, {site})"
                       for ts, delay, site in hits)
    client.command(f"INSERT INTO dnma.hits (ts, received_at, site_id) VALUES {values}")
    window = f"toDate(ts) >= toDate('{TODAY}') - 14"
    (kpi,), = chart_rows(client, CHARTS["qua_delai"])
    true_median = client.query(f"SELECT quantileExactLow(0.5)(toInt64(received_at) - toInt64(ts)) FROM dnma.hits "
                               f"WHERE {window}").result_rows[0][0]
    assert true_median == 0 and kpi == duration_label(true_median) == "0 s"
    daily = {day: (med, mx) for day, med, mx in chart_rows(client, CHARTS["qua_delais"])}
    expected = {day: (med, mx) for day, med, mx in client.query(
        f"SELECT toDate(ts), quantileExactLow(0.5)(toInt64(received_at) - toInt64(ts)), "
        f"max(toInt64(received_at) - toInt64(ts)) FROM dnma.hits WHERE {window} GROUP BY 1").result_rows}
    assert set(daily) == set(expected)
    for day, (med, mx) in expected.items():
        assert daily[day][1] == pytest.approx(mx / 60)
        assert 0 <= med / 60 - daily[day][0] < 1, day  # truncated to the minute, never more
    assert daily[date(2026, 3, 13)][0] == pytest.approx(62)  # 1 h 2 min 5 s shown as 62 min


def test_services_by_profile_keeps_every_pair(client: Any) -> None:
    """Every (service, profil) pair the rollup holds is in the chart: 25 services × 6 profils is
    well past the 30 rows the chart used to keep."""
    rows = [f"('2026-03-10', '1D', '{p}', '{s}', {i + 1})"
            for i, (s, p) in enumerate((s, p) for s in SERVICES for p in PROFILS)]
    client.command("INSERT INTO dnma.visits_services_national_daily (day, degre, profil, service, visites) VALUES "
                   + ", ".join(rows))
    got = chart_rows(client, CHARTS["svc_profils"])
    expected = client.query("SELECT service, profil, sum(visites) FROM dnma.visits_services_national_daily "
                            "GROUP BY service, profil").result_rows
    assert len(got) == len(SERVICES) * len(PROFILS) == 150
    # shown by their French labels (dnma.vocab)
    assert got == sorted((SERVICE_LABELS[s], PROFIL_LABELS[p], n) for s, p, n in expected)


def test_codes_are_shown_by_their_french_labels(client: Any) -> None:
    """Profils, devices and local-event actions are shown by their labels, an empty value as "Non
    renseigné" (never a blank bar), an unknown code as it is."""
    client.command("INSERT INTO dnma.visits_national_daily (day, degre, profil, device, visites) VALUES "
                   "('2026-03-10', '1D', 'ELEVE', 'tablette', 3), ('2026-03-10', '1D', '', '', 2), "
                   "('2026-03-10', '1D', 'INCONNU', 'autreappareil', 1)")
    assert dict(chart_rows(client, CHARTS["nat_profils"])) == {"Élève": 3, "Non renseigné": 2, "INCONNU": 1}
    assert dict(chart_rows(client, CHARTS["nat_appareils"])) == {"Tablette": 3, "Non renseigné": 2,
                                                                "Autre appareil": 1}


def test_no_chart_cuts_its_rows() -> None:
    """No chart keeps a top N of its rows: every one reads up to ROW_LIMIT rows, far more than any
    of them returns (the largest, services × profils with their blanks, is under 200)."""
    assert (len(SERVICES) + 1) * (len(PROFILS) + 1) < ROW_LIMIT
    for key, chart in CHARTS.items():
        assert chart.params.get("row_limit") == ROW_LIMIT or chart.viz == "big_number_total", key
        assert query_context(chart)["queries"][0]["row_limit"] == ROW_LIMIT, key


def test_quality_dashboard_has_no_chart_without_data_behind_it() -> None:
    """The loader's lag has no history in ClickHouse: no chart promises it (it showed "Aucun
    résultat" on every healthy stack). The refused requests do now: the quarantine keeps them."""
    quality = next(d for d in DASHBOARDS if d.slug == "dnma-qualite")
    assert "qua_ingestion" not in {c.key for c in quality.charts()}
    assert not any("retard du loader" in c.title for c in quality.charts())
    assert {"qua_quarantaine", "qua_quarantaine_exemples"} <= {c.key for c in quality.charts()}


def test_quarantine_counts_by_site_and_reason_in_french(client: Any) -> None:
    """The Qualité dashboard's quarantine table: live records (a replayed one, deleted, is not
    counted) by site and French reason, equal to independent SQL; the samples newest first."""
    client.command(
        "INSERT INTO dnma.quarantine (id, version, deleted, received_at, site_id, reason, request) VALUES "
        "('q1', 0, 0, '2026-03-17 10:00:00', 7, 'unknown_site', {'url': 'https://e/1'}), "
        "('q2', 0, 0, '2026-03-17 11:00:00', 7, 'unknown_site', {'url': 'https://e/2'}), "
        "('q3', 0, 0, '2026-03-17 12:00:00', 1, 'cdt_too_old', {'url': 'https://e/3'}), "
        "('q4', 0, 0, '2026-03-17 13:00:00', 1, 'invalid_event', {'url': 'https://e/4'}), "
        "('q4', 5, 1, '2026-03-17 13:00:00', 1, '', {})")
    expected = client.query("SELECT site_id, reason, count() FROM dnma.quarantine FINAL GROUP BY 1, 2 "
                            "ORDER BY 1, 2").result_rows
    assert expected == [(1, "cdt_too_old", 1), (7, "unknown_site", 2)]
    labels = {"cdt_too_old": "cdt de plus de 24 h sans jeton", "unknown_site": "Site non enregistré"}
    assert chart_rows(client, CHARTS["qua_quarantaine"]) == [(s, labels[r], n) for s, r, n in expected]
    samples = CHARTS["qua_quarantaine_exemples"]
    q = query_context(samples)["queries"][0]
    rows = client.query(f"SELECT {', '.join(q['columns'])} FROM ({render(SQL[samples.dataset])}) "
                        "ORDER BY received_at DESC").result_rows
    assert [(r[1], r[3]) for r in rows] == [(1, "https://e/3"), (7, "https://e/2"), (7, "https://e/1")]
    assert "detail" not in q["columns"]  # the collector's English wording (the UI-language scan)


def test_maps_dashboards_have_no_categorical_scheme_and_a_legend() -> None:
    """country_map colours each territory from the dashboard's categorical scheme when there is one
    (Superset issue #23070): a dashboard holding a map has none, and a legend beside each map."""
    import yaml
    from dnma_superset.assets_yaml import render

    files = render()
    for d in DASHBOARDS:
        metadata = yaml.safe_load(files[f"dashboards/{d.slug}.yaml"])["metadata"]
        maps = [c for c in d.charts() if c.viz == "country_map"]
        legends = [c for row in d.rows for c in row if c.__class__.__name__ == "Markdown"]
        # The census maps (fixed class palette) have their legend in a table of the same dataset.
        census = [c for c in maps if c.params["linear_color_scheme"] == CENSUS_SCHEME]
        census_legends = [c for c in d.charts() if c.viz == "table" and c.dataset == "recensement"
                          and c.params["adhoc_filters"] and "classe" in c.params["groupby"]]
        if maps:
            assert "color_scheme" not in metadata, d.slug
            assert len(legends) == len(maps) - len(census), d.slug
            assert [c.params["adhoc_filters"] for c in census] == [c.params["adhoc_filters"] for c in census_legends]
            assert all(c.params["linear_color_scheme"] == "superset_seq_1" for c in maps if c not in census)
        else:
            assert metadata["color_scheme"] == "supersetColors", d.slug


def test_deployment_class_tells_no_project_from_not_measured(client: Any) -> None:
    """A territory with no active establishment is "Aucun projet ou non mesuré" when no ENT of the
    sites registry declares it (nothing tells the two apart), "Non mesuré" when one does (an ENT is
    there and sends nothing); with activity, the census's classes. Synthetic referential (made up
    for this test): four départements of public schools."""
    from dnma_superset.datasets import CLASSE_AUCUN, CLASSE_NON_MESURE

    # departement -> (public schools, declared by an ENT's perimeter, active ones)
    territories = {"Ille-et-Vilaine": (4, True, 0), "Côtes-d'Armor": (3, False, 0), "Finistère": (2, True, 1),
                   "Morbihan": (5, False, 1)}
    ref, perimeter, visits = [], [], []
    for n, (dep, (schools, declared, active)) in enumerate(territories.items()):
        for i in range(schools):
            uai = f"09{n}{i:04d}X"
            ref.append([uai, f"École {uai}", "1D", "PU", dep, f"FR-{n}", "Rennes"])
            if declared:
                perimeter.append([7, "ENT_BZH", uai, "1D", dep, "Rennes", "Bretagne"])
            if i < active:
                visits.append([date(2026, 3, 16), uai, 7, "ENT_BZH", 1])
    ref.append(["0990001P", "École privée", "1D", "PR", "Côtes-d'Armor", "FR-1", "Rennes"])  # not counted
    client.insert("dnma.etablissements", ref, column_names=[
        "uai", "nom", "degre", "secteur", "departement", "departement_iso", "academie"])
    client.insert("dnma.perimetres_ent", perimeter, column_names=[
        "site_id", "projet", "uai", "degre", "departement", "academie", "region"])
    client.insert("dnma.visits_daily", visits, column_names=["day", "uai", "site_id", "projet", "visites"])

    def expected(schools: int, declared: bool, active: int) -> str:  # the census's rule, written apart
        if active == 0:
            return CLASSE_NON_MESURE if declared else CLASSE_AUCUN
        share = active / schools
        return ("Généralisation massive (≥ 90 %)" if share >= 0.9 else "Généralisation partielle (≥ 50 %)"
                if share >= 0.5 else "Déploiement 20–50 %" if share >= 0.2 else "Déploiement < 20 %")

    got = {row[1]: row[2:] for row in chart_rows(client, CHARTS["dep_departements"])}
    assert {dep: (n, a, c) for dep, (n, a, _, c) in got.items()} == {
        dep: (schools, active, expected(schools, declared, active))
        for dep, (schools, declared, active) in territories.items()}
    assert {c for *_, c in got.values()} >= {CLASSE_AUCUN, CLASSE_NON_MESURE}
