"""The deployment census (dataset recensement, Déploiement dashboard) on embedded chDB: its maps'
classes, their legends' counts and the class changes in a year, against independent SQL counts and
the census's rule written apart, on a SYNTHETIC multi-académie referential made up for this test
(never shipped as data: the repo's real samples cover one département's schools only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from dnma_superset.dataset_sql import CENSUS_NO_YEAR_AGO

from aggregator.migrate import migrate
from dnma.indicators import CENSUS_CLASSES, CENSUS_COLOR_NAMES
from dnma.settings import Settings

from .test_chart_queries import CHARTS, chart_rows


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("census")
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}")
    c = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    migrate(c, settings)
    try:
        yield c
    finally:
        c.close()


# TODAY (2026-03-18) with N = 4: the school weeks of 23 Feb, 2, 9 and 16 March 2026.
WINDOW = ("2026-02-23", "2026-03-18")
YEAR_AGO = date(2025, 3, 17)  # the Monday of TODAY - 364 days (the same school week a year earlier)

# Synthetic: département -> (académie, région académique, ISO code, (écoles, active), (collèges, active)).
DEPARTEMENTS = {
    "Synth-01": ("Synth-Nord", "Synth-Région-A", "FR-S01", (10, 9), (2, 2)),   # 90 % exactly: massive
    "Synth-02": ("Synth-Nord", "Synth-Région-A", "FR-S02", (10, 10), (3, 0)),
    "Synth-03": ("Synth-Nord", "Synth-Région-A", "FR-S03", (4, 2), (1, 1)),    # 50 % exactly: partielle
    "Synth-04": ("Synth-Centre", "Synth-Région-B", "FR-S04", (5, 1), (4, 1)),  # 20 % exactly: 20–50 %
    "Synth-05": ("Synth-Centre", "Synth-Région-B", "FR-S05", (6, 1), (2, 1)),  # 1 in 6: < 20 %
    "Synth-06": ("Synth-Sud", "Synth-Région-C", "FR-S06", (3, 0), (5, 4)),
    "Synth-07": ("Synth-Sud", "Synth-Région-C", "FR-S07", (7, 3), (6, 1)),
}
# région académique -> (lycées, active), spread over its départements.
LYCEES = {"Synth-Région-A": (4, 4), "Synth-Région-B": (3, 1), "Synth-Région-C": (2, 0)}
REGION_ISO = {"Synth-Région-A": "FR-SA", "Synth-Région-B": "FR-SB", "Synth-Région-C": "FR-SC"}
NATURE = {"Écoles": 151, "Collèges": 340, "Lycées": 306}


def census_class(active: int, total: int) -> str:
    """spec/INDICATORS.md's classes, written apart from the SQL."""
    share = active / total
    return (CENSUS_CLASSES[0] if active == 0 else CENSUS_CLASSES[4] if share >= 0.9 else CENSUS_CLASSES[3]
            if share >= 0.5 else CENSUS_CLASSES[2] if share >= 0.2 else CENSUS_CLASSES[1])


def pupils(n: int) -> int:
    """The synthetic pupil count of the n-th establishment: unknown (0, as the referential stores a
    missing effectif) for one in five, else 100 to 1,392 (sums past a thousand)."""
    return 0 if n % 5 == 0 else 100 + (n * 37) % 1293


