"""The charts' queries on embedded chDB (no Superset needed): each dataset's SQL as Superset runs it
(its Jinja rendered with no filter, today pinned), grouped and aggregated as the chart asks, and
compared with an independent query on the tables it reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from dnma_superset.charts import ROW_LIMIT, Chart, query_context
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.dataset_sql import SQL
from dnma_superset.datasets import DATASETS

from aggregator.migrate import migrate
from dnma.settings import Settings
from dnma.vocab import PROFILS, SERVICES

TODAY = date(2026, 3, 18)  # a pinned "today": the quality dataset reads the 14 days before it
CHARTS = {c.key: c for d in DASHBOARDS for c in d.charts()}


def render(sql: str, today: date = TODAY) -> str:
    """A dataset's SQL with no native filter and no RLS rule: every Jinja block off, today pinned.
    The last branch of an if/elif/else chain is the one read without filters (the coarsest tier)."""
    if "{%- if" in sql:
        sql = re.split(r"\{%- (?:if|elif|else)[^%]*%\}", sql)[-1]
    sql = sql.replace("{{ dnma_today() }}", today.isoformat())
    sql = re.sub(r"\{%-? for .*?%\}.*?\{%-? endfor -?%\}", "", sql, flags=re.S)
    sql = re.sub(r"\{%-? if .*?%\}.*?\{%-? endif -?%\}", "", sql, flags=re.S)
    sql = re.sub(r"\{%-? endif -?%\}", "", sql)
    assert "{%" not in sql and "{{" not in sql, sql
    return sql


def metric_sql(dataset: str, metric: str) -> str:
    return next(m[2] for m in DATASETS[dataset].metrics if m[0] == metric)


def chart_rows(client: Any, chart: Chart, today: date = TODAY) -> list[tuple[Any, ...]]:
    """The chart's grouped query as Superset builds it: its columns, its metrics, its row limit."""
    q = query_context(chart)["queries"][0]
    columns = [c if isinstance(c, str) else c["sqlExpression"] for c in q["columns"]]
    metrics = [metric_sql(chart.dataset, m) for m in q["metrics"]]
    where = f"WHERE {q['extras']['where']}" if q["extras"]["where"] else ""
    group = f"GROUP BY {', '.join(columns)}" if columns else ""
    sql = (f"SELECT {', '.join([*columns, *metrics])} FROM ({render(SQL[chart.dataset], today)}) {where} "
           f"{group} ORDER BY {', '.join(columns) or '1'} LIMIT {q['row_limit']}")
    return [tuple(r) for r in client.query(sql).result_rows]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("chart_queries")
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}")
    c = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    migrate(c, settings)
    try:
        yield c
    finally:
        c.close()


def test_native_third_party_pie_counts_each_visit_once(client: Any) -> None:
    """A visit touching native and third-party services both is one visit: the pie's slices are
    exclusive and add up to the visits (the former pie showed it in both slices)."""
    rows = []
    for i, (natif, tiers) in enumerate([(1, 0)] * 7 + [(0, 1)] * 2 + [(1, 1)] * 5 + [(0, 0)] * 1):
        rows.append(f"({i + 1}, 1, '2026-03-10', 1000 + {i}, {natif}, {tiers})")
    client.command("INSERT INTO dnma.visits (visit_id, site_id, day, visitor_id, type_natif, type_tiers) VALUES "
                   + ", ".join(rows))
    got = dict(chart_rows(client, CHARTS["svc_types"]))
    expected = dict(client.query(
        "SELECT multiIf(type_natif AND type_tiers, 'Natif et tiers', type_natif, 'Natif seul', type_tiers, "
        "'Tiers seul', 'Type non renseigné'), count() FROM dnma.visits GROUP BY 1").result_rows)
    assert got == expected == {"Natif seul": 7, "Tiers seul": 2, "Natif et tiers": 5, "Type non renseigné": 1}
    assert sum(got.values()) == client.query("SELECT count() FROM dnma.visits").result_rows[0][0]


