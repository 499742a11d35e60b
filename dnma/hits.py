"""The columns of `dnma.hits`: the contract between the collector (which builds rows) and the
aggregator (which creates the table and inserts rows). One spool record = one row, as a dict of
the columns the hit sets (the collector leaves out the others: ClickHouse gives them their type's
default, which the defaults below match, `action` aside: always set).
"""

from __future__ import annotations

from typing import Any

# (name, ClickHouse type, default for a missing key). Order = insert order.
# `ts` and `received_at` travel in the spool as unix seconds (int).
# Codecs are explicit (the server default may be LZ4, which stores pv_id, url and title much
# larger: bench/README.md): times are sorted within a visitor (the sort key), so Delta first.
HIT_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("ts", "DateTime('Europe/Paris') CODEC(Delta, ZSTD(1))", 0),
    ("received_at", "DateTime('Europe/Paris') CODEC(Delta, ZSTD(1))", 0),
    ("site_id", "UInt32", 0),
    ("action", "LowCardinality(String) CODEC(ZSTD(1))", "pageview"),
    ("url", "String CODEC(ZSTD(3))", ""),
    ("title", "String CODEC(ZSTD(3))", ""),
    ("referrer", "String CODEC(ZSTD(3))", ""),
    ("campaign", "String CODEC(ZSTD(3))", ""),
    ("uai", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("service", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("type", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("outil", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("profil", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("projet", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("exploitant", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("plateforme", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("visitor_id", "UInt64 CODEC(Delta, ZSTD(1))", 0),  # 16 hex of _id/cid/uid-hash/fingerprint, as a number
    ("user_hash", "UInt64 CODEC(ZSTD(1))", 0),  # keyed hash of uid; 0 = no uid
    ("new_visit", "UInt8", 0),
    ("device", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("os", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("browser", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("event_category", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("event_action", "LowCardinality(String) CODEC(ZSTD(1))", ""),
    ("event_name", "String CODEC(ZSTD(3))", ""),
    ("event_value", "Nullable(Float64)", None),
    ("search_keyword", "String CODEC(ZSTD(3))", ""),
    ("search_category", "String CODEC(ZSTD(3))", ""),
    ("search_count", "Nullable(UInt32)", None),
    ("goal_id", "UInt32", 0),
    ("revenue", "Nullable(Float64)", None),
    ("pv_id", "String CODEC(ZSTD(3))", ""),
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