def _load(client: Any) -> None:
    ref: list[list[Any]] = []
    visits: list[list[Any]] = []
    n = 0

    def add(niveau: str, dep: str, count: int, active: int) -> None:
        nonlocal n
        academie, region, iso, *_ = DEPARTEMENTS[dep]
        for i in range(count):
            n += 1
            uai = f"9{n:06d}S"
            ref.append([uai, f"Synth {niveau} {n}", "1D" if niveau == "Écoles" else "2D", NATURE[niveau], "PU",
                        dep, iso, academie, region, REGION_ISO[region], pupils(n)])
            if i < active:
                visits.append([date(2026, 3, 2 + 7 * (i % 3)), uai, 1, "ENT_SYNTH", 2])

    for dep, (_, _, _, ecoles, colleges) in DEPARTEMENTS.items():
        add("Écoles", dep, *ecoles)
        add("Collèges", dep, *colleges)
    for region, (count, active) in LYCEES.items():
        deps = [d for d, v in DEPARTEMENTS.items() if v[1] == region]
        for i in range(count):
            add("Lycées", deps[i % len(deps)], 1, 1 if i < active else 0)
    # Noise the census leaves out: an active private school (Synth-06 stays without a project), an
    # active public EREA (nature 370: none of the three levels), a visit too old for the 4 school
    # weeks, a UAI outside the referential.
    ref.append(["9900001P", "Synth privée", "1D", 151, "PR", "Synth-06", "FR-S06", "Synth-Sud", "Synth-Région-C",
                "FR-SC", 4000])
    ref.append(["9900002E", "Synth EREA", "2D", 370, "PU", "Synth-05", "FR-S05", "Synth-Centre", "Synth-Région-B",
                "FR-SB", 3000])
    visits += [[date(2026, 3, 10), "9900001P", 1, "ENT_SYNTH", 5], [date(2026, 3, 10), "9900002E", 1, "ENT_SYNTH", 5],
               [date(2026, 2, 10), ref[next(i for i, r in enumerate(ref) if r[5] == "Synth-06")][0], 1, "ENT_SYNTH", 3],
               [date(2026, 3, 10), "9999999Z", 1, "ENT_SYNTH", 1]]
    client.insert("dnma.etablissements", ref, column_names=[
        "uai", "nom", "degre", "code_nature", "secteur", "departement", "departement_iso", "academie", "region",
        "region_iso", "eleves"])
    client.insert("dnma.visits_daily", visits, column_names=["day", "uai", "site_id", "projet", "visites"])


def independent_counts(client: Any, nature: tuple[int, int], territory: str, since: str, until: str
                       ) -> dict[str, tuple[int, int]]:
    """(establishments, active) per territory: public ones of the natures, active = a visit in the window."""
    rows = client.query(
        f"SELECT {territory}, count(), countIf(uai IN (SELECT uai FROM dnma.visits_daily "
        f"WHERE day BETWEEN '{since}' AND '{until}')) FROM dnma.etablissements FINAL "
        f"WHERE secteur = 'PU' AND code_nature BETWEEN {nature[0]} AND {nature[1]} GROUP BY 1").result_rows
    return {t: (int(n), int(a)) for t, n, a in rows}


LEVELS = {  # niveau -> (natures, territory column, map, legend)
    "Écoles": ((100, 199), "departement_iso", "dep_recensement_ecoles", "dep_legende_ecoles"),
    "Collèges": ((340, 359), "departement_iso", "dep_recensement_colleges", "dep_legende_colleges"),
    "Lycées": ((300, 339), "region_iso", "dep_recensement_lycees", "dep_legende_lycees"),
}


