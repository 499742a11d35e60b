"""Rollups (aggregator/rollups.py says what each is for): hit rollups fed by materialized views on
`hits`, and visit rollups (daily, weekly, with and without services) plus their stage twins.

The DDL as shipped, written out here: aggregator.rollups may change its queries, not this schema."""

from __future__ import annotations

from aggregator.ddl import Renderer

USERS = "uniqState(toUInt64(if(user_hash != 0, user_hash, visitor_id))) AS utilisateurs"

# table: (columns, ORDER BY, PARTITION BY, SELECT of its view; {hits} is the local hits table)
HIT_ROLLUPS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "hits_daily": (
        ("`day` Date", "`site_id` UInt32", "`projet` LowCardinality(String)", "`uai` LowCardinality(String)",
         "`profil` LowCardinality(String)", "`service` LowCardinality(String)", "`device` LowCardinality(String)",
         "`action` LowCardinality(String)", "`hits` SimpleAggregateFunction(sum, UInt64)",
         "`utilisateurs` AggregateFunction(uniq, UInt64)"),
        "(site_id, day, projet, uai, profil, service, device, action)",
        "toYYYYMM(day)",
        "SELECT toDate(ts) AS day, site_id, projet, uai, profil, service, device, action, "
        f"toUInt64(count()) AS hits, {USERS} FROM {{hits}} WHERE NOT has(flags, 'invalid_uai') "
        "GROUP BY day, site_id, projet, uai, profil, service, device, action",
    ),
    "hits_hourly": (
        ("`hour` DateTime('Europe/Paris')", "`site_id` UInt32", "`action` LowCardinality(String)",
         "`hits` SimpleAggregateFunction(sum, UInt64)", "`utilisateurs` AggregateFunction(uniq, UInt64)"),
        "(site_id, hour, action)",
        "toYYYYMM(hour)",
        f"SELECT toStartOfHour(ts) AS hour, site_id, action, toUInt64(count()) AS hits, {USERS} "
        "FROM {hits} WHERE NOT has(flags, 'invalid_uai') GROUP BY hour, site_id, action",
    ),
}

DIMENSION = "LowCardinality(String) CODEC(ZSTD(1))"
DIMENSION_TYPES = {"site_id": "UInt32 CODEC(ZSTD(1))", "day": "Date CODEC(ZSTD(1))",
                   "debutsemaine": "Date CODEC(ZSTD(1))"}
SUM = "SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))"
# {users}: the distinct-users function of the rollup.
MEASURES = (
    f"`visites` {SUM}",
    "`utilisateurs` AggregateFunction({users}, UInt64) CODEC(ZSTD(3))",
    f"`duree` {SUM}",
    f"`pages_vues` {SUM}",
    f"`actions` {SUM}",
    f"`rebonds` {SUM}",
)
DETAIL = ("uai", "site_id", "projet", "degre", "region", "academie", "departement", "profil", "device")
# table: (period column = partition, dimensions in ORDER BY order, distinct-users function)
VISIT_ROLLUPS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "visits_daily": ("day", DETAIL, "uniq"),
    "visits_territoires_daily": ("day", ("degre", "region", "academie", "departement", "profil", "device"),
                                 "uniqCombined(12)"),
    "visits_national_daily": ("day", ("degre", "profil", "device"), "uniqCombined(12)"),
    "visits_services_daily": ("day", ("degre", "region", "academie", "departement", "projet", "profil", "service"),
                              "uniqCombined(12)"),
    "visits_services_national_daily": ("day", ("degre", "profil", "service"), "uniqCombined(12)"),
    "visits_weekly": ("debutsemaine", DETAIL, "uniq"),
}


def hit_rollup_view(r: Renderer, table: str) -> str:
    select = HIT_ROLLUPS[table][3].format(hits=r.local_name("hits"))
    return r.create_materialized_view(f"{table}_mv", table, select)


def _hit_rollup(r: Renderer, table: str) -> list[str]:
    columns, order_by, partition_by, _ = HIT_ROLLUPS[table]
    return [
        *r.create_table(
            table,
            ",\n  ".join(columns),
            order_by=order_by,
            family="AggregatingMergeTree",
            partition_by=partition_by,
            sharding_key="site_id",
        ),
        # Fed from the hits inserted after this migration: the loader migrates before it inserts
        # (rollups.backfill_hit_rollups covers a database that already held hits).
        hit_rollup_view(r, table),
    ]


def _visit_rollup(r: Renderer, table: str, period: str, dims: tuple[str, ...], users: str) -> list[str]:
    columns = [f"`{d}` {DIMENSION_TYPES.get(d, DIMENSION)}" for d in (period, *dims)]
    columns += [m.format(users=users) for m in MEASURES]
    return r.create_table(
        table,
        ",\n  ".join(columns),
        order_by="(" + ", ".join(dims) + ")",
        family="AggregatingMergeTree",
        partition_by=period,  # one partition per day / week: swapped atomically
        sharding_key="site_id",
    )


def up(r: Renderer) -> list[str]:
    out: list[str] = []
    for table in HIT_ROLLUPS:
        out += _hit_rollup(r, table)
    for table, (period, dims, users) in VISIT_ROLLUPS.items():
        for name in (table, f"{table}_stage"):
            out += _visit_rollup(r, name, period, dims, users)
    return out


def down(r: Renderer) -> list[str]:
    out = [f"DROP VIEW IF EXISTS {r.database}.{t}_mv{r.on_cluster}" for t in HIT_ROLLUPS]
    tables = list(HIT_ROLLUPS) + [t for v in VISIT_ROLLUPS for t in (v, f"{v}_stage")]
    for table in tables:
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
