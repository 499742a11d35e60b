"""The referential: file-kind detection and parsing of the real open data, ISO codes, and the
load into real chDB (merge, pupil counts, idempotent reload, dictionary, CLI)."""

from __future__ import annotations

import csv
from pathlib import Path

import clickhouse_connect
import pytest
from hypothesis import given
from hypothesis import strategies as st
from refexp_data import (
    ALL_FILES,
    ANNUAIRE_35,
    ANNUAIRE_94,
    COLLEGES,
    EFFECTIFS_1D,
    EFFECTIFS_2D,
)

from aggregator.geo_codes import departement_code, departement_iso, region_iso
from aggregator.migrate import renderer
from aggregator.migrations import m0002_etablissements, m0011_etablissements_annees
from aggregator.referentiel import COLUMN_NAMES, Kind, degre, detect_kind, file_kind, load_files, read_file
from dnma.settings import Settings


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


# --- reading, no ClickHouse --------------------------------------------------------------


def test_file_kinds_from_headers() -> None:
    kinds = {path.name: file_kind(path) for path in ALL_FILES}
    assert kinds == {
        ANNUAIRE_35.name: Kind.ANNUAIRE_2023,
        ANNUAIRE_94.name: Kind.ANNUAIRE_2026,
        COLLEGES.name: Kind.COLLEGES,
        EFFECTIFS_1D.name: Kind.EFFECTIFS_1D,
        EFFECTIFS_2D.name: Kind.EFFECTIFS_2D,
    }
    with pytest.raises(ValueError):
        detect_kind(["foo", "bar"])


def test_both_annuaire_schemas_read_every_row() -> None:
    kind35, rows35 = read_file(ANNUAIRE_35)
    kind94, rows94 = read_file(ANNUAIRE_94)
    rows35_l, rows94_l = list(rows35), list(rows94)
    assert (kind35, len(rows35_l)) == (Kind.ANNUAIRE_2023, 996)
    assert (kind94, len(rows94_l)) == (Kind.ANNUAIRE_2026, 613)
    doisneau = next(r for r in rows94_l if r["uai"] == "0940176F")
    assert doisneau["degre"] == "1D" and doisneau["secteur"] == "PU"
    assert (doisneau["departement_code"], doisneau["departement_iso"], doisneau["region_iso"]) == (
        "094",
        "FR-94",
        "FR-IDF",
    )
    assert doisneau["academie"] == "Créteil" and doisneau["eleves"] == 0  # 2026 schema: no pupil count
    assert doisneau["circonscription"].startswith("Circonscription")
    lucioles = next(r for r in rows35_l if r["uai"] == "0350122T")
    assert lucioles["eleves"] == 143 and lucioles["region_iso"] == "FR-BRE"
    assert abs(lucioles["latitude"] - 47.986) < 0.01 and abs(lucioles["longitude"] + 1.929) < 0.01


def test_degre_from_the_real_annuaire() -> None:
    """Every row: 1D iff nature 1xx, 2D iff 3xx; écoles are 1D, collèges and lycées 2D."""
    raw = {r["Identifiant_de_l_etablissement"]: r for r in _csv(ANNUAIRE_35)}
    _, rows = read_file(ANNUAIRE_35)
    seen = set()
    for row in rows:
        nature = int(raw[row["uai"]]["code_nature"] or 0)
        expected = "1D" if nature // 100 == 1 else "2D" if nature // 100 == 3 else ""
        assert row["degre"] == expected
        seen.add((row["type_etablissement"], row["degre"]))
    assert {("Ecole", "1D"), ("Collège", "2D"), ("Lycée", "2D")} <= seen
    assert ("Ecole", "2D") not in seen and ("Collège", "1D") not in seen


@given(st.integers(min_value=0, max_value=999))
def test_degre_property(n: int) -> None:
    assert (degre(n) == "1D") == (100 <= n <= 199)
    assert (degre(n) == "2D") == (300 <= n <= 399)


def test_colleges_corsica_and_overseas_iso_codes() -> None:
    kind, rows = read_file(COLLEGES)
    by_dep: dict[str, set[tuple[str, str]]] = {}
    count = 0
    for row in rows:
        count += 1
        by_dep.setdefault(row["departement_code"], set()).add((row["departement_iso"], row["region_iso"]))
        assert row["degre"] == "2D"
    assert kind is Kind.COLLEGES and count == len(_csv(COLLEGES))
    assert by_dep["2A"] == {("FR-2A", "FR-COR")} and by_dep["2B"] == {("FR-2B", "FR-COR")}
    assert "02A" not in by_dep
    for dep, iso in {"971": "FR-GP", "972": "FR-MQ", "973": "FR-GF", "974": "FR-RE", "976": "FR-YT"}.items():
        assert by_dep[dep] == {(iso, iso)}
    assert by_dep["035"] == {("FR-35", "FR-BRE")}
    # every metropolitan département and région got a code
    assert all(iso and reg for dep, pairs in by_dep.items() for iso, reg in pairs)


@given(st.integers(min_value=1, max_value=95).filter(lambda n: n != 20))
def test_departement_iso_property(n: int) -> None:
    assert departement_iso(f"{n:03d}") == f"FR-{n:02d}"
    assert departement_iso(str(n)) == f"FR-{n:02d}"  # a dropped leading zero is tolerated
    assert departement_code(str(n)) == f"{n:03d}"


