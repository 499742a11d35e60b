"""Quality-check results: `quality_alerts` (one row version per finding, latest wins), the view
`quality_alerts_current` readers use, and `quality_check_runs` (last run of every check)."""

from __future__ import annotations

from aggregator.ddl import Renderer

PARIS_DATETIME = "DateTime('Europe/Paris')"

ALERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("check", "LowCardinality(String)"),
    ("scope_kind", "LowCardinality(String)"),  # site / projet / academie / uai / pipeline
    ("scope_value", "String"),
    ("window", "LowCardinality(String)"),  # the window's label ('24h', '1d', '30d') or explicit bounds
    ("severity", "LowCardinality(String)"),  # info / warning / critical
    ("observed", "Float64"),
    ("expected", "Float64"),
    ("window_start", PARIS_DATETIME),
    ("window_end", PARIS_DATETIME),
    ("first_seen", PARIS_DATETIME),
    ("last_seen", PARIS_DATETIME),
    ("status", "LowCardinality(String)"),  # open / resolved
    ("message", "String"),  # short French text for the dashboard
    ("details", "String"),  # JSON: top values, band, per-property shares
    ("version", "UInt64"),  # microseconds of the run: the latest row of a key wins
)
ALERT_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in ALERT_COLUMNS)
ALERT_KEY: tuple[str, ...] = ("check", "scope_kind", "scope_value", "window")


def up(r: Renderer) -> list[str]:
    columns = ",\n  ".join(f"`{name}` {ch_type}" for name, ch_type in ALERT_COLUMNS)
    key = ", ".join(f"`{k}`" for k in ALERT_KEY)
    return [
        *r.create_table(
            "quality_alerts",
            columns,
            order_by=f"({key})",
            family="ReplacingMergeTree",
            engine_args="version",
            # Every version of a key on one shard, so FINAL collapses them.
            sharding_key=f"cityHash64({key})",
        ),
        # FINAL on a small table is cheap and exact; readers never see two versions of a key.
        f"CREATE VIEW IF NOT EXISTS {r.name('quality_alerts_current')}{r.on_cluster} AS "
        f"SELECT * FROM {r.name('quality_alerts')} FINAL",
        *r.create_table(
            "quality_check_runs",
            "`check` LowCardinality(String), `ran_at` DateTime64(3, 'Europe/Paris'), `duration_ms` Float64, "
            "`findings` UInt32, `skipped` UInt32, `error` String",
            order_by="`check`",
            family="ReplacingMergeTree",
            engine_args="ran_at",
            sharding_key="cityHash64(`check`)",
        ),
    ]


def down(r: Renderer) -> list[str]:
    out = [f"DROP VIEW IF EXISTS {r.name('quality_alerts_current')}{r.on_cluster}"]
    for table in ("quality_check_runs", "quality_alerts"):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
