"""Rollups: the hit rollups fed by materialized views, and the visit rollups the sessionizer
rebuilds (day and ISO week partitions swapped in from `<table>_stage`) after each visits rebuild.

Superset datasets (Europe/Paris; "utilisateurs" are states: always `uniqMerge` / `uniqExactMerge`
them over a period, never add daily or weekly figures):
- `dnma.visits_daily`, `dnma.visits_weekly` (`debutsemaine` = ISO Monday): per site × projet ×
  uai (+ referential) × profil × device → visites, utilisateurs (uniqExact state), duree (s),
  pages_vues, actions, rebonds. Every visit counted once: totals add up.
- `dnma.visits_services_daily`, `dnma.visits_services_weekly`: the same × service, one row per
  service a visit touched. A visit touching two services counts in both: never sum over services.
- `dnma.hits_daily` (site × projet × uai × profil × service × device × action) and `dnma.hits_hourly`
  (site × projet × profil × service × action, per Paris hour) → hits, utilisateurs (uniq state).
Months and school years (1 August → 31 July) merge the daily states (or weekly for whole weeks).
Hits flagged `invalid_uai` are excluded from every rollup, as from visits (INDICATORS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from aggregator.ddl import Renderer

USER_KEY = "if(user_hash != 0, user_hash, visitor_id)"  # distinct uid hash, else visitor id

VISIT_DIMENSIONS = ("site_id", "projet", "uai", "degre", "academie", "departement", "region", "profil", "device")
VISIT_MEASURES: tuple[tuple[str, str, str], ...] = (
    # (column, type, aggregate over visits)
    ("visites", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(count())"),
    ("utilisateurs", "AggregateFunction(uniqExact, UInt64)", f"uniqExactState(toUInt64({USER_KEY}))"),
    ("duree", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(duration))"),
    ("pages_vues", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(pageviews))"),
    ("actions", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(actions))"),
    ("rebonds", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(is_bounce))"),
)
DIMENSION_TYPES = {"site_id": "UInt32", "day": "Date", "debutsemaine": "Date"}


@dataclass(frozen=True)
class VisitRollup:
    """One visit rollup table: its period column (day or debutsemaine) and whether it splits services."""

    table: str
    period: str  # 'day' or 'debutsemaine'
    by_service: bool

    @property
    def dimensions(self) -> tuple[str, ...]:
        extra = ("service",) if self.by_service else ()
        return (self.period, *VISIT_DIMENSIONS, *extra)

    def columns(self) -> str:
        dims = [f"`{d}` {DIMENSION_TYPES.get(d, 'LowCardinality(String)')}" for d in self.dimensions]
        measures = [f"`{name}` {ch_type}" for name, ch_type, _ in VISIT_MEASURES]
        return ",\n  ".join(dims + measures)

    def order_by(self) -> str:
        # Every dimension in the key: rows differing only by a referential attribute must not merge.
        first = ("site_id", self.period)
        return "(" + ", ".join(first + tuple(d for d in self.dimensions if d not in first)) + ")"

    def select(self, r: Renderer) -> str:
        """Rows of the partition `{period:Date}` from `visits`."""
        period = "day" if self.period == "day" else "toMonday(day)"
        where = "day = {period:Date}" if self.period == "day" else "day BETWEEN {period:Date} AND {period:Date} + 6"
        array_join = "ARRAY JOIN services AS service" if self.by_service else ""
        dims = ", ".join(self.dimensions[1:])
        measures = ", ".join(f"{agg} AS {name}" for name, _, agg in VISIT_MEASURES)
        return (
            f"SELECT {period} AS {self.period}, {dims}, {measures} FROM {r.local_name('visits')} {array_join} "
            f"WHERE {where} GROUP BY {self.period}, {dims}"
        )


VISIT_ROLLUPS: tuple[VisitRollup, ...] = (
    VisitRollup("visits_daily", "day", False),
    VisitRollup("visits_services_daily", "day", True),
    VisitRollup("visits_weekly", "debutsemaine", False),
    VisitRollup("visits_services_weekly", "debutsemaine", True),
)


def debutsemaine(day: date) -> date:
    """The ISO week's Monday."""
    return day - timedelta(days=day.weekday())


