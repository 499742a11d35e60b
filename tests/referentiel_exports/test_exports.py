"""The open-data exports on real chDB: exact columns, golden files, and the measures recomputed
independently from the hand-made visits (regenerate goldens: regen_golden.py)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import clickhouse_connect
import pytest
from hypothesis import given
from hypothesis import strategies as st
from refexp_data import DEBUT, FIN, GOLDEN_DIR, INCONNU, export_texts, setup_database, visits

from aggregator.exports import DATASETS, SHARED_COLUMNS, format_duree
from dnma.vocab import BROWSERS, DEVICES, OSES, SERVICES

EXPECTED_WIDTH = {
    "fr-en-dnma-par-uai-profils": 15,
    "fr-en-dnma-par-uai-services": 75,
    "fr-en-dnma-par-uai-profils-appareils": 48,
    "fr-en-dnma-par-uai-appareils": 63,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("exports")
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp / 'ch'}")
    setup_database(client, tmp)
    texts = export_texts(client)
    client.close()
    return texts


def _parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def test_column_counts_and_order() -> None:
    assert set(DATASETS) == set(EXPECTED_WIDTH)
    for name, width in EXPECTED_WIDTH.items():
        cols = DATASETS[name].columns
        assert len(cols) == 10 + width and len(set(cols)) == len(cols)
        assert tuple(cols[:10]) == SHARED_COLUMNS
        assert cols[10:13] == [
            f"{m}_{cols[10].split('_', 1)[1]}" for m in ("visites", "utilisateurs", "duree")
        ]
    services = DATASETS["fr-en-dnma-par-uai-services"].columns
    assert services[10::3] == [f"visites_{s}" for s in SERVICES]
    appareils = DATASETS["fr-en-dnma-par-uai-appareils"].columns
    assert appareils[10::3] == [f"visites_{x}" for x in (*DEVICES, *OSES, *BROWSERS)]
    assert DATASETS["fr-en-dnma-par-uai-profils-appareils"].columns[10] == "visites_eleve_ordinateur"
    assert DATASETS["fr-en-dnma-par-uai-profils"].columns[10:13] == [
        "visites_globales",
        "utilisateurs_globales",
        "duree_globales",
    ]


def test_golden_files(exported: dict[str, str]) -> None:
    for name, text in exported.items():
        golden = (GOLDEN_DIR / f"{name}.csv").read_text(encoding="utf-8")
        assert text == golden, f"{name} differs from its golden file (regen_golden.py, review the diff)"


def test_every_row_is_complete(exported: dict[str, str]) -> None:
    for name, text in exported.items():
        header, rows = _parse(text)
        assert header == DATASETS[name].columns
        for row in rows:
            for col in header[10:]:
                if col.startswith("duree_"):
                    h, m, s = row[col].split(":")
                    assert h.isdigit() and len(m) == len(s) == 2
                else:
                    assert row[col].isdigit(), (name, col, row[col])


def _expected(uai: str, monday, keep) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """visites, utilisateurs, seconds recomputed in Python from the hand-made visits."""
    chosen = [
        v
        for v in visits()
        if v["uai"] == uai
        and DEBUT <= v["day"] <= FIN
        and v["day"] - timedelta(days=v["day"].weekday()) == monday
        and keep(v)
    ]
    users = {("u", v["user_hash"]) if v["user_hash"] else ("v", v["visitor_id"]) for v in chosen}
    return len(chosen), len(users), sum(v["duration"] for v in chosen)


def _seconds(duree: str) -> int:
    h, m, s = (int(x) for x in duree.split(":"))
    return h * 3600 + m * 60 + s


def test_measures_match_the_visits(exported: dict[str, str]) -> None:
    _, profils = _parse(exported["fr-en-dnma-par-uai-profils"])
    _, services = _parse(exported["fr-en-dnma-par-uai-services"])
    _, appareils = _parse(exported["fr-en-dnma-par-uai-appareils"])
    keys = {
        (v["uai"], v["day"] - timedelta(days=v["day"].weekday()))
        for v in visits()
        if v["uai"] and DEBUT <= v["day"] <= FIN
    }
    assert {(r["uai"], r["debutsemaine"]) for r in profils} == {(u, m.isoformat()) for u, m in keys}
    assert [(r["debutsemaine"], r["uai"]) for r in profils] == sorted(
        (r["debutsemaine"], r["uai"]) for r in profils
    )
    checks = [
        (profils, "globales", lambda v: True),
        (profils, "eleve", lambda v: v["profil"] == "ELEVE"),
        (profils, "enseignant", lambda v: v["profil"] == "ENSEIGNANT"),
        (services, "notes", lambda v: "notes" in v["services"]),
        (services, "cahier_textes", lambda v: "cahier_textes" in v["services"]),
        (appareils, "smartphone", lambda v: v["device"] == "smartphone"),
        (appareils, "safari", lambda v: v["browser"] == "safari"),
    ]
    for rows, suffix, keep in checks:
        for row in rows:
            monday = next(m for u, m in keys if u == row["uai"] and m.isoformat() == row["debutsemaine"])
            got = (
                int(row[f"visites_{suffix}"]),
                int(row[f"utilisateurs_{suffix}"]),
                _seconds(row[f"duree_{suffix}"]),
            )
            assert got == _expected(row["uai"], monday, keep), (suffix, row["uai"], row["debutsemaine"])
    # the school of the fixture really exercises uid dedup, visitor-id fallback and > 24 h
    first = next(r for r in profils if r["uai"] == "0350122T" and r["debutsemaine"] == DEBUT.isoformat())
    assert int(first["visites_globales"]) > int(first["utilisateurs_globales"])
    assert _seconds(first["duree_globales"]) > 24 * 3600
    # unknown UAI: a row, empty shared columns
    inconnu = next(r for r in profils if r["uai"] == INCONNU)
    assert all(inconnu[c] == "" for c in SHARED_COLUMNS[2:])
    corse = next(r for r in profils if r["uai"] == "6200011T")
    assert (corse["academie"], corse["departement"], corse["secteur"]) == ("Corse", "Corse-du-Sud", "PU")


@given(st.integers(min_value=0, max_value=10**7))
def test_format_duree_roundtrip(seconds: int) -> None:
    text = format_duree(seconds)
    assert _seconds(text) == seconds
    assert text.split(":")[0] == str(seconds // 3600)


def test_cli_export_writes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dnma.settings
    from cli.main import main

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    settings = setup_database(client, tmp_path)
    monkeypatch.setattr(dnma.settings, "get_settings", lambda: settings)
    out = tmp_path / "services.csv"
    argv = ["export", "fr-en-dnma-par-uai-services", "--from", DEBUT.isoformat(), "--to", FIN.isoformat()]
    assert main([*argv, "-o", str(out)]) == 0
    header, rows = _parse(out.read_text(encoding="utf-8"))
    assert len(header) == 85 and rows
    assert out.read_text(encoding="utf-8") == export_texts(client)["fr-en-dnma-par-uai-services"]
    client.close()
