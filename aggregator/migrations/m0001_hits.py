"""The raw hits table, partitioned by (Paris) month. Its TTL is not here: it follows a setting that
varies per install, and the loader sets it at start (aggregator.retention)."""

from __future__ import annotations

from aggregator.ddl import Renderer

# The columns as shipped (dnma.hits describes them; a column added there needs a new migration).
COLUMNS = (
    "`ts` DateTime('Europe/Paris') CODEC(Delta, ZSTD(1))",
    "`received_at` DateTime('Europe/Paris') CODEC(Delta, ZSTD(1))",
    "`site_id` UInt32",
    "`action` LowCardinality(String) CODEC(ZSTD(1))",
    "`url` String CODEC(ZSTD(3))",
    "`title` String CODEC(ZSTD(3))",
    "`referrer` String CODEC(ZSTD(3))",
    "`campaign` String CODEC(ZSTD(3))",
    "`uai` LowCardinality(String) CODEC(ZSTD(1))",
    "`service` LowCardinality(String) CODEC(ZSTD(1))",
    "`type` LowCardinality(String) CODEC(ZSTD(1))",
    "`outil` LowCardinality(String) CODEC(ZSTD(1))",
    "`profil` LowCardinality(String) CODEC(ZSTD(1))",
    "`projet` LowCardinality(String) CODEC(ZSTD(1))",
    "`exploitant` LowCardinality(String) CODEC(ZSTD(1))",
    "`plateforme` LowCardinality(String) CODEC(ZSTD(1))",
    "`visitor_id` UInt64 CODEC(Delta, ZSTD(1))",
    "`user_hash` UInt64 CODEC(ZSTD(1))",
    "`new_visit` UInt8",
    "`device` LowCardinality(String) CODEC(ZSTD(1))",
    "`os` LowCardinality(String) CODEC(ZSTD(1))",
    "`browser` LowCardinality(String) CODEC(ZSTD(1))",
    "`event_category` LowCardinality(String) CODEC(ZSTD(1))",
    "`event_action` LowCardinality(String) CODEC(ZSTD(1))",
    "`event_name` String CODEC(ZSTD(3))",
    "`event_value` Nullable(Float64)",
    "`search_keyword` String CODEC(ZSTD(3))",
    "`search_category` String CODEC(ZSTD(3))",
    "`search_count` Nullable(UInt32)",
    "`goal_id` UInt32",
    "`revenue` Nullable(Float64)",
    "`pv_id` String CODEC(ZSTD(3))",
    "`dimensions` Map(LowCardinality(String), String)",
    "`flags` Array(LowCardinality(String))",
)

# Paris day first: the sessionizer reads one day at a time, and a day is then one key range
# (`site_id IN (...)` inside it as well). Tables created before m0007 had the site first; m0007
# copies them into this order.
ORDER_BY = "(toDate(ts), site_id, visitor_id, ts)"
# Insert deduplication by token on a non-replicated table: the loader's exactly-once.
SETTINGS = "non_replicated_deduplication_window = 10000, index_granularity = 8192"


def up(r: Renderer) -> list[str]:
    return r.create_table(
        "hits",
        ",\n  ".join(COLUMNS),
        order_by=ORDER_BY,
        partition_by="toYYYYMM(ts)",
        settings=SETTINGS,
        sharding_key="cityHash64(site_id, visitor_id)",
    )


def down(r: Renderer) -> list[str]:
    out = [f"DROP TABLE IF EXISTS {r.name('hits')}{r.on_cluster}"]
    if r.cluster:
        out.append(f"DROP TABLE IF EXISTS {r.local_name('hits')}{r.on_cluster}")
    return out
