"""The columns of `dnma.hits`: the contract between the collector (which builds rows) and the
aggregator (which creates the table and inserts rows). One spool record = one row, as a dict.
"""

from __future__ import annotations

from typing import Any

# (name, ClickHouse type, default for a missing key). Order = insert order.
# `ts` and `received_at` travel in the spool as unix seconds (int).
HIT_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("ts", "DateTime('Europe/Paris')", 0),
    ("received_at", "DateTime('Europe/Paris')", 0),
    ("site_id", "UInt32", 0),
    ("action", "LowCardinality(String)", "pageview"),
    ("url", "String", ""),
    ("title", "String", ""),
    ("referrer", "String", ""),
    ("campaign", "String", ""),
    ("uai", "LowCardinality(String)", ""),
    ("service", "LowCardinality(String)", ""),
    ("type", "LowCardinality(String)", ""),
    ("outil", "LowCardinality(String)", ""),
    ("profil", "LowCardinality(String)", ""),
    ("projet", "LowCardinality(String)", ""),
    ("exploitant", "LowCardinality(String)", ""),
    ("plateforme", "LowCardinality(String)", ""),
    ("visitor_id", "UInt64", 0),  # 16 hex of _id/cid/uid-hash/fingerprint, as a number
    ("user_hash", "UInt64", 0),  # keyed hash of uid; 0 = no uid
    ("new_visit", "UInt8", 0),
    ("device", "LowCardinality(String)", ""),
    ("os", "LowCardinality(String)", ""),
    ("browser", "LowCardinality(String)", ""),
    ("event_category", "LowCardinality(String)", ""),
    ("event_action", "LowCardinality(String)", ""),
    ("event_name", "String", ""),
    ("event_value", "Nullable(Float64)", None),
    ("search_keyword", "String", ""),
    ("search_category", "String", ""),
    ("search_count", "Nullable(UInt32)", None),
    ("goal_id", "UInt32", 0),
    ("revenue", "Nullable(Float64)", None),
    ("pv_id", "String", ""),
    ("dimensions", "Map(LowCardinality(String), String)", {}),  # free custom dimensions: {"dimension9": "..."}
    ("flags", "Array(LowCardinality(String))", []),  # doubtful DNMA data: invalid_uai, missing_uai, ...
)

HIT_COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in HIT_COLUMNS)
HIT_DEFAULTS: dict[str, Any] = {c[0]: c[2] for c in HIT_COLUMNS}

# Flags a hit may carry (kept and flagged, never dropped; excluded from indicators).
FLAGS: tuple[str, ...] = (
    "missing_uai",
    "invalid_uai",  # bad format, bad département prefix or bad check letter
    "missing_service",
    "unknown_service",
    "missing_type",
    "unknown_type",
    "missing_profil",
    "unknown_profil",
    "outside_perimeter",  # UAI's département outside the site's declared territory
)
