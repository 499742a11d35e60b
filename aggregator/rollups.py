"""Rollups: the hit rollups fed by materialized views, and the visit rollups the sessionizer
rebuilds (day and ISO week partitions swapped in from `<table>_stage`) after each visits rebuild.

Visit rollups come in tiers; a dashboard query reads the coarsest one that still has the
dimensions it groups or filters by (`rollup_for` picks it). Europe/Paris. "utilisateurs" are
distinct-user states: always merge them over a period with the table's function
(`BY_TABLE[table].users_merge`: `groupBitmapMerge`), never add daily or weekly figures.
- `dnma.visits_national_daily`: day × degre × profil × device (a few dozen rows a day): national
  KPIs, weekly trend (`GROUP BY toMonday(day)`), by profil, by device, over a school year.
- `dnma.visits_territoires_daily`: day × degre × region × academie × departement × profil × device:
  maps and tables by territory, and the national charts filtered on a territory.
- `dnma.visits_daily`, `dnma.visits_weekly` (`debutsemaine` = ISO Monday): the detail, per uai ×
  site × projet (+ referential degre/region/academie/departement) × profil × device, sorted by
  uai first for the Établissement dashboard. Every visit counted once in each tier: totals add up.
- `dnma.visits_services_national_daily`: day × degre × profil × service (national "by service").
- `dnma.visits_services_daily`: day × degre × region × academie × departement × projet × profil ×
  service (no uai, site or device: no dashboard splits services by them; one establishment's
  services are read from `dnma.visits`, exact and fast for one UAI). One row per service a visit
  touched: never sum over services. Weeks of services merge the daily states (`toMonday(day)`).
Measures of every visit rollup: visites, utilisateurs (state), duree (s), pages_vues, actions,
rebonds. `visits_daily`, `visits_territoires_daily` and `visits_services_daily` are computed
from the day's visits; the others merge a finer rollup with the same state function
(`...MergeState`, sums), so they cost little to rebuild and agree with their source.

Distinct users, exact everywhere (INDICATORS.md, "one figure, one definition"): every visit rollup
keeps `groupBitmap` states over a dense user index (`dnma.user_index`, migration m0019: each
distinct user key, USER_KEY below, gets the next UInt32 the first time a day's rollups are built
with it, `assign_user_index`). Merged over days, weeks, territories or the nation they give the
number the open-data exports (aggregator/exports.py) and the Matomo-like reporting API
(aggregator/reporting.py) count with `uniqExact` on `dnma.visits`: the same users, not an estimate
(a dense index keeps the Roaring bitmaps compact and their merges fast, where bitmaps of the
64-bit keys themselves would spend a container per user). Costs measured in bench/README.md.
Months and school years (1 August → 31 July) merge the daily states (or weekly for whole weeks).
- `dnma.hits_daily` (site × projet × uai × profil × service × device × action) and `dnma.hits_hourly`
  (site × action, per Paris hour: the ops view) → hits, utilisateurs (a `uniq` state: an estimate,
  read by no dashboard; the visit rollups hold the published users).
Hits flagged `invalid_uai` are excluded from every rollup, as from visits (INDICATORS.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from aggregator.ddl import Renderer

# The user of a visit or hit (INDICATORS.md "utilisateurs"): its keyed uid hash, else its visitor id.
# One definition for the rollups, the exports, the reporting API and the Superset datasets.
USER_KEY = "if(user_hash != 0, user_hash, visitor_id)"
USER_INDEX = "user_index"  # user_key UInt64 -> user_idx UInt32, dense from 1 (migration m0019)

GEO = ("degre", "region", "academie", "departement")  # referential attributes of the visit's UAI
# The detail tier's dimensions (period excluded), uai first: the Établissement dashboard's filter.
VISIT_DIMENSIONS = ("uai", "site_id", "projet", *GEO, "profil", "device")
VISIT_MEASURES: tuple[tuple[str, str, str, str], ...] = (
    # (column, type, aggregate over visits, aggregate over a finer rollup); utilisateurs: users_*()
    ("visites", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(count())", "sum(visites)"),
    ("utilisateurs", "", "", ""),  # per rollup: VisitRollup.users
    ("duree", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(duration))", "sum(duree)"),
    ("pages_vues", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(pageviews))", "sum(pages_vues)"),
    ("actions", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(actions))", "sum(actions)"),
    ("rebonds", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(sum(is_bounce))", "sum(rebonds)"),
)
EXACT = "groupBitmap"  # every tier: exact distinct users over the dense index (UInt32)


def _combinator(users: str, suffix: str) -> str:
    """'groupBitmap', 'State' -> 'groupBitmapState'; 'uniqCombined(12)', 'State' -> 'uniqCombinedState(12)'."""
    name, _, params = users.partition("(")
    return f"{name}{suffix}" + (f"({params}" if params else "")


# Explicit codecs (the server's default may be LZ4): small sums lose their unused high bytes
# (T64) before ZSTD; the bitmap states get ZSTD(3).
MEASURE_CODECS = {name: "CODEC(T64, ZSTD(1))" for name in ("visites", "duree", "pages_vues", "actions", "rebonds")}
STATE_CODEC = "CODEC(ZSTD(3))"
DIMENSION_CODEC = "CODEC(ZSTD(1))"
DIMENSION_TYPES = {"site_id": "UInt32", "day": "Date", "debutsemaine": "Date"}


@dataclass(frozen=True)
class VisitRollup:
    """One visit rollup table: its period column (day or debutsemaine), its dimensions (period
    excluded, in ORDER BY order), and where it comes from: `visits` (source None) or a finer daily
    rollup whose states it merges."""

    table: str
    period: str  # 'day' or 'debutsemaine'
    dims: tuple[str, ...]
    source: str | None = None
    users: str = EXACT  # the distinct-users state function

    @property
    def users_merge(self) -> str:
        """What readers merge `utilisateurs` with: `groupBitmapMerge`."""
        return _combinator(self.users, "Merge")

    @property
    def users_state(self) -> str:
        """What makes an `utilisateurs` state from user keys or indexes: `groupBitmapState` (over
        `user_idx` in the rollups; over the UInt64 keys themselves, exact too, where a query reads
        `dnma.visits` without the index)."""
        return _combinator(self.users, "State")

    def _measure(self, name: str, ch_type: str, from_visits: str, from_rollup: str) -> tuple[str, str, str]:
        if name != "utilisateurs":
            return ch_type, from_visits, from_rollup
        return (f"AggregateFunction({self.users}, UInt32)",
                f"{self.users_state}(u.user_idx)",
                f"{_combinator(self.users, 'MergeState')}(utilisateurs)")

    @property
    def by_service(self) -> bool:
        return "service" in self.dims

    @property
    def dimensions(self) -> tuple[str, ...]:
        return (self.period, *self.dims)

    def columns(self) -> str:
        dims = [f"`{d}` {DIMENSION_TYPES.get(d, 'LowCardinality(String)')} {DIMENSION_CODEC}" for d in self.dimensions]
        measures = [f"`{m[0]}` {self._measure(*m)[0]} {MEASURE_CODECS.get(m[0], STATE_CODEC)}" for m in VISIT_MEASURES]
        return ",\n  ".join(dims + measures)

    def order_by(self) -> str:
        # Every dimension in the key (rows differing only by a referential attribute must not
        # merge); the partition is one period, so the key starts with what dashboards filter on.
        return "(" + ", ".join(self.dims) + ")"

    def select(self, r: Renderer) -> str:
        """Rows of the partition `{period:Date}`, from `visits` or from the source rollup."""
        dims = ", ".join(self.dims)
        period = "day" if self.period == "day" else "toMonday(day)"
        where = "day = {period:Date}" if self.period == "day" else "day BETWEEN {period:Date} AND {period:Date} + 6"
        if self.source is None:
            array_join = "ARRAY JOIN services AS service" if self.by_service else ""
            # Each visit's user index (assign_user_index gave every user of the period one), looked
            # up among the period's users only (the index's primary key).
            keys = f"SELECT {USER_KEY} FROM {r.local_name('visits')} WHERE {where}"
            array_join += (f" LEFT JOIN (SELECT user_key, user_idx FROM {r.name(USER_INDEX)} "
                           f"WHERE user_key IN ({keys})) AS u ON u.user_key = {USER_KEY}")
            measures = ", ".join(f"{self._measure(*m)[1]} AS {m[0]}" for m in VISIT_MEASURES)
            source = r.local_name("visits")
        else:  # merged from a finer daily rollup
            array_join = ""
            measures = ", ".join(f"{self._measure(*m)[2]} AS {m[0]}" for m in VISIT_MEASURES)
            source = r.local_name(self.source)
        return (
            f"SELECT {period} AS {self.period}, {dims}, {measures} FROM {source} {array_join} "
            f"WHERE {where} GROUP BY {self.period}, {dims}"
        )


# Build order matters: a rollup comes after its source.
VISIT_ROLLUPS: tuple[VisitRollup, ...] = (
    VisitRollup("visits_daily", "day", VISIT_DIMENSIONS),
    VisitRollup("visits_territoires_daily", "day", (*GEO, "profil", "device")),
    VisitRollup("visits_national_daily", "day", ("degre", "profil", "device"), "visits_territoires_daily"),
    VisitRollup("visits_services_daily", "day", (*GEO, "projet", "profil", "service")),
    VisitRollup("visits_services_national_daily", "day", ("degre", "profil", "service"), "visits_services_daily"),
    VisitRollup("visits_weekly", "debutsemaine", VISIT_DIMENSIONS, "visits_daily"),
)
BY_TABLE = {v.table: v for v in VISIT_ROLLUPS}


def rollup_for(dimensions: set[str] | frozenset[str], period: str = "day") -> str:
    """The coarsest rollup of `period` holding every one of `dimensions` (grouped or filtered on).
    A services rollup only when `service` is asked for: it counts a visit once per service."""
    candidates = [v for v in VISIT_ROLLUPS if v.period == period and set(dimensions) <= set(v.dims)
                  and v.by_service == ("service" in dimensions)]
    if not candidates:
        raise ValueError(f"no {period} rollup has {sorted(dimensions)}: read dnma.visits")
    return min(candidates, key=lambda v: len(v.dims)).table


def debutsemaine(day: date) -> date:
    """The ISO week's Monday."""
    return day - timedelta(days=day.weekday())


