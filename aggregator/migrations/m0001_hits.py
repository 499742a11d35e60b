"""The raw hits table, partitioned by (Paris) month, expiring after the configured TTL."""

from __future__ import annotations

from aggregator.ddl import Renderer
from dnma.hits import HIT_COLUMNS

# Paris day first: the sessionizer reads one day at a time, and a day is then one key range
# (`site_id IN (...)` inside it as well). Tables created before m0007 had the site first; m0007
# copies them into this order.
ORDER_BY = "(toDate(ts), site_id, visitor_id, ts)"
# Insert deduplication by token on a non-replicated table: the loader's exactly-once.
SETTINGS = "non_replicated_deduplication_window = 10000, index_granularity = 8192"


def ttl(r: Renderer) -> str:
    return f"ts + INTERVAL {r.hits_ttl_months} MONTH"


def up(r: Renderer) -> list[str]:
    columns = ",\n  ".join(f"`{name}` {ch_type}" for name, ch_type, _ in HIT_COLUMNS)
    return r.create_table(
        "hits",
        columns,
        order_by=ORDER_BY,
        partition_by="toYYYYMM(ts)",
        ttl=ttl(r),
        settings=SETTINGS,
        sharding_key="cityHash64(site_id, visitor_id)",
    )


def down(r: Renderer) -> list[str]:
    out = [f"DROP TABLE IF EXISTS {r.name('hits')}{r.on_cluster}"]
    if r.cluster:
        out.append(f"DROP TABLE IF EXISTS {r.local_name('hits')}{r.on_cluster}")
    return out
