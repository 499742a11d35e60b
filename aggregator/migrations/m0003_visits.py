"""Visits computed from dnma.hits: `visits` (one partition per site-local day, swapped atomically
from `visits_stage`) and `visits_fingerprints` (what each day looked like when it was last built).

Superset dataset: `dnma.visits` (one row per visit; services/outils are arrays: use ARRAY JOIN or
`has(services, 'notes')`).
"""

from __future__ import annotations

from aggregator.ddl import Renderer

PARIS_DATETIME = "DateTime('Europe/Paris')"
LC = "LowCardinality(String)"
# Codecs (types and names are the public contract, codecs are not): times and visitor ids are
# sorted within a site × uai, small counters keep their low bytes only (10 -> 7.5 bytes a hit).
DELTA = " CODEC(Delta, ZSTD(1))"
SMALL = " CODEC(T64, ZSTD(1))"

# Public columns: the exports and the reporting API read them by name.
VISIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("visit_id", "UInt64"),  # cityHash64(site, visitor, start, first hit's content hash): stable
    ("site_id", "UInt32"),
    ("day", "Date"),  # the day in the site's time zone (Europe/Paris unless the registry says)
    ("start", PARIS_DATETIME + DELTA),
    ("end", PARIS_DATETIME + DELTA),
    ("duration", "UInt32" + SMALL),  # seconds, last - first + 1
    ("actions", "UInt32" + SMALL),  # pageviews + downloads + outlinks + searches + events
    ("pageviews", "UInt32" + SMALL),
    ("events", "UInt32" + SMALL),
    ("downloads", "UInt32" + SMALL),
    ("outlinks", "UInt32" + SMALL),
    ("searches", "UInt32" + SMALL),
    ("hits", "UInt32" + SMALL),  # hits kept in the visit, pings included
    ("is_bounce", "UInt8"),  # at most one action
    ("visitor_id", "UInt64" + DELTA),
    ("user_hash", "UInt64"),  # first non-zero uid hash of the visit, 0 = no uid
    ("uai", LC),  # uai/profil/device/os/browser/projet: the first hit carrying a non-empty value
    ("profil", LC),
    ("device", LC),
    ("os", LC),
    ("browser", LC),
    ("services", f"Array({LC})"),  # every service touched, sorted
    ("outils", f"Array({LC})"),
    ("type_natif", "UInt8"),
    ("type_tiers", "UInt8"),
    ("projet", LC),
    ("campaign", "String"),  # campaign of the visit's first hit
    # From the referential dictionary when the visit was built ('' when the UAI is unknown).
    ("degre", LC),
    ("academie", LC),
    ("departement", LC),
    ("region", LC),
    ("nature", LC),
    ("secteur", LC),
)

VISIT_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in VISIT_COLUMNS)


def _visits_table(r: Renderer, table: str) -> list[str]:
    # Explicit ZSTD where no codec is given: the server default may be LZ4 (7.7 -> 5.9 bytes a hit).
    columns = ",\n  ".join(f"`{name}` {ch_type}{'' if 'CODEC' in ch_type else ' CODEC(ZSTD(1))'}"
                           for name, ch_type in VISIT_COLUMNS)
    # Partition = day, so a rebuilt day replaces its partition in one atomic ALTER.
    return r.create_table(
        table,
        columns,
        order_by="(site_id, uai, visitor_id, start, visit_id)",
        partition_by="day",
        sharding_key="cityHash64(site_id, visitor_id)",
    )


def up(r: Renderer) -> list[str]:
    return [
        *_visits_table(r, "visits"),
        # Same structure and partition key: REPLACE PARTITION requires it.
        *_visits_table(r, "visits_stage"),
        *r.create_table(
            "visits_fingerprints",
            "day Date, hits UInt64, hash UInt64, built_at DateTime64(6, 'Europe/Paris')",
            order_by="day",
            family="ReplacingMergeTree",
            engine_args="built_at",
            sharding_key="toUInt32(day)",
        ),
    ]


def down(r: Renderer) -> list[str]:
    out = []
    for table in ("visits_fingerprints", "visits_stage", "visits"):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
