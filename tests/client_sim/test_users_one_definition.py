"""One figure, one definition (#17): for the same ISO week, the visits and users of one UAI, of a
territory and of the nation are the same in the dashboards (a chart's query on its dataset, the
dataset's Jinja rendered with Jinja as Superset renders it, under the native filter, read through
the loader's read-only endpoint as Superset reads it), in the Matomo-like reporting API over HTTP on
the collector (VisitsSummary.get, nb_visits and nb_uniq_visitors) and in the open-data export
(fr-en-dnma-par-uai-profils, visites_globales and utilisateurs_globales). Real collector, loader,
chDB; hits sent through the collector. Users recur over days and UAIs, some without a uid, so a
sum of days or of UAIs, or an estimate, would differ."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dnma_client import Tracker
from dnma_superset.charts import query_context
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.dataset_sql import SQL
from dnma_superset.datasets import DATASETS as SUPERSET_DATASETS
from harness import DEMO_TOKEN, REPO, SUPER_TOKEN, Stack

from aggregator import exports
from dnma import clock
from dnma.clock import PARIS

WEEK = clock.today() - timedelta(days=clock.today().weekday() + 14)  # a whole ISO week, over
SITE = 1
HOST = "https://ent.demo.example"
A, B, C = "0350002M", "0350022J", "0940176F"  # two establishments of the 35 annuaire, one of the 94's
# user -> (day of WEEK, UAI) of each visit; None: no uid (a visitor id alone)
PLAN: dict[str, list[tuple[int, str]]] = {
    "u0": [(0, A), (1, A), (2, B), (7, A)],  # a day of the next week too
    "u1": [(0, A), (3, C)],
    "u2": [(1, B), (2, B)],
    "u3": [(0, C), (4, C)],
    "u4": [(2, A)],
    "u5": [(4, B)],
    "anonymous-0": [(1, A), (3, A)],
    "anonymous-1": [(2, C)],
}
REFERENTIEL = [REPO / "deploy" / "referentiel" / n
               for n in ("annuaire-education-35-2023.csv", "annuaire-education-94-ecoles-2026.csv")]
SUPERSET_PYTHON = REPO / "superset" / ".venv" / "bin" / "python"
# Superset's Jinja context as the datasets use it: filter_values() of the native filters,
# current_user_rls_rules() (none: the national user), superset_config's addons; where_in as Superset's.
RENDER = """
import json, sys
from jinja2.sandbox import SandboxedEnvironment
ctx = json.load(sys.stdin)
env = SandboxedEnvironment()
env.filters["where_in"] = lambda values, mark="'": "(" + ", ".join(mark + str(v) + mark for v in values) + ")"
print(env.from_string(ctx["sql"]).render(
    filter_values=lambda column, default=None, remove_filter=False: ctx["filters"].get(column, default or []),
    current_user_rls_rules=lambda: [], dnma_today=lambda: ctx["today"], dnma_active_weeks=lambda: 4))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("one_definition")
    with Stack(root, loader_aggregate_interval_s=0.5) as s:
        s.start_loader()
        subprocess.run([sys.executable, "-m", "cli", "referentiel", "load", *map(str, REFERENTIEL)],
                       env=s.env, check=True, timeout=300, capture_output=True)
        s.start_collector()
        visits = 0
        for n, (user, plan) in enumerate(PLAN.items()):
            uid = None if user.startswith("anonymous") else user
            with Tracker(s.collector_url, SITE, DEMO_TOKEN, uid=uid, visitor_id=f"{0xD1 + n:016x}",
                         properties={"profil": "ELEVE", "type": "NATIF"}) as t:
                hits = []
                for day, uai in plan:
                    t0 = datetime.combine(WEEK + timedelta(days=day), datetime.min.time(), PARIS) + timedelta(hours=10)
                    hits += [t.page_hit(f"{HOST}/accueil", "Accueil", cdt=t0, uai=uai, service="ACCUEIL"),
                             t.page_hit(f"{HOST}/notes", "Notes", cdt=t0 + timedelta(minutes=2), uai=uai,
                                        service="NOTES")]
                    visits += 1
                answer = t.bulk(hits)
                assert (answer["tracked"], answer["invalid"]) == (len(hits), 0), answer
        # The weekly rollups are built last in a pass: once they hold every visit, so do the others.
        s.wait_for("SELECT sum(visites) FROM dnma.visits_weekly", lambda r: r[0][0] == visits, timeout=120)
        yield s


