"""The establishments referential (annuaire + collèges + pupil counts), one row per UAI,
plus a stage table for atomic reloads and the `etablissements_dict` dictionary other SQL reads."""

from __future__ import annotations

from aggregator.ddl import Renderer

# (name, ClickHouse type, dictionary type). The dictionary repeats every attribute so SQL can
# `dictGetOrDefault('dnma.etablissements_dict', 'academie', tuple(uai), '')`.
ETABLISSEMENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("uai", "String", "String"),
    ("nom", "String", "String"),
    ("code_nature", "UInt16", "UInt16"),
    ("libelle_nature", "String", "String"),
    ("degre", "LowCardinality(String)", "String"),  # '1D' (nature 1xx), '2D' (3xx), '' otherwise
    ("type_etablissement", "LowCardinality(String)", "String"),
    ("secteur", "LowCardinality(String)", "String"),  # 'PU' / 'PR'
    ("commune_code", "String", "String"),
    ("commune", "String", "String"),
    ("departement_code", "LowCardinality(String)", "String"),  # as the annuaire writes it: '035', '2A'
    ("departement", "LowCardinality(String)", "String"),
    ("departement_iso", "LowCardinality(String)", "String"),  # 'FR-35', 'FR-2A', 'FR-RE'
    ("academie_code", "LowCardinality(String)", "String"),
    ("academie", "LowCardinality(String)", "String"),
    ("region_code", "LowCardinality(String)", "String"),
    ("region", "LowCardinality(String)", "String"),
    ("region_iso", "LowCardinality(String)", "String"),  # 'FR-BRE', overseas 'FR-RE'
    ("circonscription", "String", "String"),
    ("ministere", "LowCardinality(String)", "String"),
    ("latitude", "Float64", "Float64"),
    ("longitude", "Float64", "Float64"),
    ("eleves", "UInt32", "UInt32"),  # 0 = unknown
    ("source", "LowCardinality(String)", "String"),
    ("loaded_at", "DateTime", "DateTime"),
)

TABLE = "etablissements"
STAGE = "etablissements_stage"
DICTIONARY = "etablissements_dict"


def _columns() -> str:
    return ",\n  ".join(f"`{name}` {ch_type}" for name, ch_type, _ in ETABLISSEMENT_COLUMNS)


def _table(r: Renderer, table: str) -> list[str]:
    # One partition (tuple()) so a reload is `REPLACE PARTITION tuple() FROM stage`: atomic,
    # replicated in a cluster, never duplicating. ReplacingMergeTree is a second guard if someone
    # inserts twice by hand (read with FINAL then).
    return r.create_table(
        table,
        _columns(),
        order_by="uai",
        family="ReplacingMergeTree",
        engine_args="loaded_at",
        partition_by="tuple()",
        sharding_key="cityHash64(uai)",
    )


def create_dictionary(r: Renderer) -> str:
    # No DEFAULT: an unknown key gets the type's default, callers pass their own to dictGetOrDefault.
    attributes = ",\n  ".join(f"`{name}` {dict_type}" for name, _, dict_type in ETABLISSEMENT_COLUMNS)
    return (
        f"CREATE DICTIONARY IF NOT EXISTS {r.database}.{DICTIONARY}{r.on_cluster} (\n  {attributes}\n)\n"
        f"PRIMARY KEY uai\n"
        f"SOURCE(CLICKHOUSE(TABLE '{TABLE}' DB '{r.database}'))\n"
        # The referential changes a few times a year; the loader also reloads it explicitly.
        f"LAYOUT(COMPLEX_KEY_HASHED())\n"
        f"LIFETIME(MIN 60 MAX 300)"
    )


def up(r: Renderer) -> list[str]:
    return [*_table(r, TABLE), *_table(r, STAGE), create_dictionary(r)]


def down(r: Renderer) -> list[str]:
    out = [f"DROP DICTIONARY IF EXISTS {r.database}.{DICTIONARY}{r.on_cluster}"]
    for table in (STAGE, TABLE):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
