"""`hits` sorted by Paris day first, `(toDate(ts), site_id, visitor_id, ts)`, instead of
`(site_id, toDate(ts), visitor_id, ts)`.

The sessionizer reads one day at a time. With the site first, one site's day is a few hundred rows
inside granules of 8,192 that span many days of that site, so reading a day read most of the
month. With the day first, a day is one key range (and `site_id IN (...)` within it, for partial
rebuilds, too): whole rebuilds take much less CPU (bench/README.md).

ClickHouse cannot change a sorting key in place. The table is copied into a new one (`CREATE ... AS`
keeps its exact columns), the materialized views that feed the rollups from `hits` are dropped and
created again around the swap (a view follows a table, not its name), and the old table is dropped.
The copy does not carry the table's insert-deduplication log, so the loader's pending batch, which
a redo would insert again, is settled first (SETTLE_LOADER_FIRST; aggregator.migrate). Nothing else
may write to `hits` meanwhile: the loader migrates before it inserts; run `dnma migrate` by hand only
with the loader stopped. Each step can be run again after an interruption. The copy has no TTL: the
loader sets it after migrating (aggregator.retention).

Fresh installs get this key from m0001: the copy is then of an empty table. On a cluster this
renders nothing (a cluster rekeys by hand, shard by shard: README).
"""

from __future__ import annotations

from aggregator.ddl import Renderer

SETTLE_LOADER_FIRST = True
ORDER_BY = "(toDate(ts), site_id, visitor_id, ts)"
OLD_ORDER_BY = "(site_id, toDate(ts), visitor_id, ts)"  # what m0001 created before this migration
SETTINGS = "non_replicated_deduplication_window = 10000, index_granularity = 8192"

USERS = "uniqState(toUInt64(if(user_hash != 0, user_hash, visitor_id))) AS utilisateurs"
# Every materialized view reading `hits` when this migration shipped (m0004, m0005), as they were
# created; {hits} is the hits table.
VIEWS: dict[str, tuple[str, str]] = {
    # view: (target table, SELECT)
    "hits_daily_mv": (
        "hits_daily",
        "SELECT toDate(ts) AS day, site_id, projet, uai, profil, service, device, action, "
        f"toUInt64(count()) AS hits, {USERS} FROM {{hits}} WHERE NOT has(flags, 'invalid_uai') "
        "GROUP BY day, site_id, projet, uai, profil, service, device, action",
    ),
    "hits_hourly_mv": (
        "hits_hourly",
        f"SELECT toStartOfHour(ts) AS hour, site_id, action, toUInt64(count()) AS hits, {USERS} "
        "FROM {hits} WHERE NOT has(flags, 'invalid_uai') GROUP BY hour, site_id, action",
    ),
    "hits_fingerprints_mv": (
        "hits_fingerprints",
        "SELECT toStartOfHour(ts) AS hour, site_id, count() AS hits, sum(cityHash64(site_id, visitor_id, ts, "
        "action, new_visit, campaign, uai, service, profil, flags)) AS hash FROM {hits} GROUP BY hour, site_id",
    ),
}


def rekey(r: Renderer, order_by: str) -> list[str]:
    """Copy `hits` into a table sorted by `order_by` and swap it in (tests also build an install
    from before this migration with it)."""
    if r.cluster:
        return []
    hits, copy = r.local_name("hits"), r.local_name("hits_rekey")
    return [
        f"DROP TABLE IF EXISTS {copy}",  # left by an interrupted run: the old table or a partial copy
        f"CREATE TABLE {copy} AS {hits} ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY {order_by} "
        f"SETTINGS {SETTINGS}",
        f"INSERT INTO {copy} SELECT * FROM {hits}",
        *(f"DROP VIEW IF EXISTS {r.database}.{view}" for view in VIEWS),
        f"EXCHANGE TABLES {hits} AND {copy}",
        *(r.create_materialized_view(view, table, select.format(hits=hits)) for view, (table, select) in VIEWS.items()),
        f"DROP TABLE {copy}",
    ]


def up(r: Renderer) -> list[str]:
    return rekey(r, ORDER_BY)


def down(r: Renderer) -> list[str]:
    # Nothing to undo: m0001 now creates the day-first key, so the schema before this migration is
    # the one after it; code from before it reads a day-first table as well (only slower).
    return []