def refresh_visit_rollups(client, r: Renderer, days: list[date]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Rebuild the day partitions of `days` and the week partitions containing them, each swapped
    atomically from its stage table. Returns the number of partitions refreshed per table."""
    for day in sorted(set(days)):
        refresh_period_rollups(client, r, "day", day)
    for week in sorted({debutsemaine(d) for d in days}):
        refresh_period_rollups(client, r, "debutsemaine", week)
    return rollup_partition_counts(days)


def rollup_partition_counts(days: list[date]) -> dict[str, int]:
    weeks = {debutsemaine(d) for d in days}
    return {v.table: len(set(days)) if v.period == "day" else len(weeks) for v in VISIT_ROLLUPS}


def refresh_period_rollups(client, r: Renderer, period: str, value: date, stage_suffix: str = "") -> None:  # type: ignore[no-untyped-def]
    """Rebuild one day ('day') or ISO week ('debutsemaine') of the visit rollups from the visits of
    that period only (partition pruning on visits.day). `stage_suffix` picks a worker's stage tables."""
    for rollup in VISIT_ROLLUPS:
        if rollup.period == period:
            swap_partition(client, r, rollup.table, rollup.select(r), {"period": value}, value,
                           stage=f"{rollup.table}_stage{stage_suffix}")


def swap_partition(  # type: ignore[no-untyped-def]
    client, r: Renderer, table: str, select: str, parameters: dict[str, object], partition: date,
    settings: dict[str, object] | None = None, stage: str | None = None,
) -> None:
    """Fill `stage` (default `<table>_stage`) with `select`, then atomically replace `partition` of
    `table` with it. An empty result replaces the partition with nothing, so vanished rows vanish too.
    """
    stage = r.local_name(stage or f"{table}_stage")
    client.command(f"TRUNCATE TABLE IF EXISTS {stage}")
    client.command(f"INSERT INTO {stage} {select}", parameters=parameters, settings=settings or {})
    client.command(
        f"ALTER TABLE {r.local_name(table)} REPLACE PARTITION ID '{partition:%Y%m%d}' FROM {stage}",
        # An empty stage is meant: the day (or week) now has no rows.
        settings={"allow_replace_partition_from_empty_source": 1},
    )
    client.command(f"TRUNCATE TABLE IF EXISTS {stage}")


# --- hit rollups, fed by materialized views on `hits` (DDL in migration m0004)
HIT_ROLLUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    # table: (period expression AS period column, dimensions)
    "hits_daily": ("toDate(ts) AS day", ("site_id", "projet", "uai", "profil", "service", "device", "action")),
    "hits_hourly": ("toStartOfHour(ts) AS hour", ("site_id", "projet", "profil", "service", "action")),
}


def hit_rollup_select(r: Renderer, table: str) -> str:
    period, dims = HIT_ROLLUPS[table]
    period_column = period.split(" AS ")[1]
    return (
        f"SELECT {period}, {', '.join(dims)}, toUInt64(count()) AS hits, "
        f"uniqState(toUInt64({USER_KEY})) AS utilisateurs FROM {r.local_name('hits')} "
        f"WHERE NOT has(flags, 'invalid_uai') GROUP BY {period_column}, {', '.join(dims)}"
    )


def backfill_hit_rollups(client, r: Renderer) -> None:  # type: ignore[no-untyped-def]
    """Fill the hit rollups from hits already stored (run once, with ingestion stopped)."""
    for table in HIT_ROLLUPS:
        client.command(f"TRUNCATE TABLE {r.local_name(table)}")
        client.command(f"INSERT INTO {r.local_name(table)} {hit_rollup_select(r, table)}")
