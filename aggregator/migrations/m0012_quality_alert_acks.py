"""Acknowledged quality alerts: `quality_alert_acks`, one row per acknowledgement of an open alert
(`dnma checks ack`), who and when. It holds the alert's `first_seen`: the acknowledgement covers that
occurrence only, an alert that resolves and opens again is unacknowledged."""

from __future__ import annotations

from aggregator.ddl import Renderer


def up(r: Renderer) -> list[str]:
    return r.create_table(
        "quality_alert_acks",
        "`check` LowCardinality(String), `scope_kind` LowCardinality(String), `scope_value` String, "
        "`window` LowCardinality(String), `first_seen` DateTime('Europe/Paris'), "
        "`acked_at` DateTime('Europe/Paris'), `acked_by` String, `note` String",
        order_by="(`check`, `scope_kind`, `scope_value`, `window`, `first_seen`)",
        family="ReplacingMergeTree",
        engine_args="acked_at",
        sharding_key="cityHash64(`check`, `scope_kind`, `scope_value`, `window`)",
    )


def down(r: Renderer) -> list[str]:
    out = [f"DROP TABLE IF EXISTS {r.name('quality_alert_acks')}{r.on_cluster}"]
    if r.cluster:
        out.append(f"DROP TABLE IF EXISTS {r.local_name('quality_alert_acks')}{r.on_cluster}")
    return out
