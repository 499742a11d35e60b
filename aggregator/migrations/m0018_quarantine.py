"""The quarantine of refused tracking requests (dnma/quarantine.py): `quarantine`, one row per
refused request as kept (no IP, uid hashed, no token), a newer version of the row when a replay
finds a new reason, a deleted version once a replay stored or excluded it; and
`quarantine_evictions`, the records the bounds (TTL, caps) dropped, counted by day, site, reason."""

from __future__ import annotations

from aggregator.ddl import Renderer

COLUMNS = (
    "`id` String",
    "`version` UInt64",
    "`deleted` UInt8",
    "`received_at` DateTime('Europe/Paris')",
    "`site_id` UInt32",
    "`reason` LowCardinality(String)",
    "`detail` String",
    "`request` Map(String, String) CODEC(ZSTD(3))",
    "`headers` Map(String, String) CODEC(ZSTD(3))",
    "`user_hash` UInt64",
    "`visitor_id` UInt64",
    "`visitor_id_auth` UInt64",
    "`ip_excluded` UInt8",
    "`bulk` UInt8",
)


def up(r: Renderer) -> list[str]:
    return [
        # (site_id, id): a record's versions meet in one key; a site's records are one key range.
        # Insert deduplication by token: the loader's exactly-once, as for `hits`.
        *r.create_table(
            "quarantine",
            ",\n  ".join(COLUMNS),
            order_by="(site_id, id)",
            family="ReplacingMergeTree",
            engine_args="version, deleted",
            settings="non_replicated_deduplication_window = 10000",
            sharding_key="site_id",
        ),
        *r.create_table(
            "quarantine_evictions",
            "`day` Date, `site_id` UInt32, `reason` LowCardinality(String), `cause` LowCardinality(String), "
            "`records` UInt64",
            order_by="(day, site_id, reason, cause)",
            family="SummingMergeTree",
            engine_args="records",
            sharding_key="site_id",
        ),
    ]


def down(r: Renderer) -> list[str]:
    out = []
    for table in ("quarantine_evictions", "quarantine"):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