def test_region_iso_for_collectivites_uses_the_departement() -> None:
    assert region_iso("00", "988") == "FR-NC"
    assert region_iso("53") == "FR-BRE" and region_iso("4") == "FR-RE"
    assert region_iso("99") == ""


# --- loading into real chDB ----------------------------------------------------------------


@pytest.fixture()
def ch(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    r = renderer(settings)
    client.command(r.create_database())
    for stmt in [*m0002_etablissements.up(r), *m0011_etablissements_annees.up(r)]:
        client.command(stmt)
    yield client, settings
    client.close()


def _table(client) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    cols = [c for c in COLUMN_NAMES if c != "loaded_at"]
    rows = client.query(f"SELECT {', '.join(cols)} FROM dnma.etablissements").result_rows
    return {row[0]: tuple(row) for row in rows}


def _latest(path: Path, uai_col: str, eleves_col: str, annee_col: str) -> dict[str, int]:
    best: dict[str, tuple[str, int]] = {}
    for row in _csv(path):
        if row[uai_col] not in best or row[annee_col] >= best[row[uai_col]][0]:
            best[row[uai_col]] = (row[annee_col], int(row[eleves_col] or 0))
    return {uai: n for uai, (_, n) in best.items()}


def test_load_merges_reloads_without_duplicates(ch) -> None:  # type: ignore[no-untyped-def]
    client, settings = ch
    counts = load_files(client, settings, ALL_FILES)
    assert counts["annuaire_2023"] == 996 and counts["annuaire_2026"] == 613
    assert counts["colleges"] == len(_csv(COLLEGES))
    first = _table(client)
    n, distinct = client.query("SELECT count(), uniqExact(uai) FROM dnma.etablissements").result_rows[0]
    assert n == distinct == counts["etablissements"] == len(first)
    # every annuaire UAI is there, collèges from outside the two annuaires too
    uais_35 = {r["Identifiant_de_l_etablissement"] for r in _csv(ANNUAIRE_35)}
    uais_94 = {r["Identifiant_de_l_etablissement"] for r in _csv(ANNUAIRE_94)}
    assert uais_35 | uais_94 <= set(first)
    assert first["6200011T"][COLUMN_NAMES.index("departement_iso")] == "FR-2A"
    assert first["0350122T"][COLUMN_NAMES.index("source")] == "annuaire_2023"

    # pupil counts: the latest school year wins over the annuaire's Nombre_d_eleves
    eleves = COLUMN_NAMES.index("eleves")
    latest_2d = _latest(EFFECTIFS_2D, "Numero_d_etablissement", "Nombre_d_eleves", "Annee_scolaire")
    latest_1d = _latest(EFFECTIFS_1D, "Numéro de l'école", "Nombre total d'élèves", "Rentrée scolaire")
    checked = 0
    for uai, expected in [*latest_2d.items(), *latest_1d.items()]:
        if uai in first and expected:
            assert first[uai][eleves] == expected, uai
            checked += 1
    assert checked > 500

    # reload, files in another order: same table, no duplicate
    counts_again = load_files(client, settings, list(reversed(ALL_FILES)))
    assert counts_again == counts
    assert _table(client) == first
    assert client.query("SELECT count() FROM dnma.etablissements").result_rows[0][0] == len(first)
    assert client.query("SELECT count() FROM dnma.etablissements_stage").result_rows[0][0] == 0

    # the dictionary is reloaded and answers for other SQL
    got = client.query(
        "SELECT dictGetOrDefault('dnma.etablissements_dict', 'academie', tuple('9740042C'), ''),"
        " dictGetOrDefault('dnma.etablissements_dict', 'eleves', tuple('0350002M'), toUInt32(0)),"
        " dictGetOrDefault('dnma.etablissements_dict', 'academie', tuple('0949999H'), '?')"
    ).result_rows[0]
    assert got == (first["9740042C"][COLUMN_NAMES.index("academie")], latest_2d["0350002M"], "?")
    assert got[0] == "La Réunion"


def test_pupil_file_alone_completes_and_replace_starts_over(ch) -> None:  # type: ignore[no-untyped-def]
    client, settings = ch
    load_files(client, settings, [ANNUAIRE_35])
    before = _table(client)
    load_files(client, settings, [EFFECTIFS_2D])
    after = _table(client)
    assert set(after) == set(before)  # pupil counts add no establishment
    eleves = COLUMN_NAMES.index("eleves")
    changed = [uai for uai in after if after[uai][eleves] != before[uai][eleves]]
    assert changed and all(after[u][:eleves] == before[u][:eleves] for u in changed)

    counts = load_files(client, settings, [ANNUAIRE_94], replace=True)
    assert counts == {"annuaire_2026": 613, "etablissements": 613, "annee": counts["annee"]}
    assert set(_table(client)) == {r["Identifiant_de_l_etablissement"] for r in _csv(ANNUAIRE_94)}


def test_cli_referentiel_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import dnma.settings
    from cli.main import main

    settings = Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    monkeypatch.setattr(dnma.settings, "get_settings", lambda: settings)
    assert main(["referentiel", "load", str(ANNUAIRE_94), str(EFFECTIFS_1D)]) == 0
    out = capsys.readouterr().out
    assert "annuaire_2026: 613" in out and "etablissements: 613" in out
    assert main(["referentiel", "load", str(tmp_path / "absent.csv")]) == 2
