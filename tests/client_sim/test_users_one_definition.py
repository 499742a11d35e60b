"""One figure, one definition (#17): for the same ISO week, the visits and users of one UAI, of a
territory and of the nation are the same in the dashboards (a chart's query on its dataset, the
dataset's Jinja rendered with Jinja as Superset renders it, under the native filter, read through
the loader's read-only endpoint as Superset reads it), in the Matomo-like reporting API over HTTP on
the collector (VisitsSummary.get, nb_visits and nb_uniq_visitors) and in the open-data export
(fr-en-dnma-par-uai-profils, visites_globales and utilisateurs_globales). Real collector, loader,
chDB; hits sent through the collector. Users recur over days and UAIs, some without a uid, so a
sum of days or of UAIs, or an estimate, would differ.

On the same stack, the reporting API's DNMA module (DNMA.getProfils, getServices) gives the exports'
figures, in every format, within the token's access; and its per-person reports
(Live.getLastVisitsDetails, UserId.getUsers, Referrers.getCampaigns, the userId segment) are refused
on a site that has not turned them on (site 2), even to the super user, and to any other token on
one that has (site 1); the super user gets them there with pseudonymous ids only."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
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
from harness import DEMO_TOKEN, REPO, SUPER_TOKEN, Stack, demo_sites

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
    sites = demo_sites()
    sites[0]["per_person_reports"] = True  # site 1 turns them on; site 2 leaves them off (the default)
    with Stack(root, sites=sites, loader_aggregate_interval_s=0.5) as s:
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


# --- the reporting API's DNMA module: the exports' figures through the Matomo-style API

SITE2_TOKEN = "site2-token"  # harness.demo_sites: site 2, without traffic here


def _get(stack: Stack, method: str, token: str, **params: Any) -> httpx.Response:
    query = {"module": "API", "method": method, "period": "week", "date": WEEK.isoformat(), "token_auth": token,
             "format": "json", **params}
    return httpx.get(f"{stack.collector_url}/index.php", params=query, timeout=30)


def _refused(response: httpx.Response, words: str) -> None:
    body = response.json()
    assert response.status_code == 401 and body["result"] == "error" and words in body["message"], body
    assert set(body) == {"result", "message"}  # Matomo's error shape, never data


@pytest.mark.parametrize(("method", "dataset"), [("DNMA.getProfils", "fr-en-dnma-par-uai-profils"),
                                                 ("DNMA.getServices", "fr-en-dnma-par-uai-services")])
def test_dnma_module_gives_the_exports_figures(stack: Stack, method: str, dataset: str) -> None:
    columns = exports.DATASETS[dataset].columns
    published = {row[1]: dict(zip(columns, row, strict=True))
                 for row in exports.rows(stack.reader(), exports.DATASETS[dataset], WEEK, WEEK + timedelta(days=6))}
    got = {r["label"]: r for r in _get(stack, method, SUPER_TOKEN, idSite=SITE).json()}
    assert set(got) == set(published) == {A, B, C}
    for uai, row in got.items():
        for column in columns[len(exports.SHARED_COLUMNS):]:
            value = row[column]
            assert (exports.format_duree(value) if column.startswith("duree_") else str(value)) \
                == published[uai][column], (uai, column)
        assert row["academie"] == published[uai]["academie"] != ""
    if method == "DNMA.getProfils":
        assert (got[A]["visites_globales"], got[A]["utilisateurs_globales"]) == _expected({A})


def test_dnma_module_in_every_format_with_generic_filters(stack: Stack) -> None:
    visits = {uai: _expected({uai})[0] for uai in (A, B, C)}
    xml = _get(stack, "DNMA.getProfils", DEMO_TOKEN, idSite=SITE, format="")  # Matomo's default: xml
    assert xml.text.startswith("<?xml") and f"<label>{A}</label>" in xml.text
    assert f"<visites_globales>{visits[A]}</visites_globales>" in xml.text
    for fmt, sep in (("csv", ","), ("tsv", "\t")):
        text = _get(stack, "DNMA.getProfils", DEMO_TOKEN, idSite=SITE, format=fmt).content.decode("utf-16")
        rows = list(csv.DictReader(io.StringIO(text), delimiter=sep))
        assert {r["label"]: int(r["visites_globales"]) for r in rows} == visits, fmt
    page = _get(stack, "DNMA.getProfils", DEMO_TOKEN, idSite=SITE, filter_limit=1, filter_sort_column="visites_globales",
                filter_sort_order="asc", showColumns="label,visites_globales").json()
    fewest = min(visits, key=lambda u: (visits[u], u))
    assert page == [{"label": fewest, "visites_globales": visits[fewest]}]


@pytest.fixture(scope="module")
def rennes_token(stack: Stack) -> str:
    """A perimeter token of académie de Rennes (as `dnma access issue` makes it), once the running
    collector knows it (it re-reads access.yaml within a few seconds)."""
    from dnma import access
    from dnma.settings import Settings

    token = access.issue(Settings(**stack.config), "dsden-35", access.PerimeterFilter.parse("academie:Rennes"))
    deadline = time.monotonic() + 15
    while _get(stack, "SitesManager.getSitesIdWithAtLeastViewAccess", token).json() != [str(SITE)]:
        assert time.monotonic() < deadline, "the collector did not take the new perimeter token"
        time.sleep(0.3)
    return token


def test_dnma_module_keeps_to_the_tokens_access(stack: Stack, rennes_token: str) -> None:
    _refused(_get(stack, "DNMA.getProfils", SITE2_TOKEN, idSite=SITE), "'view' access")  # another site's token
    assert _get(stack, "DNMA.getProfils", SITE2_TOKEN, idSite=2).json() == []  # its own: no traffic
    # A perimeter token of académie de Rennes views site 1 (its declared perimeter overlaps), and of
    # it the establishments of Rennes only (A and B, of the 35; not C, of the 94).
    response = _get(stack, "DNMA.getProfils", rennes_token, idSite=SITE)
    assert {r["label"]: r["visites_globales"] for r in response.json()} == {
        A: _expected({A})[0], B: _expected({B})[0]}


# --- per-person and campaign reports: off by default, the super user's where a site turns them on

PER_PERSON = ("Live.getLastVisitsDetails", "UserId.getUsers", "Referrers.getCampaigns")


def test_per_person_reports_are_refused_unless_turned_on_and_asked_by_the_super_user(stack: Stack) -> None:
    for method in PER_PERSON:
        _refused(_get(stack, method, SUPER_TOKEN, idSite=2), "not enabled for the website id = 2")
        _refused(_get(stack, method, SUPER_TOKEN, idSite="1,2"), "not enabled for the website id = 2")
        _refused(_get(stack, method, DEMO_TOKEN, idSite=SITE), "'superuser' access")
    # The userId segment, on any report.
    _refused(_get(stack, "VisitsSummary.get", SUPER_TOKEN, idSite=2, segment="userId==abc"), "not enabled")
    _refused(_get(stack, "VisitsSummary.get", DEMO_TOKEN, idSite=SITE, segment="userId==abc"), "'superuser' access")


def test_the_super_user_gets_per_person_reports_with_pseudonymous_ids_only(stack: Stack) -> None:
    answers = {m: _get(stack, m, SUPER_TOKEN, idSite=SITE) for m in PER_PERSON}
    uids = {user for user in PLAN if not user.startswith("anonymous")}

    def values(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for v in node.values():
                yield from values(v)
        elif isinstance(node, list):
            for v in node:
                yield from values(v)
        else:
            yield str(node)

    for method, response in answers.items():
        assert response.status_code == 200, (method, response.text)
        shown = set(values(response.json()))
        assert not shown & uids and not any("127.0.0.1" in v for v in shown), method
    in_week = {user: sum(day < 7 for day, _ in plan) for user, plan in PLAN.items()}
    users = answers["UserId.getUsers"].json()
    assert sorted(r["nb_visits"] for r in users) == sorted(n for u, n in in_week.items() if u in uids)
    assert all(len(r["label"]) == 16 and int(r["label"], 16) for r in users)
    visits = answers["Live.getLastVisitsDetails"].json()
    assert len(visits) == _expected(None)[0]
    assert [v["firstActionTimestamp"] for v in visits] == sorted((v["firstActionTimestamp"] for v in visits),
                                                                 reverse=True)
    assert sum(v["userId"] is None for v in visits) == sum(n for u, n in in_week.items() if u not in uids)
    assert answers["Referrers.getCampaigns"].json() == []  # no campaign sent
    # The userId segment selects that user's visits, in the other reports too.
    top = max(users, key=lambda r: r["nb_visits"])
    segment = f"userId=={top['label']}"
    assert len(_get(stack, "Live.getLastVisitsDetails", SUPER_TOKEN, idSite=SITE, segment=segment).json()) \
        == top["nb_visits"]
    assert _get(stack, "VisitsSummary.get", SUPER_TOKEN, idSite=SITE, segment=segment).json()["nb_visits"] \
        == top["nb_visits"]


def test_dnma_deploiement_is_the_census_of_the_sites_perimeter(stack: Stack, rennes_token: str) -> None:
    """DNMA.getDeploiement: the census's establishments (public, with a degree) inside site 1's
    declared perimeter, active when visited in the school weeks ending with the week (none when the
    week is a holiday week: the census's rule); a perimeter token gets its académie's only."""
    from dnma.indicators import is_school_week

    rows = {r["label"]: r for r in _get(stack, "DNMA.getDeploiement", SUPER_TOKEN, idSite=SITE,
                                         filter_limit=-1).json()}
    public = {uai for (uai,) in stack.reader().query(
        "SELECT uai FROM dnma.etablissements FINAL WHERE secteur = 'PU' AND degre != ''").result_rows}
    assert rows and set(rows) <= public
    active = {A, B, C} & public if is_school_week(WEEK) else set()
    assert {u for u, r in rows.items() if r["actif"]} == {u for u, r in rows.items() if r["actif_sites"]} == active
    assert not {"ELEVE", "u0"} & {str(v) for r in rows.values() for v in r.values()}
    rennes = {r["label"] for r in _get(stack, "DNMA.getDeploiement", rennes_token, idSite=SITE,
                                        filter_limit=-1).json()}
    academies = {rows[u]["academie"] for u in rennes}
    assert len(academies) == 1 and rennes == {u for u, r in rows.items() if r["academie"] in academies}
    assert C not in rennes and len(rennes) < len(rows)