def test_census_maps_legends_and_changes_match_independent_counts(client: Any) -> None:
    _load(client)
    expected_now: dict[str, dict[str, str]] = {}
    for niveau, (nature, territory, map_key, legend_key) in LEVELS.items():
        counts = independent_counts(client, nature, territory, *WINDOW)
        classes = {t: census_class(a, n) for t, (n, a) in counts.items()}
        expected_now[niveau] = classes
        # The map: each territory's class index; the bounds rows (codes no map draws) hold 0 to 4.
        drawn = dict(chart_rows(client, CHARTS[map_key]))
        assert {t: CENSUS_CLASSES[i] for t, i in drawn.items() if not t.startswith("ZZ-")} == classes, niveau
        assert {t: i for t, i in drawn.items() if t.startswith("ZZ-")} == {f"ZZ-{i}": i for i in range(5)}
        # The legend: the five classes, their colour name and the number of territories in each.
        legend = {label: (colour, count) for label, colour, count in chart_rows(client, CHARTS[legend_key])}
        assert legend == {label: (CENSUS_COLOR_NAMES[i], sum(c == label for c in classes.values()))
                          for i, label in enumerate(CENSUS_CLASSES)}, niveau
    # The synthetic referential reaches every class of the écoles, with its edges (90, 50, 20 %).
    assert set(expected_now["Écoles"].values()) == set(CENSUS_CLASSES)
    assert expected_now["Écoles"]["FR-S01"] == CENSUS_CLASSES[4] and expected_now["Écoles"]["FR-S06"] == CENSUS_CLASSES[0]
    assert sorted(expected_now["Lycées"].values()) == sorted([CENSUS_CLASSES[4], CENSUS_CLASSES[2], CENSUS_CLASSES[0]])

    # No visit the same week a year earlier: the changes chart says so (it is never empty).
    changes = chart_rows(client, CHARTS["dep_evolution"])
    assert changes and all(e.startswith(CENSUS_NO_YEAR_AGO) and "semaine du 17/03/2025" in e for _, e, _ in changes)
    assert {(niveau, count) for niveau, _, count in changes} == {(v, len(c)) for v, c in expected_now.items()}

    # A year earlier: Synth-06's écoles all active (now none), Synth-05's none (now < 20 %).
    ecoles = client.query("SELECT uai, departement FROM dnma.etablissements FINAL WHERE code_nature = 151 "
                          "AND secteur = 'PU' AND departement IN ('Synth-05', 'Synth-06', 'Synth-02')").result_rows
    client.insert("dnma.visits_daily", [[YEAR_AGO, uai, 1, "ENT_SYNTH", 1] for uai, dep in ecoles
                                        if dep in ("Synth-06", "Synth-02")],
                  column_names=["day", "uai", "site_id", "projet", "visites"])
    expected: dict[tuple[str, str], int] = {}
    for niveau, (nature, territory, _, _) in LEVELS.items():
        before = {t: census_class(a, n) for t, (n, a) in independent_counts(
            client, nature, territory, "2025-02-24", "2025-03-19").items()}
        for t, now in expected_now[niveau].items():
            was = before[t]
            move = (f"Inchangée : « {now} »" if was == now else
                    f"{'Progression' if CENSUS_CLASSES.index(now) > CENSUS_CLASSES.index(was) else 'Recul'}"
                    f" de « {was} » à « {now} »")
            expected[(niveau, move)] = expected.get((niveau, move), 0) + 1
    got = {(niveau, e): count for niveau, e, count in chart_rows(client, CHARTS["dep_evolution"])}
    assert got == expected
    assert got[("Écoles", f"Recul de « {CENSUS_CLASSES[4]} » à « {CENSUS_CLASSES[0]} »")] == 1  # Synth-06
    assert got[("Écoles", f"Progression de « {CENSUS_CLASSES[0]} » à « {CENSUS_CLASSES[1]} »")] == 1  # Synth-05


def test_census_rows_of_a_perimeter_user(client: Any) -> None:
    """Row-level security on the census (the clauses provision writes): a département user sees the
    territories holding their département (their région's lycées as the census counts them) and
    the bounds rows, so their map keeps the palette and their legends the five classes."""
    from dnma_superset.dataset_sql import SQL
    from dnma_superset.datasets import DATASETS
    from dnma_superset.provision import RolePerimeter, rls_clause

    from .test_chart_queries import render

    if not client.query("SELECT count() FROM dnma.etablissements WHERE departement = 'Synth-05'").result_rows[0][0]:
        _load(client)
    clause = rls_clause(DATASETS["recensement"], RolePerimeter("dep_05", "departement", "Synth-05"))
    rows = client.query(f"SELECT niveau, territoire, borne FROM ({render(SQL['recensement'])}) WHERE {clause}"
                        ).result_rows
    assert {(n, t) for n, t, b in rows if not b} == {
        ("Écoles", "Synth-05"), ("Collèges", "Synth-05"), ("Lycées", "Synth-Région-B")}
    assert sum(b for *_, b in rows) == 15  # five classes × three levels