def rollup_partition_counts(days: list[date]) -> dict[str, int]:
    weeks = {debutsemaine(d) for d in days}
    return {v.table: len(set(days)) if v.period == "day" else len(weeks) for v in VISIT_ROLLUPS}


def refresh_period_rollups(client, r: Renderer, period: str, value: date, stage_suffix: str = "") -> None:  # type: ignore[no-untyped-def]
    """Rebuild one day ('day') or ISO week ('debutsemaine') of the visit rollups from the visits of
    that period only (partition pruning on visits.day). `stage_suffix` picks a worker's stage tables.
    A day's users get their index first."""
    if period == "day":
        assign_user_index(client, r, value)
    for rollup in VISIT_ROLLUPS:
        if rollup.period == period:
            swap_partition(client, r, rollup.table, rollup.select(r), {"period": value}, value,
                           stage=f"{rollup.table}_stage{stage_suffix}")


# Indexes are handed out one period at a time per process: the sessionizer's workers build days in
# parallel, and two of them numbering from the same max would give two users one index.
_INDEX_LOCK = threading.Lock()


def assign_user_index(client, r: Renderer, day: date) -> int:  # type: ignore[no-untyped-def]
    """Give the users of `day`'s visits that have none the next indexes (max + 1, + 2, … in key
    order); returns how many were new. An index is never reused nor changed: states built earlier
    stay valid. One writer at a time (this lock; in embedded mode the loader is the only one)."""
    keys = f"SELECT DISTINCT {USER_KEY} AS user_key FROM {r.local_name('visits')} WHERE day = {{day:Date}}"
    index = r.name(USER_INDEX)
    with _INDEX_LOCK:
        before = client.query(f"SELECT count() FROM {index}").result_rows[0][0]
        client.command(inline_dates(
            f"INSERT INTO {index} (user_key, user_idx) "
            f"SELECT user_key, toUInt32((SELECT max(user_idx) FROM {index}) + row_number() OVER (ORDER BY user_key)) "
            f"FROM ({keys}) WHERE user_key NOT IN (SELECT user_key FROM {index} WHERE user_key IN "
            f"(SELECT user_key FROM ({keys})))", {"day": day}),
            # In a cluster the index is a Distributed table: the rollups read it right after.
            settings={"insert_distributed_sync": 1} if r.cluster else None)
        return int(client.query(f"SELECT count() FROM {index}").result_rows[0][0]) - int(before)


