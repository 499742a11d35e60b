"""`visits_arrivals`: which visitor-days received hits since the sessionizer last looked, kept by a
materialized view on `hits`, so that a pass over the day under way rebuilds the visits of those
visitors only instead of the whole day (aggregator.sessionizer, incremental passes).

A pass takes the queue whole with `MOVE PARTITION ... TO TABLE visits_arrivals_taken` (atomic: a
concurrent insert lands either in what is taken or in what stays), reads the taken rows, and
empties them once the pass has built every day they concern. `day` is the hit's Paris day; the
sessionizer maps it to site-local days itself. Blocks the source table deduplicates (loader
retries) never reach the view, and the view writes after the hits' part: a visible arrival means
visible hits. ReplacingMergeTree: while no pass takes the queue (aggregation off), a visitor-day
is kept once, not once per insert.
"""

from __future__ import annotations

from aggregator.ddl import Renderer

TABLE = "visits_arrivals"
COLUMNS = "`day` Date, `site_id` UInt32, `visitor_id` UInt64"
SELECT = "SELECT toDate(ts) AS day, site_id, visitor_id FROM {hits} GROUP BY day, site_id, visitor_id"


def up(r: Renderer) -> list[str]:
    # Both tables alike (MOVE PARTITION requires it), unpartitioned: the whole queue is one
    # partition, 'all'. The same sharding as hits, so a shard's arrivals are its own visitors'.
    tables = [
        statement
        for table in (TABLE, f"{TABLE}_taken")
        for statement in r.create_table(
            table, COLUMNS, order_by="(day, site_id, visitor_id)", family="ReplacingMergeTree",
            sharding_key="cityHash64(site_id, visitor_id)",
        )
    ]
    return [*tables, r.create_materialized_view(f"{TABLE}_mv", TABLE, SELECT.format(hits=r.local_name("hits")))]


def down(r: Renderer) -> list[str]:
    out = [f"DROP VIEW IF EXISTS {r.database}.{TABLE}_mv{r.on_cluster}"]
    for table in (f"{TABLE}_taken", TABLE):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