def _fr(n: int) -> str:
    return f"{n:,}".replace(",", "\u00a0")


def test_census_headline_tiles_match_independent_counts(client: Any) -> None:
    """The headline tiles (share of public écoles, collèges, lycées with an active ENT; share of
    their pupils) and the counts under them equal independent SQL counts over the referential; the
    establishments without a pupil count are named, left out of the pupil share, never estimated."""
    if not client.query("SELECT count() FROM dnma.etablissements WHERE departement = 'Synth-05'").result_rows[0][0]:
        _load(client)
    since, until = WINDOW
    active = f"uai IN (SELECT uai FROM dnma.visits_daily WHERE day BETWEEN '{since}' AND '{until}')"
    expected = {}
    for niveau, (nature, *_) in LEVELS.items():
        n, a, pupils_all, pupils_active, unknown, unknown_active = client.query(
            f"SELECT count(), countIf({active}), sumIf(eleves, eleves > 0), sumIf(eleves, eleves > 0 AND {active}),"
            f" countIf(eleves = 0), countIf(eleves = 0 AND {active}) FROM dnma.etablissements FINAL"
            f" WHERE secteur = 'PU' AND code_nature BETWEEN {nature[0]} AND {nature[1]}").result_rows[0]
        expected[niveau] = (int(n), int(a), int(pupils_all), int(pupils_active), int(unknown), int(unknown_active))
    # The synthetic referential has unknown pupil counts, active or not, and sums past a thousand.
    assert all(e[4] > 0 for e in expected.values()) and any(e[5] > 0 for e in expected.values())
    assert expected["Écoles"][2] > 1000

    for prefix in ("dep", "nat"):
        for key, niveau in (("ecoles", "Écoles"), ("colleges", "Collèges"), ("lycees", "Lycées")):
            n, a, *_ = expected[niveau]
            [(share,)] = chart_rows(client, CHARTS[f"{prefix}_part_{key}"])
            assert share == pytest.approx(a / n), (prefix, niveau)
        [(pupil_share,)] = chart_rows(client, CHARTS[f"{prefix}_part_eleves"])
        assert pupil_share == pytest.approx(sum(e[3] for e in expected.values()) / sum(e[2] for e in expected.values()))

    rows = {r[0]: r[1:] for r in chart_rows(client, CHARTS["dep_chiffres_recensement"])}
    assert set(rows) == set(LEVELS)
    for niveau, (n, a, p, pa, unknown, unknown_active) in expected.items():
        counts, share, pupil_counts, pupil_share, note = rows[niveau]
        assert counts == f"{_fr(a)} / {_fr(n)} {niveau.lower()}"
        assert share == pytest.approx(a / n) and pupil_share == pytest.approx(pa / p)
        assert pupil_counts == f"{_fr(pa)} / {_fr(p)} élèves"
        assert note == (f"Effectifs inconnus pour {unknown} établissement{'s' if unknown > 1 else ''} (dont "
                        f"{unknown_active} actif{'s' if unknown_active > 1 else ''}) : non comptés dans la part des "
                        "élèves"), niveau
    # Row-level security (the recensement dataset's, provision's clause): a département user's tile
    # is their département's écoles.
    from dnma_superset.dataset_sql import SQL
    from dnma_superset.datasets import DATASETS
    from dnma_superset.provision import RolePerimeter, rls_clause

    from .test_chart_queries import metric_sql, render
    clause = rls_clause(DATASETS["recensement"], RolePerimeter("dep_05", "departement", "Synth-05"))
    [(share,)] = client.query(f"SELECT {metric_sql('recensement', 'taux_etablissements_actifs')} FROM "
                              f"({render(SQL['recensement'])}) WHERE niveau = 'Écoles' AND borne = 0 AND {clause}"
                              ).result_rows
    n, a = independent_counts(client, LEVELS["Écoles"][0], "departement", since, until)["Synth-05"]
    assert (n, a) == DEPARTEMENTS["Synth-05"][3] and share == pytest.approx(a / n)
