"""The establishments referential kept per school year: `etablissements_annees` (one row per
(annee, uai), one partition per year, so loading the 2026 annuaire keeps the 2025 one), its stage
table and the `etablissements_annees_dict` dictionary keyed by (annee, uai).

`annee` is the year the school year starts (2026 = 2026-2027). `etablissements` (m0002) stays as
it is: the referential of the latest year loaded, what "now" views read (deployment census, unknown
UAIs). Rows already in `etablissements` are copied in as the school year of their `loaded_at`."""

from __future__ import annotations

from aggregator.ddl import Renderer

# A copy of m0002's columns (a migration never imports another's list), `annee` first.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("annee", "UInt16", "UInt16"),
    ("uai", "String", "String"),
    ("nom", "String", "String"),
    ("code_nature", "UInt16", "UInt16"),
    ("libelle_nature", "String", "String"),
    ("degre", "LowCardinality(String)", "String"),
    ("type_etablissement", "LowCardinality(String)", "String"),
    ("secteur", "LowCardinality(String)", "String"),
    ("commune_code", "String", "String"),
    ("commune", "String", "String"),
    ("departement_code", "LowCardinality(String)", "String"),
    ("departement", "LowCardinality(String)", "String"),
    ("departement_iso", "LowCardinality(String)", "String"),
    ("academie_code", "LowCardinality(String)", "String"),
    ("academie", "LowCardinality(String)", "String"),
    ("region_code", "LowCardinality(String)", "String"),
    ("region", "LowCardinality(String)", "String"),
    ("region_iso", "LowCardinality(String)", "String"),
    ("circonscription", "String", "String"),
    ("ministere", "LowCardinality(String)", "String"),
    ("latitude", "Float64", "Float64"),
    ("longitude", "Float64", "Float64"),
    ("eleves", "UInt32", "UInt32"),
    ("source", "LowCardinality(String)", "String"),
    ("loaded_at", "DateTime", "DateTime"),
)

TABLE = "etablissements_annees"
STAGE = "etablissements_annees_stage"
DICTIONARY = "etablissements_annees_dict"


def _table(r: Renderer, table: str) -> list[str]:
    # One partition per school year: a year's reload is `REPLACE PARTITION <annee> FROM stage`,
    # atomic and leaving the other years alone. ReplacingMergeTree as in m0002 (read with FINAL).
    return r.create_table(
        table,
        ",\n  ".join(f"`{name}` {ch_type}" for name, ch_type, _ in COLUMNS),
        order_by="(annee, uai)",
        family="ReplacingMergeTree",
        engine_args="loaded_at",
        partition_by="annee",
        sharding_key="cityHash64(uai)",
    )


def up(r: Renderer) -> list[str]:
    names = ", ".join(f"`{name}`" for name, _, _ in COLUMNS[1:])
    attributes = ",\n  ".join(f"`{name}` {dict_type}" for name, _, dict_type in COLUMNS)
    # The school year starts on 1 August (spec/INDICATORS.md). A cluster's statements all run ON
    # CLUSTER, which INSERT cannot: there, as for m0005's backfill, the next `referentiel load` fills it.
    backfill = [] if r.cluster else [
        f"INSERT INTO {r.name(TABLE)} (`annee`, {names}) "
        f"SELECT toUInt16(toYear(loaded_at) - (toMonth(loaded_at) < 8)), {names} "
        f"FROM {r.name('etablissements')} FINAL"]
    return [
        *_table(r, TABLE),
        *_table(r, STAGE),
        *backfill,
        f"CREATE DICTIONARY IF NOT EXISTS {r.database}.{DICTIONARY}{r.on_cluster} (\n  {attributes}\n)\n"
        f"PRIMARY KEY annee, uai\n"
        f"SOURCE(CLICKHOUSE(TABLE '{TABLE}' DB '{r.database}'))\n"
        f"LAYOUT(COMPLEX_KEY_HASHED())\n"
        f"LIFETIME(MIN 60 MAX 300)",
    ]


def down(r: Renderer) -> list[str]:
    out = [f"DROP DICTIONARY IF EXISTS {r.database}.{DICTIONARY}{r.on_cluster}"]
    for table in (STAGE, TABLE):
        out.append(f"DROP TABLE IF EXISTS {r.name(table)}{r.on_cluster}")
        if r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(table)}{r.on_cluster}")
    return out
