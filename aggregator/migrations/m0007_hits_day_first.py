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
with the loader stopped. Each step can be run again after an interruption.

Fresh installs get this key from m0001: the copy is then of an empty table. On a cluster this
renders nothing (a cluster rekeys by hand, shard by shard: README).
"""

from __future__ import annotations

from aggregator.ddl import Renderer
from aggregator.migrations import m0005_hits_fingerprints
from aggregator.migrations.m0001_hits import ORDER_BY, SETTINGS, ttl
from aggregator.migrations.m0004_rollups import hit_rollup_view
from aggregator.rollups import HIT_ROLLUPS

SETTLE_LOADER_FIRST = True
OLD_ORDER_BY = "(site_id, toDate(ts), visitor_id, ts)"


def _views(r: Renderer) -> list[tuple[str, str]]:
    """(name, CREATE statement) of every materialized view reading `hits`."""
    views = [(f"{table}_mv", hit_rollup_view(r, table)) for table in HIT_ROLLUPS]
    views.append((f"{m0005_hits_fingerprints.TABLE}_mv", m0005_hits_fingerprints.view(r)))
    return views


def rekey(r: Renderer, order_by: str) -> list[str]:
    if r.cluster:
        return []
    hits, copy = r.local_name("hits"), r.local_name("hits_rekey")
    views = _views(r)
    return [
        f"DROP TABLE IF EXISTS {copy}",  # left by an interrupted run: the old table or a partial copy
        f"CREATE TABLE {copy} AS {hits} ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY {order_by} "
        f"TTL {ttl(r)} SETTINGS {SETTINGS}",
        f"INSERT INTO {copy} SELECT * FROM {hits}",
        *(f"DROP VIEW IF EXISTS {r.database}.{name}" for name, _ in views),
        f"EXCHANGE TABLES {hits} AND {copy}",
        *(create for _, create in views),
        f"DROP TABLE {copy}",
    ]


def up(r: Renderer) -> list[str]:
    return rekey(r, ORDER_BY)


def down(r: Renderer) -> list[str]:
    return rekey(r, OLD_ORDER_BY)