def test_median_ingestion_delay_is_the_median_of_the_hits(client: Any) -> None:
    """The KPI and the daily line read the median of the hits' delays, not a median of per-day or
    per-site medians: one busy on-time site and two sites each sending one hit two hours late have
    a median of 0 (the former dataset said 2 h). Beyond a minute, the delay is exact to the minute."""
    hits = [("2026-03-10 10:00:00", 0, 1)] * 9 + [("2026-03-11 10:00:00", 7200, 2), ("2026-03-12 10:00:00", 7200, 3)]
    hits += [("2026-03-13 09:00:00", 3725, 4)] * 3 + [("2026-03-13 09:00:00", 30, 4)] * 2
    hits += [("2026-03-01 09:00:00", 99_999, 5)]  # older than the 14 days read: left out
    values = ", ".join(f"(toDateTime('{ts}', 'Europe/Paris'), toDateTime('{ts}', 'Europe/Paris') + {delay}, {site})"
                       for ts, delay, site in hits)
    client.command(f"INSERT INTO dnma.hits (ts, received_at, site_id) VALUES {values}")
    window = f"toDate(ts) >= toDate('{TODAY}') - 14"
    (kpi,), = chart_rows(client, CHARTS["qua_delai"])
    true_median = client.query(f"SELECT quantileExactLow(0.5)(toInt64(received_at) - toInt64(ts)) FROM dnma.hits "
                               f"WHERE {window}").result_rows[0][0]
    assert true_median == 0 and kpi == 1000 * true_median
    daily = {day: (med, mx) for day, med, mx in chart_rows(client, CHARTS["qua_delais"])}
    expected = {day: (med, mx) for day, med, mx in client.query(
        f"SELECT toDate(ts), quantileExactLow(0.5)(toInt64(received_at) - toInt64(ts)), "
        f"max(toInt64(received_at) - toInt64(ts)) FROM dnma.hits WHERE {window} GROUP BY 1").result_rows}
    assert set(daily) == set(expected)
    for day, (med, mx) in expected.items():
        assert daily[day][1] == 1000 * mx
        assert 0 <= 1000 * med - daily[day][0] < 60_000, day  # truncated to the minute, never more
    assert daily[date(2026, 3, 13)][0] == 1000 * 3720  # 1 h 2 min 5 s shown as 1 h 2 min


def test_services_by_profile_keeps_every_pair(client: Any) -> None:
    """Every (service, profil) pair the rollup holds is in the chart: 25 services × 6 profils is
    well past the 30 rows the chart used to keep."""
    rows = [f"('2026-03-10', '1D', '{p}', '{s}', {i + 1})"
            for i, (s, p) in enumerate((s, p) for s in SERVICES for p in PROFILS)]
    client.command("INSERT INTO dnma.visits_services_national_daily (day, degre, profil, service, visites) VALUES "
                   + ", ".join(rows))
    got = chart_rows(client, CHARTS["svc_profils"])
    expected = client.query("SELECT service, profil, sum(visites) FROM dnma.visits_services_national_daily "
                            "GROUP BY service, profil ORDER BY service, profil").result_rows
    assert len(got) == len(SERVICES) * len(PROFILS) == 150
    assert got == [tuple(r) for r in expected]


def test_no_chart_cuts_its_rows() -> None:
    """No chart keeps a top N of its rows: every one reads up to ROW_LIMIT rows, far more than any
    of them returns (the largest, services × profils with their blanks, is under 200)."""
    assert (len(SERVICES) + 1) * (len(PROFILS) + 1) < ROW_LIMIT
    for key, chart in CHARTS.items():
        assert chart.params.get("row_limit") == ROW_LIMIT or chart.viz == "big_number_total", key
        assert query_context(chart)["queries"][0]["row_limit"] == ROW_LIMIT, key


def test_quality_dashboard_has_no_chart_without_data_behind_it() -> None:
    """The loader's lag and the refused requests have no history in ClickHouse: no chart promises
    them (it showed "Aucun résultat" on every healthy stack)."""
    quality = next(d for d in DASHBOARDS if d.slug == "dnma-qualite")
    assert "qua_ingestion" not in {c.key for c in quality.charts()}
    assert not any("refusées" in c.title or "retard du loader" in c.title for c in quality.charts())
