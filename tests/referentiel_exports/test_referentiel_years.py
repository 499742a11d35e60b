"""The referential kept per school year: loading another year keeps the others, `etablissements`
stays the latest year's, and the exports of a week read the referential of that week's school
year, or the loaded year nearest to it (real chDB, the real extracts)."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import clickhouse_connect
import pytest
from refexp_data import ANNUAIRE_35, DEBUT, ECOLE_35, ECOLE_94, FIN, setup_database

from aggregator.exports import DATASETS, referential_version, write
from aggregator.periods import school_year
from aggregator.referentiel import load_files, loaded_years, nearest_year
from dnma import clock


def _export(client) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    write(client, DATASETS["fr-en-dnma-par-uai-profils"], DEBUT, FIN, buf)
    return {row["uai"]: row for row in csv.DictReader(io.StringIO(buf.getvalue()), delimiter=";")}


def _annuaire_renamed(tmp: Path, uai: str, commune: str) -> Path:
    """The 35 annuaire with one school's commune changed (a label that changed between years)."""
    with ANNUAIRE_35.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    at, com = rows[0].index("Identifiant_de_l_etablissement"), rows[0].index("Nom_commune")
    for row in rows[1:]:
        if row and row[at] == uai:
            row[com] = commune
    path = tmp / "annuaire-35-renamed.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)
    return path


def test_school_year_and_nearest_year() -> None:
    assert [school_year(date(2026, 7, 31)), school_year(date(2026, 8, 1)), school_year(date(2027, 1, 1))] == \
        [2025, 2026, 2026]
    assert nearest_year([2023, 2026], 2026) == 2026
    assert nearest_year([2023, 2026], 2024) == 2023
    assert nearest_year([2023, 2026], 2025) == 2026
    assert nearest_year([2024, 2026], 2025) == 2024  # a tie: the earlier
    assert nearest_year([], 2025) is None


def test_exports_read_the_referential_of_their_school_year(tmp_path: Path) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    try:
        settings = setup_database(client, tmp_path)  # the three files, as today's school year
        current = school_year(clock.today())
        week = school_year(DEBUT)  # 2023: the fixture's visits are in January 2024
        assert current > week and loaded_years(client, "dnma") == [current]

        # the week's year was never loaded: the nearest (today's) labels the rows
        before = _export(client)
        assert before[ECOLE_35]["commune"] == "Baulon" and before[ECOLE_94]["commune"] == "Fresnes"

        # the 2023 referential: 35 only, one commune renamed
        counts = load_files(client, settings, [_annuaire_renamed(tmp_path, ECOLE_35, "Baulon (2023)")],
                            replace=True, annee=week)
        assert counts["annee"] == week and loaded_years(client, "dnma") == [week, current]
        after = _export(client)
        assert after[ECOLE_35]["commune"] == "Baulon (2023)"
        assert after[ECOLE_94]["commune"] == ""  # not in 2023's referential: that year's, not a mix
        assert referential_version(client, settings, DEBUT)["school_year"] == f"{week}-{week + 1}"

        # today's year is untouched, and is still the current referential
        assert client.query(f"SELECT commune FROM dnma.etablissements_annees FINAL WHERE annee = {current} "
                            f"AND uai = '{ECOLE_35}'").result_rows == [("Baulon",)]
        assert client.query(f"SELECT commune FROM dnma.etablissements WHERE uai = '{ECOLE_35}'").result_rows \
            == [("Baulon",)]
        # reloading a year replaces that year only
        load_files(client, settings, [ANNUAIRE_35], replace=True, annee=week)
        assert _export(client)[ECOLE_35]["commune"] == "Baulon"
        assert loaded_years(client, "dnma") == [week, current]
    finally:
        client.close()


@pytest.mark.parametrize("raw", ["1999", "20266", "abcd"])
def test_cli_refuses_a_bad_year(raw: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["referentiel", "load", "--annee", raw, "x.csv"])
    assert exit_.value.code == 2 and "school year" in capsys.readouterr().err


def test_taux_de_visite_reads_the_pupils_of_its_school_year(tmp_path: Path) -> None:
    """The territories dataset's pupils per académie (Superset's "taux de visite") are those of the
    row's school year, or of the loaded year nearest to it: a year-on-year chart compares each
    year with its own pupil counts. Runs the dataset's rollup branch, its Jinja loop dropped."""
    import re

    from dnma_superset.dataset_sql import SQL

    from aggregator.migrate import migrate
    from dnma.settings import Settings

    branch = re.split(r"\{%- (?:if|elif|else)[^%]*%\}", SQL["visites_territoires"])[-1]
    sql = re.sub(r"\{%.*?%\}.*?\{% endfor %\}|\{%-? endif %\}", "", branch, flags=re.S)
    assert "{" not in sql and "visits_territoires_daily" in sql
    settings = Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    try:
        migrate(client, settings)
        client.command("INSERT INTO dnma.etablissements_annees (annee, uai, academie, eleves) VALUES "
                       "(2024, '0350002M', 'Rennes', 700), (2024, '0350122T', 'Rennes', 100), "
                       "(2026, '0350002M', 'Rennes', 900)")
        client.command("INSERT INTO dnma.visits_territoires_daily (day, academie, visites) VALUES "
                       "('2024-10-07', 'Rennes', 1), ('2025-10-06', 'Rennes', 1), ('2026-10-05', 'Rennes', 1)")
        got = client.query(f"SELECT annee_scolaire, eleves_academie FROM ({sql}) ORDER BY day").result_rows
        # 2025-2026 is not loaded: 2024 and 2026 are as near, the earlier wins
        assert got == [("2024-2025", 800), ("2025-2026", 800), ("2026-2027", 900)]
    finally:
        client.close()


def test_the_migration_keeps_the_referential_already_loaded(tmp_path: Path) -> None:
    """An install upgraded past m0011 keeps its referential: the rows of `etablissements` become
    the school year of their load (1 August starts one), and the exports still find them."""
    from aggregator.migrate import migrate
    from dnma.settings import Settings

    settings = Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    try:
        migrate(client, settings, until=10)
        client.command("INSERT INTO dnma.etablissements (uai, commune, loaded_at) VALUES "
                       "('0350122T', 'Baulon', '2025-07-31 23:00:00'), ('0940176F', 'Fresnes', '2025-08-01 00:00:00')")
        migrate(client, settings)
        rows = client.query("SELECT annee, uai, commune FROM dnma.etablissements_annees ORDER BY uai").result_rows
        assert rows == [(2024, "0350122T", "Baulon"), (2025, "0940176F", "Fresnes")]
    finally:
        client.close()
