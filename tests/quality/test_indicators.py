""""Active" and "coverage", one definition (dnma/indicators.py), on real chDB over a small synthetic
referential (two départements, public and private schools, collèges; made up for this test, never
shipped): the Superset datasets' SQL, with each user's row-level security, gives the figures an
independent SQL over the visits gives, and the coverage check gives the same.

The faults this guards against: private establishments in the census's denominator; an ENT's
coverage over the UAIs its traffic carries (ENT_35_1D shown over 035 + 094 to the national user and
over 035 to the département user); an ENT credited with schools active only through another ENT."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from dnma_superset.dataset_sql import SQL
from dnma_superset.datasets import DATASETS
from dnma_superset.provision import RolePerimeter, rls_clause

from aggregator.checks.perimetres import project_names, sync
from aggregator.checks.runner import run_checks
from aggregator.migrate import migrate
from aggregator.sessionizer import rebuild_days
from dnma.clock import PARIS
from dnma.indicators import is_school_week, school_weeks
from dnma.settings import Settings
from dnma.sites import Site, SiteRegistry, dump_sites, hash_token
from tests.quality.conftest import hit, insert_hits, make_uai

TODAY = date(2024, 11, 6)  # a Wednesday just after Toussaint (19 Oct - 4 Nov 2024: two weeks off)
NOW = datetime(2024, 11, 6, 12, tzinfo=PARIS)
ENT_35, ENT_BZH, ENT_AUTRE = 4, 1, 9

# Synthetic referential: 035 1D: 10 public + 4 private schools; 035 2D: 5 public collèges; 094 1D: 6 public.
PU_35_1D = [make_uai(35, 100 + i) for i in range(10)]
PR_35_1D = [make_uai(35, 200 + i) for i in range(4)]
PU_35_2D = [make_uai(35, 500 + i) for i in range(5)]
PU_94_1D = [make_uai(94, 100 + i) for i in range(6)]


def _sites() -> list[dict[str, Any]]:
    return [
        {"id": ENT_BZH, "name": "ENT Bretagne", "main_url": "https://bzh.example", "projet": "ENT_BRETAGNE",
         "token_sha256": hash_token("t1"), "perimeter": {"degrees": ["1D", "2D"], "academies": ["Rennes"]}},
        {"id": ENT_35, "name": "ENT 35 1D", "main_url": "https://ent35.example", "projet": "ENT_35_1D",
         "token_sha256": hash_token("t4"), "perimeter": {"degrees": ["1D"], "departements": ["035"]}},
        # No declared perimeter: no tagging coverage, but its visits make establishments active.
        {"id": ENT_AUTRE, "name": "ENT sans périmètre", "main_url": "https://autre.example", "projet": "ENT_AUTRE",
         "token_sha256": hash_token("t9")},
    ]


def _referential(client: Any) -> None:
    rows = []
    for uais, degre, secteur, dep, dep_name, iso, academie, region_code, region, region_iso in (
        (PU_35_1D, "1D", "PU", "035", "Ille-et-Vilaine", "FR-35", "Rennes", "53", "Bretagne", "FR-BRE"),
        (PR_35_1D, "1D", "PR", "035", "Ille-et-Vilaine", "FR-35", "Rennes", "53", "Bretagne", "FR-BRE"),
        (PU_35_2D, "2D", "PU", "035", "Ille-et-Vilaine", "FR-35", "Rennes", "53", "Bretagne", "FR-BRE"),
        (PU_94_1D, "1D", "PU", "094", "Val-de-Marne", "FR-94", "Créteil", "11", "Île-de-France", "FR-IDF"),
    ):
        rows += [[u, f"École {u}", degre, secteur, dep, dep_name, iso, academie, region_code, region, region_iso]
                 for u in uais]
    client.insert("dnma.etablissements", rows, column_names=[
        "uai", "nom", "degre", "secteur", "departement_code", "departement", "departement_iso", "academie",
        "region_code", "region", "region_iso"])


# Visits: (site, projet, uai, day). Toussaint's weeks (21 and 28 Oct) are not school weeks, so the
# last four school weeks on 6 Nov are those of 4 Nov, 14 Oct, 7 Oct and 30 Sep.
OLD = date(2024, 9, 26)  # the week of 23 Sep: a fifth school week back, not active
VISITS = (
    [(ENT_35, "ENT_35_1D", u, date(2024, 11, 5)) for u in PU_35_1D[:6]]
    + [(ENT_35, "ENT_35_1D", PU_35_1D[6], date(2024, 10, 1))]  # 30 Sep's week: active
    + [(ENT_35, "ENT_35_1D", u, date(2024, 10, 8)) for u in PR_35_1D[:2]]
    + [(ENT_35, "ENT_35_1D", u, date(2024, 10, 15)) for u in PU_94_1D[:3]]  # outside its perimeter
    + [(ENT_35, "ENT_35_1D", PU_35_1D[7], OLD)]
    + [(ENT_BZH, "ENT_BRETAGNE", u, date(2024, 11, 4)) for u in PU_35_2D[:3]]
    + [(ENT_BZH, "ENT_BRETAGNE", PU_35_1D[0], date(2024, 11, 4))]  # also active through ENT_35_1D
    + [(ENT_AUTRE, "ENT_AUTRE", PU_35_2D[3], date(2024, 10, 31))]  # in Toussaint's week: not counted
    + [(ENT_AUTRE, "ENT_AUTRE", PU_35_2D[4], date(2024, 11, 6))]
)
# What the visits make of it, counted by hand:
# census, 035 1D public: 7 of 10 active (6 + the one of 30 Sep; private ones are not counted);
# 094 1D: 3 of 6 (through ENT_35_1D, out of its perimeter, but active); 035 2D: 4 of 5 (3 + ENT_AUTRE's).
# tagging, ENT_35_1D: its perimeter is 035 1D, 14 schools (any sector), 9 active through it;
# ENT_BRETAGNE: académie de Rennes, 1D + 2D, 19 establishments, 4 active through it (not the 8 more
# active only through ENT_35_1D, nor the collège active through ENT_AUTRE).


_SETTINGS: list[Settings] = []  # the module database's settings (its sites file), set by db


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[Any]]]:
    tmp = tmp_path_factory.mktemp("indicators")
    dump_sites(_sites(), tmp / "sites.yaml")
    settings = Settings(data_dir=tmp, sites_file=tmp / "sites.yaml", clickhouse_dsn=f"chdb://{tmp / 'ch'}",
                        collector_port=1, hits_ttl_months=1200, rollups_ttl_months=0)
    _SETTINGS[:] = [settings]
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    _referential(client)
    hits = [hit(site, datetime.combine(day, datetime.min.time(), PARIS) + timedelta(hours=10, minutes=i),
                uai=uai, projet=projet, visitor_id=100 + i, url=f"https://ent.example/{i}")
            for i, (site, projet, uai, day) in enumerate(VISITS)]
    insert_hits(client, hits)
    rebuild_days(client, settings, sorted({day for *_, day in VISITS}))
    # The checks' run writes the ENTs' declared perimeters (perimetres_ent) the datasets read.
    transitions = run_checks(client, settings, only=["coverage"], now=NOW)
    yield client, transitions
    client.close()


def _render(name: str, by_projet: bool) -> str:
    """The dataset's SQL as Superset renders it: DNMA's today, N = 4, the ENT flag."""
    sql = SQL[name].replace("{{ dnma_today() }}", TODAY.isoformat()).replace("{{ dnma_active_weeks() }}", "4")
    sql = re.sub(r"\{%- set dnma_by_projet .*?-%\}\n", "", sql)
    sql = re.sub(r"\{% if dnma_by_projet %\}(.*?)\{% else %\}(.*?)\{% endif %\}",
                 lambda m: m.group(1) if by_projet else m.group(2), sql)
    assert "{" not in sql, sql
    return sql


def _dataset(client: Any, name: str, groupby: str, metrics: list[str], perimeter: RolePerimeter | None = None,
             projet_filter: str = "") -> dict[Any, tuple[Any, ...]]:
    """The dataset's metrics by `groupby`, as a chart asks for them, under a user's RLS clause and
    the "Projet ENT" native filter."""
    ds = DATASETS[name]
    exprs = {m[0]: m[2] for m in ds.metrics}
    rls = rls_clause(ds, perimeter) if perimeter else "1"
    where = f"projet = '{projet_filter}'" if projet_filter else "1"
    by_projet = bool(projet_filter) or (perimeter is not None and perimeter.level == "projet")
    sql = (f"SELECT {groupby}, {', '.join(exprs[m] for m in metrics)} FROM ({_render(name, by_projet)}) "
           f"WHERE ({rls}) AND ({where}) GROUP BY {groupby}")
    return {row[0]: tuple(row[1:]) for row in client.query(sql).result_rows}


NATIONAL = None
DEP_35 = RolePerimeter("d35", "departement", "Ille-et-Vilaine")
DEP_94 = RolePerimeter("d94", "departement", "Val-de-Marne")
ACAD_RENNES = RolePerimeter("rennes", "academie", "Rennes")
PROJET_BZH = RolePerimeter("bzh", "projet", "ENT_BRETAGNE")
PROJET_35 = RolePerimeter("e35", "projet", "ENT_35_1D")

WEEKS = "['2024-11-04', '2024-10-14', '2024-10-07', '2024-09-30']"


def _independent_tagging(client: Any, projet: str, degrees: str, territory: str) -> tuple[int, int]:
    """(perimeter, active through the ENT) from dnma.visits and the referential, written apart."""
    sql = f"""
    SELECT count(), countIf(uai IN (SELECT uai FROM dnma.visits WHERE projet = '{projet}'
                                     AND has(CAST({WEEKS} AS Array(Date)), toMonday(day)) AND day <= '{TODAY}'))
    FROM dnma.etablissements FINAL WHERE degre IN {degrees} AND {territory}"""
    total, active = client.query(sql).result_rows[0]
    return int(total), int(active)


def _independent_census(client: Any, departement: str, degre: str, projet: str = "") -> tuple[int, int]:
    through = f"AND projet = '{projet}'" if projet else ""
    sql = f"""
    SELECT count(), countIf(uai IN (SELECT uai FROM dnma.visits WHERE uai != '' {through}
                                     AND has(CAST({WEEKS} AS Array(Date)), toMonday(day)) AND day <= '{TODAY}'))
    FROM dnma.etablissements FINAL WHERE secteur = 'PU' AND degre = '{degre}' AND departement = '{departement}'"""
    total, active = client.query(sql).result_rows[0]
    return int(total), int(active)


def test_school_weeks_skip_national_holidays() -> None:
    assert school_weeks(TODAY, 4) == [date(2024, 11, 4), date(2024, 10, 14), date(2024, 10, 7), date(2024, 9, 30)]
    # Summer, Christmas (both weeks) and the rentrée's week when school starts on a Thursday.
    assert not is_school_week(date(2024, 7, 8)) and not is_school_week(date(2024, 8, 26))
    assert not is_school_week(date(2023, 12, 25)) and not is_school_week(date(2024, 1, 1))
    assert is_school_week(date(2022, 8, 29)) and is_school_week(date(2024, 1, 8)) and is_school_week(date(2023, 12, 18))
    # On 1 August the active weeks are the end of the school year.
    assert school_weeks(date(2025, 8, 1), 2) == [date(2025, 6, 30), date(2025, 6, 23)]


def test_tagging_coverage_is_the_declared_perimeter_whoever_looks(db: tuple[Any, list[Any]]) -> None:
    client, _ = db
    metrics = ["etablissements", "etablissements_actifs", "couverture_marquage"]
    expected = {"ENT_35_1D": (14, 9), "ENT_BRETAGNE": (19, 4)}
    assert _independent_tagging(client, "ENT_35_1D", "('1D')", "departement_code = '035'") == expected["ENT_35_1D"]
    assert _independent_tagging(client, "ENT_BRETAGNE", "('1D', '2D')", "academie = 'Rennes'") \
        == expected["ENT_BRETAGNE"]
    for who in (NATIONAL, DEP_35, ACAD_RENNES, PROJET_35, PROJET_BZH):
        got = _dataset(client, "couverture_ent", "projet", metrics, who)
        want = {p: v for p, v in expected.items() if who is None or who.level != "projet" or who.value == p}
        assert {p: (n, a) for p, (n, a, _) in got.items()} == want, who
        for n, a, share in got.values():
            assert share == pytest.approx(a / n)
    # ENT_35_1D's 094 schools are outside its declared perimeter: the 094 user sees no ENT here.
    assert _dataset(client, "couverture_ent", "projet", metrics, DEP_94) == {}


def test_coverage_shows_each_ent_by_its_registry_name_and_filters_by_code(db: tuple[Any, list[Any]]) -> None:
    """projets_ent (written by the checks' sync from the registry) names every project, declared
    perimeter or not; the chart's column nom_projet shows the name, the "Projet ENT" filter and the
    RLS keep comparing codes; a renamed site is renamed at the next sync."""
    client, _ = db
    names = dict(client.query("SELECT projet, nom FROM dnma.projets_ent FINAL").result_rows)
    assert names == {"ENT_BRETAGNE": "ENT Bretagne", "ENT_35_1D": "ENT 35 1D", "ENT_AUTRE": "ENT sans périmètre"}
    metrics = ["etablissements", "etablissements_actifs"]
    assert _dataset(client, "couverture_ent", "nom_projet", metrics) == {"ENT 35 1D": (14, 9), "ENT Bretagne": (19, 4)}
    assert _dataset(client, "couverture_ent", "nom_projet", metrics, PROJET_35) == {"ENT 35 1D": (14, 9)}
    assert _dataset(client, "couverture_ent", "nom_projet", metrics, projet_filter="ENT_BRETAGNE") \
        == {"ENT Bretagne": (19, 4)}
    tmp = Path(_SETTINGS[0].resolved_sites_file)
    renamed = [{**s, "name": "ENT Bretagne (Toutatice)"} if s["id"] == ENT_BZH else s for s in _sites()]
    dump_sites(renamed, tmp)
    try:
        assert sync(client, _SETTINGS[0])
        assert _dataset(client, "couverture_ent", "nom_projet", metrics, ACAD_RENNES) \
            == {"ENT 35 1D": (14, 9), "ENT Bretagne (Toutatice)": (19, 4)}
    finally:
        dump_sites(_sites(), tmp)
        sync(client, _SETTINGS[0])


def test_a_code_shared_by_several_sites_is_named_by_all_of_them() -> None:
    registry = SiteRegistry([Site(2, "ENT B", "https://b.example", projet="P"),
                             Site(1, "ENT A", "https://a.example", projet="P"),
                             Site(3, "", "https://c.example", projet="Q"), Site(4, "Sans projet", "https://d.example")])
    assert project_names(registry) == {"P": "ENT A / ENT B", "Q": "Q"}


def test_the_coverage_check_reads_the_same_definition(db: tuple[Any, list[Any]]) -> None:
    opened = {t.scope_value: t for t in db[1] if t.check == "coverage" and t.change == "opened"}
    assert set(opened) == {str(ENT_BZH)}  # 9/14 is above the 50 % threshold, 4/19 below
    assert opened[str(ENT_BZH)].observed == pytest.approx(4 / 19, abs=1e-6)
    assert "4 établissements actifs sur 19" in opened[str(ENT_BZH)].message


def test_census_counts_public_establishments_active_through_any_ent(db: tuple[Any, list[Any]]) -> None:
    client, _ = db
    metrics = ["etablissements", "etablissements_actifs"]
    got = _dataset(client, "deploiement", "concat(departement, ' ', degre)", metrics)
    assert got == {"Ille-et-Vilaine 1D": (10, 7), "Ille-et-Vilaine 2D": (5, 4), "Val-de-Marne 1D": (6, 3)}
    assert got["Ille-et-Vilaine 1D"] == _independent_census(client, "Ille-et-Vilaine", "1D")
    assert got["Val-de-Marne 1D"] == _independent_census(client, "Val-de-Marne", "1D")
    # The département user sees their own rows, the same figures.
    assert _dataset(client, "deploiement", "concat(departement, ' ', degre)", metrics, DEP_35) \
        == {k: v for k, v in got.items() if k.startswith("Ille")}


def test_census_of_an_ent_counts_its_own_activity_only(db: tuple[Any, list[Any]]) -> None:
    """The ENT user's census: the public establishments of its declared perimeter, active through it."""
    client, _ = db
    got = _dataset(client, "deploiement", "degre", ["etablissements", "etablissements_actifs"], PROJET_BZH)
    assert got == {"1D": (10, 1), "2D": (5, 3)}
    assert got["1D"] == _independent_census(client, "Ille-et-Vilaine", "1D", "ENT_BRETAGNE")
    assert got["2D"] == _independent_census(client, "Ille-et-Vilaine", "2D", "ENT_BRETAGNE")
    # ENT_35_1D's user, and the national user filtering on it (the "Projet ENT" filter), alike.
    assert _dataset(client, "deploiement", "degre", ["etablissements", "etablissements_actifs"], PROJET_35) \
        == _dataset(client, "deploiement", "degre", ["etablissements", "etablissements_actifs"],
                    projet_filter="ENT_35_1D") == {"1D": (10, 7)}
