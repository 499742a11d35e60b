"""`projets_ent`: each ENT project code of the sites registry (`projet`) with its readable name
(the registry's site name; the names of its sites, by id, when several share the code), so that
charts show "ENT 35 1D" where the hits carry ENT_35_1D. Rewritten whole through its stage table
with `perimetres_ent` when the registry changes (aggregator.checks.perimetres)."""

from __future__ import annotations

from aggregator.ddl import Renderer

COLUMNS = (
    ("projet", "String"),
    ("nom", "String"),
    ("loaded_at", "DateTime"),
)
TABLE = "projets_ent"
STAGE = "projets_ent_stage"


def _table(r: Renderer, table: str) -> list[str]:
    # One partition (tuple()): a rewrite is `REPLACE PARTITION tuple() FROM stage`, atomic.
    return r.create_table(
        table,
        ",\n  ".join(f"`{name}` {ch_type}" for name, ch_type in COLUMNS),
        order_by="projet",
        family="ReplacingMergeTree",
        engine_args="loaded_at",
        partition_by="tuple()",
        sharding_key="cityHash64(projet)",
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