def _expected(uais: set[str] | None) -> tuple[int, int]:
    """Visits and distinct users of WEEK in the plan, at `uais` (None: all)."""
    seen = [(user, uai) for user, plan in PLAN.items() for day, uai in plan
            if day < 7 and (uais is None or uai in uais)]
    return len(seen), len({user for user, _ in seen})


def _dashboard(stack: Stack, chart_key: str, filters: dict[str, list[str]]) -> tuple[int, int]:
    """The chart's metrics over WEEK under the native filters, as Superset queries its dataset."""
    chart = next(c for d in DASHBOARDS for c in d.charts() if c.key == chart_key)
    rendered = subprocess.run(
        [str(SUPERSET_PYTHON), "-c", RENDER], check=True, capture_output=True, text=True,
        input=json.dumps({"sql": SQL[chart.dataset], "filters": filters, "today": clock.today().isoformat()}),
    ).stdout
    metrics = {m[0]: m[2] for m in SUPERSET_DATASETS[chart.dataset].metrics}
    assert query_context(chart)["queries"][0]["metrics"] == ["utilisateurs"], chart_key
    where = [f"day >= '{WEEK}'", f"day < '{WEEK + timedelta(days=7)}'"]
    where += [f"{column} IN ({', '.join(repr(v) for v in values)})" for column, values in filters.items()]
    sql = (f"SELECT {metrics['visites']}, {metrics['utilisateurs']} FROM ({rendered}) AS virtual_table "
           f"WHERE {' AND '.join(where)}")
    visits, users = stack.reader().query(sql).result_rows[0]
    return int(visits), int(users)


def _api(stack: Stack, segment: str | None) -> tuple[int, int]:
    params: dict[str, Any] = {"module": "API", "method": "VisitsSummary.get", "format": "JSON", "idSite": SITE,
                              "period": "week", "date": WEEK.isoformat(), "token_auth": SUPER_TOKEN}
    if segment:
        params["segment"] = segment
    got = httpx.get(f"{stack.collector_url}/index.php", params=params, timeout=30).json()
    return int(got["nb_visits"]), int(got["nb_uniq_visitors"])


def _export(stack: Stack) -> dict[str, tuple[int, int]]:
    dataset = exports.DATASETS["fr-en-dnma-par-uai-profils"]
    columns = dataset.columns
    out = {}
    for row in exports.rows(stack.reader(), dataset, WEEK, WEEK + timedelta(days=6)):
        assert row[0] == WEEK.isoformat()
        out[row[1]] = (int(row[columns.index("visites_globales")]), int(row[columns.index("utilisateurs_globales")]))
    return out


def test_dashboard_api_and_export_agree_on_visits_and_users(stack: Stack) -> None:
    published = _export(stack)
    assert set(published) == {A, B, C}
    # One UAI: the Établissement dashboard's tile, the API segmented on the UAI, the export's row.
    for uai in (A, B, C):
        expected = _expected({uai})
        assert _dashboard(stack, "eta_utilisateurs", {"uai": [uai]}) == expected, uai
        assert _api(stack, f"uai=={uai}") == expected, uai
        assert published[uai] == expected, uai
    # A territory (A and B's département, from the referential): the national tile filtered on it, the
    # API over its UAIs. The export publishes it per UAI only: its visits add up, its users do not.
    departement = stack.reader().query(
        f"SELECT any(departement) FROM dnma.visits WHERE uai = '{A}'").result_rows[0][0]
    assert departement and departement == stack.reader().query(
        f"SELECT any(departement) FROM dnma.visits WHERE uai = '{B}'").result_rows[0][0]
    expected = _expected({A, B})
    assert _dashboard(stack, "nat_utilisateurs", {"departement": [departement]}) == expected
    assert _api(stack, f"uai=={A},uai=={B}") == expected
    assert published[A][0] + published[B][0] == expected[0]
    assert expected[1] < published[A][1] + published[B][1]  # a user of both counts once
    # The nation: the national tile, the API over the site (the only one with traffic).
    expected = _expected(None)
    assert _dashboard(stack, "nat_utilisateurs", {}) == _api(stack, None) == expected
    assert sum(v[0] for v in published.values()) == expected[0]


def test_the_week_after_is_its_own(stack: Stack) -> None:
    """The plan's visit of the next week is in none of the figures above, and is one of its own."""
    after = WEEK + timedelta(days=7)
    got = stack.reader().query(
        "SELECT sum(visites), groupBitmapMerge(utilisateurs) FROM dnma.visits_weekly WHERE debutsemaine = "
        f"'{after}'").result_rows[0]
    assert tuple(int(v) for v in got) == (1, 1)
    assert date.fromisoformat(str(after)).weekday() == 0
