"""The bundle imports through the assets API, every chart answers, the national KPIs equal a
direct ClickHouse query, provisioning is idempotent, and RLS cuts rows per perimeter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dnma_superset import bundle
from dnma_superset.provision import Perimeters

from .conftest import SupersetHandle, provision

CHARTS = {c.uuid: c for d in bundle.DASHBOARDS for c in d.charts()}


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
    assert {d.slug for d in bundle.DASHBOARDS} <= set(dashboards)
    assert len(_chart_ids(api)) == len(CHARTS)
    databases = api.rows("/api/v1/database/")
    assert [d["database_name"] for d in databases] == [bundle.DATABASE_NAME]


def test_every_chart_returns_rows(superset: SupersetHandle) -> None:
    api = superset.client()
    empty = []
    for key, chart_id in sorted(_chart_ids(api).items()):
        rows = _data(api, chart_id)
        if not rows:
            empty.append(key)
    # Quality alerts may legitimately be empty on a clean run; everything else has data.
    allowed_empty = {"qua_alertes_ouvertes", "qua_silence", "qua_ingestion"}
    assert set(empty) <= allowed_empty, empty


def test_national_kpis_equal_direct_query(superset: SupersetHandle) -> None:
    api = superset.client()
    ids = _chart_ids(api)
    got = {key: next(iter(_data(api, ids[key])[0].values()))
           for key in ("nat_visites", "nat_utilisateurs", "nat_pages_vues", "nat_duree")}
    direct = superset.stack.reader().query(
        "SELECT count(), uniqExact(if(user_hash != 0, user_hash, visitor_id)), sum(pageviews), avg(duration) "
        "FROM dnma.visits").result_rows[0]
    assert got["nat_visites"] == direct[0] > 0
    assert got["nat_utilisateurs"] == direct[1]
    assert got["nat_pages_vues"] == direct[2]
    assert got["nat_duree"] == pytest.approx(direct[3], rel=1e-9)
    # Distinct users over the whole period are fewer than the sum of daily distinct users.
    daily = superset.stack.reader().query(
        "SELECT sum(u) FROM (SELECT uniqExact(if(user_hash != 0, user_hash, visitor_id)) AS u "
        "FROM dnma.visits GROUP BY day)").result_rows[0][0]
    assert got["nat_utilisateurs"] < daily


def test_second_provision_changes_nothing(superset: SupersetHandle) -> None:
    before = superset.users()
    out = json.loads(provision(superset.stack, superset.url, superset.admin_password, superset.env_file))
    assert out["changes"] == []
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
    # Quality alerts are for the national level only; hit-quality rows carry no territory: none.
    assert rennes.chart_data(ids["qua_alertes"])[0] in (403, 404)
    assert _data(rennes, ids["qua_uai_invalide"])[0]["taux_uai_invalide"] is None


def test_rls_project_and_no_perimeter(superset: SupersetHandle) -> None:
    admin = superset.client()
    ids = _chart_ids(admin)
    ent = superset.client("dnma_ent_bretagne")
    assert {r["projet"] for r in _data(ent, ids["dep_couverture"])} == {"ENT_BRETAGNE"}
    nobody = superset.client("dnma_sans_perimetre")
    assert _data(nobody, ids["nat_visites"])[0]["visites"] == 0
    assert _data(nobody, ids["ter_academies"]) == []


def test_perimeters_file_is_consistent() -> None:
    p = Perimeters.load()
    levels = {x.level for x in p.perimeters}
    assert levels == {"national", "region", "academie", "departement", "projet"}
    assert any(not u.perimeters for u in p.users)