_DATE_PARAMETER = re.compile(r"\{(\w+):Date\}(?:\s*([+-])\s*(\d+))?")


def inline_dates(sql: str, parameters: Mapping[str, object]) -> str:
    """`sql` with its `{name:Date}` parameters, and `{name:Date} + N` / `- N`, written as date literals.

    ClickHouse rewrites `toDate(ts) = <parameter>` into a range of `ts` (its "preimage"
    optimisation), which the hits' primary key `toDate(ts)` cannot use: every granule of the month
    is read for one day, a fixed CPU cost per statement whatever the day's size. A literal is
    compared as it is and the key prunes (bench/README.md). tests/test_migrations.py checks the
    sessionizer's day filter still prunes."""
    def literal(m: re.Match[str]) -> str:
        value = parameters[m.group(1)]
        if not isinstance(value, date) or isinstance(value, datetime):
            raise TypeError(f"{m.group(1)} is not a date: {value!r}")
        if m.group(2):
            value += timedelta(days=int(m.group(3)) * (1 if m.group(2) == "+" else -1))
        return f"'{value.isoformat()}'"

    return _DATE_PARAMETER.sub(literal, sql)


def swap_partition(  # type: ignore[no-untyped-def]
    client, r: Renderer, table: str, select: str, parameters: dict[str, object], partition: date,
    settings: dict[str, object] | None = None, stage: str | None = None,
) -> None:
    """Fill `stage` (default `<table>_stage`) with `select`, then atomically replace `partition` of
    `table` with it. An empty result replaces the partition with nothing, so vanished rows vanish too.
    The stage keeps its (hard-linked) parts until the next swap truncates it first: one command
    less per partition.
    """
    stage = r.local_name(stage or f"{table}_stage")
    client.command(f"TRUNCATE TABLE IF EXISTS {stage}")
    # The select groups by the whole sort key: an AggregatingMergeTree has nothing to merge on insert
    # (optimize_on_insert would compare every row with the next again).
    client.command(f"INSERT INTO {stage} {inline_dates(select, parameters)}",
                   settings={"optimize_on_insert": 0} | (settings or {}),
                   parameters={k: v for k, v in parameters.items() if not isinstance(v, date)})
    client.command(
        f"ALTER TABLE {r.local_name(table)} REPLACE PARTITION ID '{partition:%Y%m%d}' FROM {stage}",
        # An empty stage is meant: the day (or week) now has no rows.
        settings={"allow_replace_partition_from_empty_source": 1},
    )


# --- hit rollups, fed by materialized views on `hits` (DDL in migration m0004)
HIT_ROLLUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    # table: (period expression AS period column, dimensions)
    "hits_daily": ("toDate(ts) AS day", ("site_id", "projet", "uai", "profil", "service", "device", "action")),
    # Hourly is the ops view (is a site sending, how much of what): few dimensions keep it small.
    "hits_hourly": ("toStartOfHour(ts) AS hour", ("site_id", "action")),
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
