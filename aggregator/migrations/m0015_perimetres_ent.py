"""`perimetres_ent`: the establishments of each site's declared perimeter (sites registry ×
referential), one row per (site, UAI), the tagging denominator of dnma.indicators. Rewritten whole
through its stage table when the registry or the referential changes (aggregator.checks.perimetres),
so SQL readers (Superset's datasets, the coverage check) see an ENT's declared perimeter."""

from __future__ import annotations

from aggregator.ddl import Renderer

COLUMNS = (
    ("site_id", "UInt32"),
    ("projet", "String"),
    ("uai", "String"),
    ("degre", "LowCardinality(String)"),
    ("departement", "LowCardinality(String)"),
    ("academie", "LowCardinality(String)"),
    ("region", "LowCardinality(String)"),
    ("loaded_at", "DateTime"),
)
TABLE = "perimetres_ent"
STAGE = "perimetres_ent_stage"


def _table(r: Renderer, table: str) -> list[str]:
    # One partition (tuple()): a rewrite is `REPLACE PARTITION tuple() FROM stage`, atomic.
    return r.create_table(
        table,
        ",\n  ".join(f"`{name}` {ch_type}" for name, ch_type in COLUMNS),
        order_by="(projet, site_id, uai)",
        family="ReplacingMergeTree",
        engine_args="loaded_at",
        partition_by="tuple()",
        sharding_key="cityHash64(uai)",
    )


def up(r: Renderer) -> list[str]:
    return [*_table(r, TABLE), *_table(r, STAGE)]


def down(r: Renderer) -> list[str]:
    out = []
    for table in (STAGE, TABLE):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
