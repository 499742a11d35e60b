"""The bundle's datasets against the rollups they read (no Superset needed): every RLS clause's
column exists in every dataset it is attached to, and distinct users are always merged states on
the rollup-backed datasets, never sums."""

from __future__ import annotations

import re

import pytest
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.dataset_sql import DETAIL, NATIONAL, SQL, TERRITOIRES
from dnma_superset.datasets import DATASETS, Dataset
from dnma_superset.provision import LEVELS, RolePerimeter, rls_clause

from aggregator.rollups import BY_TABLE


@pytest.mark.parametrize("dataset", [d for d in DATASETS.values() if d.perimeter], ids=lambda d: d.name)
def test_rls_columns_exist_in_dataset(dataset: Dataset) -> None:
    columns = {c[0] for c in dataset.columns}
    for level in LEVELS:
        if level == "national":
            continue
        clause = rls_clause(dataset, RolePerimeter("x", level, "v"))
        if clause == "1 = 0":
            continue
        # "column = 'v'", or "has(array_column, 'v')" (an ENT's perimeter: couverture_ent), or
        # "(has(array_column, 'v') OR borne = 1)" (the census: its bounds rows for everyone)
        clause = clause.removeprefix("(")
        column = clause.removeprefix("has(").split(", ")[0] if clause.startswith("has(") else clause.split(" = ")[0]
        assert column in columns, (dataset.name, clause)


ROLLUP_DATASETS = ("visites", "visites_territoires", "visites_etablissements", "visites_services")


@pytest.mark.parametrize("name", ROLLUP_DATASETS)
def test_rollup_datasets_merge_user_states(name: str) -> None:
    sql = SQL[name]
    tables = set(re.findall(r"FROM dnma\.(\w+)", sql))
    assert tables - {"visits", "etablissements", "etablissements_annees"} <= set(BY_TABLE), tables
    users = next(m for m in DATASETS[name].metrics if m[0] == "utilisateurs")[2]
    merges = {BY_TABLE[t].users_merge for t in tables if t in BY_TABLE}
    assert all(f"{m}(etats_utilisateurs)" in users for m in merges), users
    assert "sum(" not in users and "uniqExact" not in users
    # Every branch exposes the columns the RLS clauses and native filters use.
    for branch in re.split(r"\{%- (?:if|elif|else)", sql)[1:]:
        if "SELECT" in branch:
            for column in ("region", "academie", "departement", "projet", "degre", "profil", "annee_scolaire"):
                assert f"AS {column}" in branch, (name, column)


def test_charts_use_rollups_where_one_fits() -> None:
    by_key = {c.key: c for d in DASHBOARDS for c in d.charts()}
    for key, chart in by_key.items():
        if chart.dataset == "recensement":
            continue  # the census's headline tiles (nat_part_*): the referential and activity, no visit measure
        if chart.dataset == "rentree":  # N vs N−1: the visits dataset's tier chain, wrapped
            assert all(f"FROM dnma.{t} AS t" in SQL["rentree"] for t in (NATIONAL, TERRITOIRES, DETAIL)), key
            continue
        if key.startswith(("nat_", "ter_")) or key in ("eta_visites", "eta_utilisateurs", "eta_duree",
                                                       "eta_tendance", "eta_profils", "eta_appareils",
                                                       "eta_services", "svc_profils"):
            assert chart.dataset in ROLLUP_DATASETS, key
