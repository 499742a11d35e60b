"""`dnma referentiel fetch` against a real local HTTP server standing in for data.education.gouv.fr
(tests/referentiel_exports/portal.py: the real extracts of 035 and 094, in the portal's format):
a good fetch loads what the files hold as its school year and keeps the other years; a truncated
download, a cut chunked one, a 500, a short count, a missing required column and a file of bad
UAIs each change nothing, with a one-line error and a non-zero exit code."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import portal
import pytest
from refexp_data import ANNUAIRE_35, EFFECTIFS_1D, EFFECTIFS_2D

from aggregator.migrate import migrate
from aggregator.referentiel_fetch import DATASETS, FetchError, FetchOptions, fetch
from dnma.settings import Settings
from dnma.uai import is_valid

ANNUAIRE, ECOLES, SECOND = (d.id for d in DATASETS)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Settings]]:
    tmp = tmp_path_factory.mktemp("fetch")
    settings = Settings(data_dir=tmp, clickhouse_dsn=f"chdb://{tmp / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    migrate(client, settings)
    yield client, settings
    client.close()


def _run(settings: Settings, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    import dnma.settings
    from cli.main import main

    monkeypatch.setattr(dnma.settings, "get_settings", lambda: settings)
    return main(["referentiel", "fetch", *argv])


def _snapshot(client: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of both referential tables, loaded_at included: 'nothing changed' is exact."""
    return {t: client.query(f"SELECT * FROM dnma.{t} ORDER BY ALL").result_rows
            for t in ("etablissements", "etablissements_annees")}


