"""Rollups (see aggregator/rollups.py for what each is for): hit rollups fed by materialized views
on `hits`, and visit rollups (daily, weekly, with and without services) plus their stage twins."""

from __future__ import annotations

from aggregator.ddl import Renderer
from aggregator.rollups import HIT_ROLLUPS, VISIT_ROLLUPS, hit_rollup_select

HIT_PERIOD_TYPES = {"day": "Date", "hour": "DateTime('Europe/Paris')"}


def hit_rollup_view(r: Renderer, table: str) -> str:
    """The materialized view feeding `table` from the hits inserted (also recreated by m0007)."""
    return r.create_materialized_view(f"{table}_mv", table, hit_rollup_select(r, table))


def _hit_rollup(r: Renderer, table: str) -> list[str]:
    period, dims = HIT_ROLLUPS[table]
    period_column = period.split(" AS ")[1]
    columns = [f"`{period_column}` {HIT_PERIOD_TYPES[period_column]}"]
    columns += [f"`{d}` {'UInt32' if d == 'site_id' else 'LowCardinality(String)'}" for d in dims]
    columns += ["`hits` SimpleAggregateFunction(sum, UInt64)", "`utilisateurs` AggregateFunction(uniq, UInt64)"]
    return [
        *r.create_table(
            table,
            ",\n  ".join(columns),
            order_by=f"(site_id, {period_column}, {', '.join(d for d in dims if d != 'site_id')})",
            family="AggregatingMergeTree",
            partition_by=f"toYYYYMM({period_column})",
            sharding_key="site_id",
        ),
        # Fed from the hits inserted after this migration: the loader migrates before it inserts
        # (rollups.backfill_hit_rollups covers a database that already held hits).
        hit_rollup_view(r, table),
    ]


def up(r: Renderer) -> list[str]:
    out: list[str] = []
    for table in HIT_ROLLUPS:
        out += _hit_rollup(r, table)
    for rollup in VISIT_ROLLUPS:
        for table in (rollup.table, f"{rollup.table}_stage"):
            out += r.create_table(
                table,
                rollup.columns(),
                order_by=rollup.order_by(),
                family="AggregatingMergeTree",
                partition_by=rollup.period,  # one partition per day / week: swapped atomically
                sharding_key="site_id",
            )
    return out


def down(r: Renderer) -> list[str]:
    out = [f"DROP VIEW IF EXISTS {r.database}.{t}_mv{r.on_cluster}" for t in HIT_ROLLUPS]
    tables = list(HIT_ROLLUPS) + [t for v in VISIT_ROLLUPS for t in (v.table, f"{v.table}_stage")]
    for table in tables:
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
