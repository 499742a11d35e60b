"""The bundle imports through the assets API, every chart answers, the national KPIs equal a
direct ClickHouse query, provisioning is idempotent, and RLS cuts rows per perimeter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.identity import DATABASE_NAME
from dnma_superset.labels import duration_label
from dnma_superset.provision import RolePerimeters

from dnma.vocab import SERVICE_LABELS

from .conftest import SupersetHandle, provision

CHARTS = {c.uuid: c for d in DASHBOARDS for c in d.charts()}


def _chart_ids(api: Any) -> dict[str, int]:
    rows = api.get("/api/v1/chart/", q="(columns:!(id,uuid),page_size:100)")["result"]
    return {CHARTS[r["uuid"]].key: r["id"] for r in rows if r["uuid"] in CHARTS}


def _data(api: Any, chart_id: int) -> list[dict[str, Any]]:
    status, body = api.chart_data(chart_id)
    assert status == 200, body
    results = body["result"]
    for r in results:
        assert not r.get("error"), r["error"]
    return [row for r in results for row in r["data"]]


def test_bundle_imported(superset: SupersetHandle) -> None:
    api = superset.client()
    dashboards = {r["slug"]: r for r in api.rows("/api/v1/dashboard/")}
    assert {d.slug for d in DASHBOARDS} <= set(dashboards)
    assert len(_chart_ids(api)) == len(CHARTS)
    databases = api.rows("/api/v1/database/")
    assert [d["database_name"] for d in databases] == [DATABASE_NAME]


def test_every_chart_returns_rows(superset: SupersetHandle) -> None:
    api = superset.client()
    empty = []
    for key, chart_id in sorted(_chart_ids(api).items()):
        rows = _data(api, chart_id)
        if not rows:
            empty.append(key)
    # Quality alerts may legitimately be empty on a clean run; everything else has data.
    allowed_empty = {"qua_alertes_ouvertes", "qua_silence"}
    assert set(empty) <= allowed_empty, empty


def test_national_kpis_equal_direct_query(superset: SupersetHandle) -> None:
    api = superset.client()
    ids = _chart_ids(api)
    got = {key: next(iter(_data(api, ids[key])[0].values()))
           for key in ("nat_visites", "nat_utilisateurs", "nat_pages_vues", "nat_duree")}
    # The national charts read the national rollup, whose distinct users are exact (groupBitmap
    # states over dnma.user_index, m0019): merged over the period they equal the exact count.
    direct = superset.stack.reader().query(
        "SELECT count(), uniqExact(if(user_hash != 0, user_hash, visitor_id)), sum(pageviews), avg(duration) "
        "FROM dnma.visits").result_rows[0]
    assert got["nat_visites"] == direct[0] > 0
    assert got["nat_utilisateurs"] == direct[1]
    assert got["nat_pages_vues"] == direct[2]
    assert got["nat_duree"] == duration_label(direct[3])  # in French words: "3 min 19 s"
    # Distinct users over the whole period are fewer than the sum of daily distinct users.
    daily = superset.stack.reader().query(
        "SELECT sum(u) FROM (SELECT uniqExact(if(user_hash != 0, user_hash, visitor_id)) AS u "
        "FROM dnma.visits GROUP BY day)").result_rows[0][0]
    assert got["nat_utilisateurs"] < daily


def test_second_provision_changes_nothing(superset: SupersetHandle) -> None:
    before = superset.users()
    # --no-warm: the session's first provision already opened every dashboard in Chromium to warm
    # Superset's caches; opening them all again took most of this test's minute and is no change.
    out = json.loads(provision(superset.stack, superset.url, superset.admin_password, superset.env_file, "--no-warm"))
    assert out["changes"] == []
    assert out["warmed"] == []
    assert superset.users() == before
    api = superset.client()
    assert len(_chart_ids(api)) == len(CHARTS)
    names = [r["name"] for r in api.rows("/api/v1/rowlevelsecurity/")]
    assert len(names) == len(set(names))


def test_rls_academie_sees_only_its_rows(superset: SupersetHandle) -> None:
    rennes = superset.client("dnma_academie_rennes")
    admin = superset.client()
    ids = _chart_ids(admin)
    rows = _data(rennes, ids["ter_academies"])
    assert rows and {r["academie"] for r in rows} == {"Rennes"}
    all_rows = _data(admin, ids["ter_academies"])
    assert len({r["academie"] for r in all_rows}) > 1
    direct = superset.stack.reader().query("SELECT count() FROM dnma.visits WHERE academie = 'Rennes'")
    assert _data(rennes, ids["nat_visites"])[0]["visites"] == direct.result_rows[0][0]
    # The département map of a Rennes user only shows Ille-et-Vilaine.
    assert {r["departement_iso"] for r in _data(rennes, ids["ter_carte_dep"])} <= {"FR-35"}
    # Quality: the alerts and hit quality of the académie's perimeter (dnma_superset.quality_sql;
    # tests/superset/test_quality_perimeter.py), readable, never another académie's.
    status, _ = rennes.chart_data(ids["qua_alertes"])
    assert status == 200
    alerts = _data(rennes, ids["qua_alertes_ouvertes"])
    assert not any(r["portee"] == "Académie" and r["scope_value"] != "Rennes" for r in alerts), alerts
    assert _data(rennes, ids["qua_uai_invalide"])[0]["taux_uai_invalide"] is not None


def test_rls_project_and_no_perimeter(superset: SupersetHandle) -> None:
    admin = superset.client()
    ids = _chart_ids(admin)
    ent = superset.client("dnma_ent_bretagne")
    assert {r["nom_projet"] for r in _data(ent, ids["dep_couverture"])} == {"ENT Bretagne 2D"}  # its registry name
    nobody = superset.client("dnma_sans_perimetre")
    assert _data(nobody, ids["nat_visites"])[0]["visites"] == 0
    assert _data(nobody, ids["ter_academies"]) == []


def test_site_editor_sees_its_site_on_marquage_only(superset: SupersetHandle) -> None:
    """The role of level "site" (perimeters.yaml): the Marquage dashboard's rows of its site, the
    report's share of valid UAIs over its last 28 days, and no row of the visit datasets (its Qualité
    rows: test_quality_perimeter.py)."""
    from dnma_superset.marquage_sql import MARQUAGE_DAYS

    from dnma import clock

    admin = superset.client()
    ids = _chart_ids(admin)
    editor = superset.client("dnma_editeur_site_1")
    assert {r["Site"] for r in _data(editor, ids["mar_sites"])} == {"1"}
    assert len({r["Site"] for r in _data(admin, ids["mar_sites"])}) > 1
    today = clock.today(clock.PARIS).isoformat()
    [(share,)] = superset.stack.reader().query(
        "SELECT countIf(uai != '' AND NOT has(flags, 'invalid_uai')) / count() FROM dnma.hits "
        f"WHERE site_id = 1 AND toDate(ts) >= toDate('{today}') - {MARQUAGE_DAYS}").result_rows
    assert _data(editor, ids["mar_uai_valide"])[0]["taux_uai_valide"] == pytest.approx(share)
    # The report's UAIs outside the perimeter (a row per site, "aucun" when none) and its latest
    # non-conforming hits: its own site's only.
    assert {r["Site"] for r in _data(editor, ids["mar_hors_perimetre_sites"])} == {"1"}
    examples = _data(editor, ids["mar_exemples"])
    assert examples and {r["site_id"] for r in examples} == {1}
    assert all("?" not in r["page"] for r in examples)
    assert _data(editor, ids["nat_visites"])[0]["visites"] == 0


def test_ent_coverage_and_census_follow_one_definition(superset: SupersetHandle) -> None:
    """dnma/indicators.py through Superset, against independent SQL: an ENT's tagging coverage is over
    its declared perimeter whoever looks (ENT_35_1D: 1D of 035, for the national, the département
    and the région user; nothing for Val-de-Marne's, which its perimeter does not reach); the census
    counts public establishments only, and an ENT's user sees the establishments active through it."""
    from dnma import clock
    from dnma.indicators import school_weeks

    ids = _chart_ids(superset.client())

    def ent35(user: str) -> dict[str, tuple[Any, Any]]:
        rows = _data(superset.client(user), ids["dep_couverture"])
        return {r["degre"]: (r["etablissements"], r["couverture_marquage"]) for r in rows if r["nom_projet"] == "ENT 35 1D"}

    national = ent35("dnma_national")
    reader = superset.stack.reader()
    perimeter = reader.query("SELECT count() FROM dnma.etablissements FINAL "
                             "WHERE degre = '1D' AND departement_code = '035'").result_rows[0][0]
    assert national and national["1D"][0] == perimeter
    assert ent35("dnma_departement_35") == ent35("dnma_region_bretagne") == national
    assert ent35("dnma_departement_94") == {}

    today = clock.today(clock.PARIS)
    weeks = ", ".join(f"'{w}'" for w in school_weeks(today, 4))
    active = (f"SELECT uai FROM dnma.visits WHERE has(CAST([{weeks}] AS Array(Date)), toMonday(day)) AND day <= '{today}' "
              "AND projet = 'ENT_BRETAGNE'")
    public_35 = "FROM dnma.etablissements FINAL WHERE secteur = 'PU' AND departement_code = '035'"
    rows = {r["departement"]: r for r in _data(superset.client("dnma_national"), ids["dep_departements"])}
    assert rows["Ille-et-Vilaine"]["etablissements"] == reader.query(
        f"SELECT count() {public_35} AND degre != ''").result_rows[0][0]
    ent = {r["departement"]: r for r in _data(superset.client("dnma_ent_bretagne"), ids["dep_departements"])}
    assert set(ent) == {"Ille-et-Vilaine"}
    assert (ent["Ille-et-Vilaine"]["etablissements"], ent["Ille-et-Vilaine"]["etablissements_actifs"]) == tuple(
        reader.query(f"SELECT count(), countIf(uai IN ({active})) {public_35} AND degre = '2D'").result_rows[0])


def test_perimeters_file_is_consistent() -> None:
    p = RolePerimeters.load()
    levels = {x.level for x in p.perimeters}
    assert levels == {"national", "region", "academie", "departement", "projet", "site"}
    assert any(not u.perimeters for u in p.users)


def _filtered(api: Any, chart_id: int, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The chart's saved query with native-filter-like filters (what the dashboard sends)."""
    qc = json.loads(api.get(f"/api/v1/chart/{chart_id}", q="(columns:!(query_context))")["result"]["query_context"])
    qc["queries"][0]["filters"] = [{"col": col, "op": "IN", "val": vals} for col, vals in filters.items()]
    qc["force"] = True
    r = api.http.post("/api/v1/chart/data", json=qc)
    assert r.status_code == 200, r.text
    result = r.json()["result"][0]
    assert not result.get("error") and not result.get("rejected_filters"), result
    return list(result["data"])


def test_native_filters_read_the_right_tier(superset: SupersetHandle) -> None:
    """Each filter moves the visit charts to a rollup holding its column (or to visits for a
    service): the figures equal the same question asked of dnma.visits."""
    api = superset.client()
    ids = _chart_ids(api)
    reader = superset.stack.reader()

    def one(sql: str) -> Any:
        return reader.query(sql).result_rows[0][0]

    projet, uai, academie = reader.query(
        "SELECT projet, uai, academie FROM dnma.visits WHERE projet != '' AND academie != '' "
        "GROUP BY projet, uai, academie ORDER BY count() DESC LIMIT 1").result_rows[0]
    # The latest school year (from 1 August): the demo also sends school weeks of the year before
    # (the rentrée comparison's N−1), which the filter leaves out.
    first_year = one("SELECT toYear(max(day)) - (toMonth(max(day)) < 8) FROM dnma.visits")
    year = f"{first_year}-{first_year + 1}"
    service = one("SELECT s FROM dnma.visits ARRAY JOIN services AS s GROUP BY s ORDER BY count() DESC LIMIT 1")
    cases = {
        "academie": ({"academie": [academie]}, f"academie = '{academie}'"),
        "projet": ({"projet": [projet]}, f"projet = '{projet}'"),
        "uai": ({"uai": [uai]}, f"uai = '{uai}'"),
        "annee": ({"annee_scolaire": [year]}, f"toYear(day) - (toMonth(day) < 8) = {first_year}"),
        "service": ({"service": [service]}, f"has(services, '{service}')"),
    }
    for name, (filters, where) in cases.items():
        got = _filtered(api, ids["nat_visites"], filters)[0]["visites"]
        assert got == one(f"SELECT count() FROM dnma.visits WHERE {where}") > 0, name
        users = _filtered(api, ids["nat_utilisateurs"], filters)[0]["utilisateurs"]
        exact = one(f"SELECT uniqExact(if(user_hash != 0, user_hash, visitor_id)) FROM dnma.visits WHERE {where}")
        assert users == pytest.approx(exact, rel=0.05), name
    # One establishment's services come from dnma.visits; a visit counts once per service.
    rows = _filtered(api, ids["eta_services"], {"uai": [uai]})
    direct = dict(reader.query(f"SELECT s, count() FROM dnma.visits ARRAY JOIN services AS s WHERE uai = '{uai}' "
                               "GROUP BY s").result_rows)
    assert {r["Service"]: r["visites"] for r in rows} == {SERVICE_LABELS[s]: n for s, n in direct.items()}
    # Two services: a visit touching both counts once in the visit charts.
    two = one("SELECT groupArray(s) FROM (SELECT s FROM dnma.visits ARRAY JOIN services AS s GROUP BY s "
              "ORDER BY count() DESC LIMIT 2)")
    got = _filtered(api, ids["nat_visites"], {"service": list(two)})[0]["visites"]
    assert got == one(f"SELECT count() FROM dnma.visits WHERE hasAny(services, {list(two)})")


def test_datasets_count_days_back_from_dnma_clock(superset: SupersetHandle) -> None:
    """The datasets that mean "the last N days" render DNMA's today (DNMA_NOW, the session's clock),
    never ClickHouse's today(): their SQL, as Superset renders it for a chart, names the date."""
    from dnma import clock

    api = superset.client()
    ids = _chart_ids(api)
    relative = {"qualite_hits", "deploiement", "couverture_ent"}
    charts = sorted(c.key for c in CHARTS.values() if c.dataset in relative)
    assert charts
    today = clock.today(clock.PARIS).isoformat()
    for key in charts:
        r = api.http.get(f"/api/v1/chart/{ids[key]}/data/", params={"type": "query", "format": "json"})
        assert r.status_code == 200, r.text
        sql = " ".join(q["query"] for q in r.json()["result"])
        assert f"toDate('{today}')" in sql, (key, sql[:500])
        assert "today()" not in sql and "now()" not in sql, key