def test_good_fetch_loads_the_files_as_its_year_and_keeps_the_others(env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    client, settings = env
    with portal.serve() as p:
        assert _run(settings, monkeypatch, "--base-url", p.url, "--annee", "2025", "--departements", "35") == 0
        err = capsys.readouterr().err
        # progress per file (bytes, rows); the département went to the portal as a where clause
        assert f"{ANNUAIRE}: " in err and " bytes received" in err and " rows, " in err
        assert any('code_departement="035"' in r for r in map(_unquote, p.requests))
        assert _run(settings, monkeypatch, "--base-url", p.url, "--annee", "2026") == 0
    out = capsys.readouterr().out

    annuaire = portal.annuaire()
    uai_at = annuaire[0].index("Identifiant_de_l_etablissement")
    all_uais = {r[uai_at] for r in annuaire[1] if is_valid(r[uai_at])}
    uais_35 = {r["Identifiant_de_l_etablissement"] for r in _csv(ANNUAIRE_35)}
    years = dict(client.query("SELECT annee, uniqExact(uai) FROM dnma.etablissements_annees FINAL GROUP BY annee")
                 .result_rows)
    # 2025: Ille-et-Vilaine only; 2026: both départements; the 2025 year is still there
    assert years == {2025: len(uais_35), 2026: len(all_uais)}
    assert f"etablissements: {len(all_uais)}" in out and "annee: 2026" in out
    current = {r[0] for r in client.query("SELECT uai FROM dnma.etablissements").result_rows}
    assert current == all_uais  # the current referential is the latest year

    # pupil counts of the school year loaded (or the latest before it) from the effectifs files
    def latest(path: Path, uai: str, n: str, year: str, upto: int) -> dict[str, int]:
        best: dict[str, tuple[str, int]] = {}
        for row in _csv(path):
            if int(row[year][:4]) <= upto and (row[uai] not in best or row[year] >= best[row[uai]][0]):
                best[row[uai]] = (row[year], int(row[n] or 0))
        return {u: v for u, (_, v) in best.items() if v}

    eleves = dict(client.query("SELECT uai, eleves FROM dnma.etablissements_annees FINAL WHERE annee = 2026")
                  .result_rows)
    expected = {**latest(EFFECTIFS_1D, "Numéro de l'école", "Nombre total d'élèves", "Rentrée scolaire", 2026),
                **latest(EFFECTIFS_2D, "Numero_d_etablissement", "Nombre_d_eleves", "Annee_scolaire", 2026)}
    matched = {u: n for u, n in expected.items() if u in eleves}
    assert len(matched) > 500 and all(eleves[u] == n for u, n in matched.items())
    # the dictionary keyed by (year, UAI) answers for both years
    uai = sorted(uais_35)[0]
    got = client.query(f"SELECT dictGetOrDefault('dnma.etablissements_annees_dict', 'academie', (toUInt16(2025), "
                       f"'{uai}'), '?'), dictGetOrDefault('dnma.etablissements_annees_dict', 'academie', "
                       f"(toUInt16(2024), '{uai}'), '?')").result_rows[0]
    assert got == ("Rennes", "?")


def _unquote(path: str) -> str:
    import urllib.parse

    return urllib.parse.unquote_plus(path)


@pytest.mark.parametrize(
    ("dataset", "fault", "message"),
    [
        (ECOLES, "truncate", "download incomplete"),
        (SECOND, "chunked_cut", "download cut"),
        (ANNUAIRE, "http500", "HTTP 500"),
        (SECOND, "count", "the portal counts"),
    ],
)
def test_a_failed_download_changes_nothing(env, monkeypatch, capsys, dataset, fault, message) -> None:  # type: ignore[no-untyped-def]
    client, settings = env
    data = portal.datasets()
    data[dataset].fault = fault
    before = _snapshot(client)
    with portal.serve(data) as p:
        code = _run(settings, monkeypatch, "--base-url", p.url, "--annee", "2026")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert message in err[-1] and "nothing changed" in err[-1] and "Traceback" not in "\n".join(err)
    assert _snapshot(client) == before
    assert not list(Path(settings.data_dir).glob("referentiel-fetch-*"))  # the temporary files are gone


def test_a_file_without_a_required_column_is_refused(env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    client, settings = env
    data = portal.datasets()
    ds = data[SECOND]
    at = ds.header.index("Nombre_d_eleves")
    ds.header = ds.header[:at] + ds.header[at + 1:]
    ds.rows = [r[:at] + r[at + 1:] for r in ds.rows]
    before = _snapshot(client)
    with portal.serve(data) as p:
        assert _run(settings, monkeypatch, "--base-url", p.url, "--annee", "2026") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"dnma referentiel fetch: {SECOND}: required columns missing: Nombre_d_eleves; nothing changed"
    assert _snapshot(client) == before


def test_uai_check_letters(tmp_path: Path) -> None:
    """A few wrong check letters are left out and reported; a file mostly wrong is refused."""
    settings = Settings(data_dir=tmp_path)
    data = portal.datasets()
    ds = data[ANNUAIRE]
    at = ds.header.index("Identifiant_de_l_etablissement")

    def wrong(uai: str) -> str:  # the same number, another letter
        return uai[:7] + ("A" if uai[7] != "A" else "B")

    for row in ds.rows[:3]:
        row[at] = wrong(row[at])
    lines: list[str] = []
    with portal.serve(data) as p:
        result = fetch(settings, FetchOptions(annee=2026, base_url=p.url), tmp_path, lines.append)
        report = result.files[0]
        assert (report.rows, report.bad_uai, report.kept) == (len(ds.rows), 3, len(ds.rows) - 3)
        assert any("3 invalid UAIs left out" in line for line in lines)
        assert all(is_valid(r["Identifiant_de_l_etablissement"]) for r in _csv(report.path))

        for row in ds.rows[: len(ds.rows) * 2 // 3]:
            row[at] = wrong(row[at]) if is_valid(row[at]) else row[at]
        with pytest.raises(FetchError, match="UAIs are invalid"):
            fetch(settings, FetchOptions(annee=2026, base_url=p.url), tmp_path, lines.append)


def test_bad_options_are_one_line_errors(env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _, settings = env
    assert _run(settings, monkeypatch, "--base-url", "ftp://nowhere", "--annee", "2026") == 1
    assert _run(settings, monkeypatch, "--base-url", "http://127.0.0.1:9", "--departements", "3x5") == 1
    # a port nobody listens on: the portal cannot be reached
    assert _run(settings, monkeypatch, "--base-url", "http://127.0.0.1:9", "--annee", "2026") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "base URL" in err[0] and "département" in err[1] and "cannot reach" in err[2]
