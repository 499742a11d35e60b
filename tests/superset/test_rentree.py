"""Rentrée N vs N−1 (spec/INDICATORS.md; Vue nationale, dataset rentree): school week k of a year
against week k of the year before, counted from each year's rentrée (29 August 2022, 4 September
2023), not by calendar date. The tiles' changes against independent SQL on known rollup rows, on a
January day and on 1 August (the school year not begun: the last one is shown); the demo's N−1 days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from dnma_superset.dataset_sql import RENTREE_YEAR, SQL

from aggregator.migrate import migrate
from cli.demo import year_ago_days
from dnma.indicators import (
    reference_school_year,
    reference_school_year_sql,
    same_school_week_year_ago,
    school_week_number,
    school_year_weeks,
    school_year_weeks_sql,
)
from dnma.settings import Settings

from .test_chart_queries import CHARTS, chart_rows, metric_sql, render

JANUARY = date(2024, 1, 18)  # a Thursday: the last complete school week is that of 8 January 2024
AUGUST = date(2024, 8, 1)  # 2024-2025 has not begun: the default is 2023-2024, its last week


def test_week_k_maps_to_week_k_across_rentree_dates() -> None:
    # Counted by hand from the rentrées (29/08/2022, 04/09/2023), Toussaint and Christmas off.
    assert school_week_number(date(2023, 9, 6)) == (2023, 1)
    assert same_school_week_year_ago(date(2023, 9, 6)) == date(2022, 8, 29)  # not 364 days back (5 Sep)
    assert school_week_number(date(2024, 1, 8)) == (2023, 15)
    assert same_school_week_year_ago(date(2024, 1, 10)) == date(2023, 1, 2)  # 364 days back: 9 January
    assert same_school_week_year_ago(date(2024, 7, 1)) == date(2023, 6, 26)  # the last week of 2023-2024
    assert same_school_week_year_ago(date(2023, 10, 25)) is None  # Toussaint
    assert same_school_week_year_ago(date(2023, 8, 1)) is None  # summer
    # 2026 (rentrée 31 August) against 2025 (1 September): week k against week k, whatever the dates.
    for k, monday in enumerate(school_year_weeks(2026), start=1):
        assert school_week_number(monday + timedelta(days=3)) == (2026, k)
        past = same_school_week_year_ago(monday)
        assert past is None or school_week_number(past) == (2025, k)
    assert reference_school_year(AUGUST) == 2023 and reference_school_year(JANUARY) == 2023
    assert reference_school_year(date(2023, 9, 6)) == 2022  # the rentrée's own week is not complete
    assert reference_school_year(date(2023, 9, 11)) == 2023


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("rentree")
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}")
    c = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    migrate(c, settings)
    try:
        yield c
    finally:
        c.close()


def test_school_weeks_sql_equals_python(client: Any) -> None:
    for year in range(2019, 2031):
        weeks = client.query(f"SELECT {school_year_weeks_sql(str(year))}").result_rows[0][0]
        assert list(weeks) == school_year_weeks(year), year
    for day in (JANUARY, AUGUST, date(2023, 9, 6), date(2023, 9, 11), date(2027, 7, 31)):
        sql = reference_school_year_sql(f"toDate('{day.isoformat()}')")
        assert client.query(f"SELECT {sql}").result_rows[0][0] == reference_school_year(day), day


def _visits(year: int, k: int) -> int:
    return 100 * k + (7 if year == 2023 else 3)


def _users(year: int, k: int) -> list[int]:
    return list(range(1, (20 if year == 2023 else 10) + k + 1))


def _load(client: Any) -> None:
    """One rollup row on the Tuesday of each school week of 2022-2023 and 2023-2024, users 1..n as
    groupBitmap states; noise the comparison leaves out: a Toussaint week, a day of 2021-2022."""
    rows = [(m + timedelta(days=1), _visits(y, k), _users(y, k))
            for y in (2022, 2023) for k, m in enumerate(school_year_weeks(y), start=1)]
    rows += [(date(2023, 10, 24), 5000, list(range(1, 500))), (date(2022, 6, 14), 5000, list(range(1, 500)))]
    values = ", ".join(f"('{d.isoformat()}', {v}, {u})" for d, v, u in rows)
    client.command("INSERT INTO dnma.visits_national_daily (day, degre, profil, device, visites, utilisateurs) "
                   f"SELECT d, '1D', 'ELEVE', 'desktop', v, groupBitmapState(toUInt32(arrayJoin(u))) "
                   f"FROM (SELECT toDate(c1) AS d, toUInt64(c2) AS v, c3 AS u FROM VALUES({values})) GROUP BY d, v")


def year_rendered(year: int | None = None) -> str:
    """The dataset's SQL with N from the "année scolaire" filter (`year`) or the default one: the
    Jinja test renderer reads no if nested in another (the tier chain's)."""
    default = RENTREE_YEAR.split("{% else %}")[1].split("{% endif %}")[0]
    return SQL["rentree"].replace(RENTREE_YEAR, f"toUInt16({year})" if year else default)


def rentree_sql(today: date, year: int | None = None) -> str:
    return render(year_rendered(year), today)


def _tile(client: Any, metric: str, today: date) -> float:
    return float(client.query(f"SELECT {metric_sql('rentree', metric)} FROM ({rentree_sql(today)})")
                 .result_rows[0][0])


def _independent(client: Any, week_n: str, week_n1: str) -> tuple[float, float]:
    """The changes, from the rollup table and two Mondays counted by hand (not the dataset's SQL)."""
    v_n, v_n1, u_n, u_n1 = client.query(
        f"SELECT sumIf(visites, toMonday(day) = '{week_n}'), sumIf(visites, toMonday(day) = '{week_n1}'),"
        f" groupBitmapMergeIf(utilisateurs, toMonday(day) = '{week_n}'),"
        f" groupBitmapMergeIf(utilisateurs, toMonday(day) = '{week_n1}') FROM dnma.visits_national_daily"
    ).result_rows[0]
    return v_n / v_n1 - 1, u_n / u_n1 - 1


def test_tiles_change_equals_independent_sql(client: Any) -> None:
    _load(client)
    # January: week 15 of 2023-2024 (8 January 2024) against week 15 of 2022-2023 (2 January 2023).
    # 1 August: week 40, the last of 2023-2024 (1 July 2024), against week 40 of 2022-2023 (26 June 2023).
    for today, week_n, week_n1, k in ((JANUARY, "2024-01-08", "2023-01-02", 15),
                                      (AUGUST, "2024-07-01", "2023-06-26", 40)):
        visits, users = _independent(client, week_n, week_n1)
        assert visits == pytest.approx(_visits(2023, k) / _visits(2022, k) - 1)
        assert users == pytest.approx((20 + k) / (10 + k) - 1)
        assert _tile(client, "evolution_visites", today) == pytest.approx(visits), today
        assert _tile(client, "evolution_utilisateurs", today) == pytest.approx(users), today
        text = client.query(f"SELECT {metric_sql('rentree', 'comparaison_libelle')} FROM ({rentree_sql(today)})"
                            ).result_rows[0][0]
        d_n, d_n1 = (date.fromisoformat(w).strftime("%d/%m/%Y") for w in (week_n, week_n1))
        assert text == (f"Semaine scolaire {k} de 2023-2024 (du {d_n}) : {_fr(_visits(2023, k))} visites, "
                        f"{20 + k} utilisateurs ; l'an dernier, même semaine scolaire (du {d_n1}) : "
                        f"{_fr(_visits(2022, k))} visites, {10 + k} utilisateurs"), text


def _fr(n: int) -> str:
    return f"{n:,}".replace(",", "\u00a0")


def test_series_align_last_year_on_school_weeks(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Loaded by the tiles' test (module order); its rows are read, not rewritten.
    if not client.query("SELECT count() FROM dnma.visits_national_daily").result_rows[0][0]:
        _load(client)
    monkeypatch.setitem(SQL, "rentree", year_rendered())
    rows = {r[0]: r[1:] for r in chart_rows(client, CHARTS["nat_rentree_serie_visites"], JANUARY)}
    weeks_n = school_year_weeks(2023)
    assert sorted(rows) == weeks_n  # N−1's week 41 has no week 41 in N: left out
    for k, monday in enumerate(weeks_n, start=1):
        this_year = _visits(2023, k) if k <= 15 else 0  # the running week (15 January) and later: none yet
        assert rows[monday] == (this_year, _visits(2022, k)), (k, monday)
    users = {r[0]: r[1:] for r in chart_rows(client, CHARTS["nat_rentree_serie_utilisateurs"], JANUARY)}
    assert users[date(2024, 1, 8)] == (35, 25)


def test_filtered_year_compares_it_with_the_year_before(client: Any) -> None:
    if not client.query("SELECT count() FROM dnma.visits_national_daily").result_rows[0][0]:
        _load(client)
    # The "année scolaire" filter on 2022-2023 in January 2024: its last week (41) against 2021-2022's
    # week 41, of which the noise day of June 2022 is part.
    rows = client.query(f"SELECT any(semaine_reference), sumIf(nb_visites, rang = 0 AND semaine_scolaire = 41),"
                        f" sumIf(nb_visites, rang = 1 AND semaine_scolaire = 41), min(day)"
                        f" FROM ({rentree_sql(JANUARY, 2022)})").result_rows[0]
    assert rows[0] == 41 and rows[1] == _visits(2022, 41)
    assert rows[3] >= date(2021, 8, 30)


@pytest.mark.parametrize("today", [date(2026, 1, 15), date(2026, 8, 1), date(2026, 12, 7)])
def test_demo_loads_the_same_school_weeks_a_year_earlier(today: date, tmp_path: Path) -> None:
    """`dnma up`'s demo (60 days to yesterday) and the N−1 days `dnma demo` adds: every school week
    of the span has its week k of N−1 among them, the tiles' N−1 week too, young enough for the
    loader to build its visits under the demo stack's hits retention, and the simulator makes
    traffic on those days."""
    import tomllib

    from dnma_client.simulator import Simulation

    from aggregator.sessionizer import _ttl_cutoff
    from cli.stack import ensure_config

    start = today - timedelta(days=60)
    past = year_ago_days(start, 60)
    span = [start + timedelta(days=i) for i in range(60)]
    aligned = {same_school_week_year_ago(d) for d in span} - {None}
    assert aligned and all(m in past for m in aligned)
    assert all(school_week_number(d) is not None for d in past)
    reference = [m for m in school_year_weeks(reference_school_year(today)) if m + timedelta(days=7) <= today][-1]
    tile_week = same_school_week_year_ago(reference)
    assert tile_week in past
    ensure_config(tmp_path)
    months = tomllib.loads((tmp_path / "dnma.toml").read_text(encoding="utf-8"))["hits_ttl_months"]
    assert min(past) > _ttl_cutoff(Settings.model_construct(hits_ttl_months=months), today)
    sim = Simulation(scale=0.25 * 0.05, seed=1)
    assert len(sim.day(tile_week + timedelta(days=1))) > 0


SUPERSET_PYTHON = Path(__file__).resolve().parents[2] / "superset" / ".venv" / "bin" / "python"
# Superset's Jinja as the datasets meet it (jinja2's sandbox, from Superset's own environment):
# filter_values() of the native filters, current_user_rls_rules(), superset_config's addons.
RENDER = """
import json, sys
from jinja2.sandbox import SandboxedEnvironment
ctx = json.load(sys.stdin)
env = SandboxedEnvironment()
env.filters["where_in"] = lambda values, mark="'": "(" + ", ".join(mark + str(v) + mark for v in values) + ")"
print(env.from_string(ctx["sql"]).render(
    filter_values=lambda column, default=None, remove_filter=False: ctx["filters"].get(column, default or []),
    current_user_rls_rules=lambda: ctx["rls"], dnma_today=lambda: ctx["today"], dnma_active_weeks=lambda: 4))
"""


def superset_render(today: date, filters: dict[str, list[str]], rls: list[str]) -> str:
    import json
    import subprocess

    out = subprocess.run([str(SUPERSET_PYTHON), "-c", RENDER], input=json.dumps(
        {"sql": SQL["rentree"], "today": today.isoformat(), "filters": filters, "rls": rls}),
        capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


@pytest.mark.skipif(not SUPERSET_PYTHON.exists(), reason="Superset's environment is not installed (make superset-install)")
def test_superset_jinja_picks_the_year_and_the_tier(client: Any) -> None:
    if not client.query("SELECT count() FROM dnma.visits_national_daily").result_rows[0][0]:
        _load(client)
    query = ("SELECT any(annee_scolaire), any(semaine_reference), sumIf(nb_visites, rang = 0), "
             "sumIf(nb_visites, rang = 1) FROM ({})")
    for year, filters in ((None, {}), (2022, {"annee_scolaire": ["2021-2022", "2022-2023"]})):
        rendered = superset_render(JANUARY, filters, [])
        assert "visits_national_daily" in rendered and "visits_territoires_daily" not in rendered
        assert (client.query(query.format(rendered)).result_rows
                == client.query(query.format(rentree_sql(JANUARY, year))).result_rows), filters
    # A territorial user's RLS rule: the territories tier (Superset adds the clause to the outer query).
    rendered = superset_render(AUGUST, {}, ["academie = 'Rennes'"])
    assert "FROM dnma.visits_territoires_daily" in rendered and "visits_national_daily" not in rendered
    assert client.query(f"SELECT count() FROM ({rendered}) WHERE academie = 'Rennes'").result_rows == [(0,)]
