"""The establishments referential: reads the annuaire de l'éducation (2023 and 2026 schemas), the
collèges geolocation and the pupil counts, merges them per UAI and reloads `dnma.etablissements`."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from aggregator.geo_codes import departement_code, departement_iso, region_iso
from aggregator.migrations.m0002_etablissements import ETABLISSEMENT_COLUMNS, STAGE, TABLE
from dnma import clock
from dnma.uai import normalise

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in ETABLISSEMENT_COLUMNS)
# Files above this size get a progress bar even when stderr is not a terminal (the national annuaire).
PROGRESS_MIN_BYTES = 5 * 1024**2


class Kind(StrEnum):
    ANNUAIRE_2023 = "annuaire_2023"
    ANNUAIRE_2026 = "annuaire_2026"
    COLLEGES = "colleges"
    EFFECTIFS_1D = "effectifs_1d"
    EFFECTIFS_2D = "effectifs_2d"


def detect_kind(header: Iterable[str]) -> Kind:
    """The file kind from its header (column names, BOM already stripped)."""
    cols = set(header)
    if "Identifiant_de_l_etablissement" in cols:
        if "coordX_origine" in cols or "multi_uai" in cols or "code_circonscription" in cols:
            return Kind.ANNUAIRE_2026
        if "Nombre_d_eleves" in cols or "coordonnee_X" in cols:
            return Kind.ANNUAIRE_2023
    if "numero_uai" in cols and "nature_uai" in cols:
        return Kind.COLLEGES
    if "Numéro de l'école" in cols and "Nombre total d'élèves" in cols:
        return Kind.EFFECTIFS_1D
    if "Numero_d_etablissement" in cols and "Nombre_d_eleves" in cols:
        return Kind.EFFECTIFS_2D
    raise ValueError(f"unknown referential file (header starts {sorted(cols)[:6]})")


# --- field rules -------------------------------------------------------------------------


def degre(code_nature: int) -> str:
    """TAGGING.md: nature 1xx -> 1D (écoles), 3xx -> 2D (collèges, lycées)."""
    if 100 <= code_nature < 200:
        return "1D"
    if 300 <= code_nature < 400:
        return "2D"
    return ""


def secteur(statut: str) -> str:
    s = statut.strip().lower()
    if s.startswith("pu"):
        return "PU"
    if s.startswith("pr"):
        return "PR"
    return ""


def _int(raw: str | None) -> int:
    try:
        return max(0, int((raw or "").strip().replace(" ", "")))
    except ValueError:
        return 0


def _float(raw: str | None) -> float:
    """0.0 stands for unknown coordinates (no NaN: Superset's maps choke on it)."""
    try:
        return float((raw or "").strip().replace(",", "."))
    except ValueError:
        return 0.0


def _type_from_nature(code_nature: int) -> str:
    """The collèges file has no Type_etablissement: derive it as the annuaire spells it."""
    if 100 <= code_nature < 200:
        return "Ecole"
    if 340 <= code_nature < 360:
        return "Collège"
    if 300 <= code_nature < 340:
        return "Lycée"
    return ""


def _etablissement(
    *,
    uai: str,
    nom: str,
    code_nature: str,
    libelle_nature: str,
    type_etablissement: str,
    statut: str,
    commune_code: str,
    commune: str,
    departement: str,
    departement_label: str,
    academie_code: str,
    academie: str,
    region_code: str,
    region: str,
    circonscription: str,
    ministere: str,
    latitude: str,
    longitude: str,
    eleves: str | None,
    source: Kind,
) -> dict[str, Any]:
    nature = _int(code_nature)
    dep = departement_code(departement)
    return {
        "uai": normalise(uai),
        "nom": nom.strip(),
        "code_nature": nature,
        "libelle_nature": libelle_nature.strip(),
        "degre": degre(nature),
        "type_etablissement": type_etablissement.strip() or _type_from_nature(nature),
        "secteur": secteur(statut),
        "commune_code": commune_code.strip(),
        "commune": commune.strip(),
        "departement_code": dep,
        "departement": departement_label.strip(),
        "departement_iso": departement_iso(dep),
        "academie_code": academie_code.strip(),
        "academie": academie.strip(),
        "region_code": region_code.strip(),
        "region": region.strip(),
        "region_iso": region_iso(region_code, dep),
        "circonscription": circonscription.strip(),
        "ministere": ministere.strip(),
        "latitude": _float(latitude),
        "longitude": _float(longitude),
        "eleves": _int(eleves),
        "source": str(source),
    }


# --- readers (no ClickHouse: unit-testable) --------------------------------------------


def _show_progress(path: Path) -> bool:
    return sys.stderr.isatty() or path.stat().st_size > PROGRESS_MIN_BYTES


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """Stream the `;`-separated, BOM-prefixed rows, with a progress bar on large files."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=";")
        if not _show_progress(path):
            yield from reader
            return
        from tqdm import tqdm

        with path.open("rb") as raw:
            total = max(0, sum(1 for _ in raw) - 1)
        yield from tqdm(reader, total=total, desc=path.name, unit=" lignes", file=sys.stderr)


def file_kind(path: Path) -> Kind:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return detect_kind(next(csv.reader(f, delimiter=";"), []))


def read_file(path: Path) -> tuple[Kind, Iterator[dict[str, Any]]]:
    """The file's kind and its rows: establishment dicts (annuaire, collèges) or
    {'uai', 'eleves', 'annee'} (pupil counts)."""
    kind = file_kind(path)
    return kind, _READERS[kind](_rows(path), kind)


# Which source column fills each field of an establishment, per file kind (None: left empty).
_ANNUAIRE_COLUMNS: dict[str, str | None] = {
    "uai": "Identifiant_de_l_etablissement", "nom": "Nom_etablissement", "code_nature": "code_nature",
    "libelle_nature": "libelle_nature", "type_etablissement": "Type_etablissement",
    "statut": "Statut_public_prive", "commune_code": "Code_commune", "commune": "Nom_commune",
    "departement": "Code_departement", "departement_label": "Libelle_departement",
    "academie_code": "Code_academie", "academie": "Libelle_academie", "region_code": "Code_region",
    "region": "Libelle_region", "circonscription": "nom_circonscription", "ministere": "ministere_tutelle",
    "latitude": "latitude", "longitude": "longitude",
}
_COLLEGES_COLUMNS: dict[str, str | None] = {
    "uai": "numero_uai", "nom": "appellation_officielle", "code_nature": "nature_uai",
    "libelle_nature": "nature_uai_libe", "type_etablissement": None, "statut": "secteur_public_prive_libe",
    "commune_code": "code_commune", "commune": "libelle_commune", "departement": "code_departement",
    "departement_label": "libelle_departement", "academie_code": "code_academie",
    "academie": "libelle_academie", "region_code": "code_region", "region": "libelle_region",
    "circonscription": None, "ministere": "libelle_ministere", "latitude": "latitude", "longitude": "longitude",
}


def _read_establishments(columns: dict[str, str | None]) -> Any:
    def read(rows: Iterable[dict[str, str]], kind: Kind) -> Iterator[dict[str, Any]]:
        for row in rows:
            fields = {name: row.get(col, "") if col else "" for name, col in columns.items()}
            fields["uai"] = row[columns["uai"] or ""]
            # Only the 2023 annuaire carries pupil counts.
            yield _etablissement(**fields, eleves=row.get("Nombre_d_eleves"), source=kind)

    return read


def _read_effectifs(rows: Iterable[dict[str, str]], kind: Kind) -> Iterator[dict[str, Any]]:
    uai_col, eleves_col, annee_col = (
        ("Numéro de l'école", "Nombre total d'élèves", "Rentrée scolaire")
        if kind is Kind.EFFECTIFS_1D
        else ("Numero_d_etablissement", "Nombre_d_eleves", "Annee_scolaire")
    )
    for row in rows:
        # '2022' and '2018-2019' both sort chronologically as strings.
        yield {
            "uai": normalise(row[uai_col]),
            "eleves": _int(row[eleves_col]),
            "annee": row[annee_col].strip(),
        }


_READERS = {
    Kind.ANNUAIRE_2023: _read_establishments(_ANNUAIRE_COLUMNS),
    Kind.ANNUAIRE_2026: _read_establishments(_ANNUAIRE_COLUMNS),
    Kind.COLLEGES: _read_establishments(_COLLEGES_COLUMNS),
    Kind.EFFECTIFS_1D: _read_effectifs,
    Kind.EFFECTIFS_2D: _read_effectifs,
}


# --- merge ---------------------------------------------------------------------------------


@dataclass
class Referentiel:
    """Establishments by UAI, merged in a fixed order whatever the order of the files:
    annuaire rows replace, collèges rows complete empty fields, pupil counts (latest year) win."""

    etablissements: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add_annuaire(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            uai = row["uai"]
            if not uai:
                continue
            old = self.etablissements.get(uai)
            # etablissement_multi_lignes: one UAI on several rows, annexes included; keep the main one.
            if old is not None and old["source"] == row["source"] and "annexe" in row["nom"].lower():
                continue
            if old is not None and not row["eleves"]:
                row["eleves"] = old["eleves"]
            self.etablissements[uai] = row

    def add_colleges(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            uai = row["uai"]
            if not uai:
                continue
            old = self.etablissements.get(uai)
            if old is None or old["source"] == row["source"]:
                self.etablissements[uai] = row
                continue
            for key, value in row.items():
                if key != "source" and not old.get(key) and value:
                    old[key] = value

    def add_effectifs(self, rows: Iterable[dict[str, Any]]) -> None:
        latest: dict[str, tuple[str, int]] = {}
        for row in rows:
            seen = latest.get(row["uai"])
            if seen is None or row["annee"] >= seen[0]:
                latest[row["uai"]] = (row["annee"], row["eleves"])
        for uai, (_, eleves) in latest.items():
            if uai in self.etablissements and eleves:
                self.etablissements[uai]["eleves"] = eleves

    def add_files(self, paths: Iterable[Path]) -> None:
        by_kind: dict[Kind, list[Path]] = {}
        for path in paths:
            by_kind.setdefault(file_kind(path), []).append(path)
        for kind in Kind:  # the enum order is the merge order
            for path in by_kind.get(kind, []):
                _, rows = read_file(path)
                counted = _counting(rows, self.counts, str(kind))
                if kind in (Kind.ANNUAIRE_2023, Kind.ANNUAIRE_2026):
                    self.add_annuaire(counted)
                elif kind is Kind.COLLEGES:
                    self.add_colleges(counted)
                else:
                    self.add_effectifs(counted)


def _counting(rows: Iterable[dict[str, Any]], counts: dict[str, int], key: str) -> Iterator[dict[str, Any]]:
    counts.setdefault(key, 0)
    for row in rows:
        counts[key] += 1
        yield row


# --- ClickHouse ----------------------------------------------------------------------------


def _current(client: Any, database: str) -> dict[str, dict[str, Any]]:
    result = client.query(f"SELECT {', '.join(COLUMN_NAMES)} FROM {database}.{TABLE} FINAL")
    return {row[0]: dict(zip(COLUMN_NAMES, row, strict=True)) for row in result.result_rows}


def load_files(client: Any, settings: Any, paths: list[Path], *, replace: bool = False) -> dict[str, int]:
    """Merge the files onto the current referential (or onto nothing with replace=True) and swap
    the result in atomically. Rows read per kind, plus 'etablissements' (rows in the table).

    Loading the same files again gives the same table: the merge is keyed by UAI and the swap
    replaces the table's only partition (`REPLACE PARTITION tuple() FROM` the stage table).
    """
    from aggregator.migrate import renderer

    r = renderer(settings)
    ref = Referentiel()
    if not replace:
        for uai, row in _current(client, r.database).items():
            row.pop("loaded_at")
            ref.etablissements[uai] = row
    ref.add_files(paths)
    loaded_at = clock.now().replace(microsecond=0)
    rows = [[*(e[name] for name in COLUMN_NAMES[:-1]), loaded_at] for e in ref.etablissements.values()]

    on_cluster = r.on_cluster
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(STAGE)}{on_cluster}")
    if rows:
        client.insert(
            r.name(STAGE),
            rows,
            column_names=list(COLUMN_NAMES),
            # A cluster inserts through the Distributed stage: wait until every shard has its part.
            settings={"insert_distributed_sync": 1} if r.cluster else None,
        )
        client.command(
            f"ALTER TABLE {r.local_name(TABLE)}{on_cluster} REPLACE PARTITION tuple() FROM {r.local_name(STAGE)}"
        )
    else:
        client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(TABLE)}{on_cluster}")
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(STAGE)}{on_cluster}")
    client.command(f"SYSTEM RELOAD DICTIONARY{on_cluster} {r.database}.etablissements_dict")
    return {**ref.counts, "etablissements": len(rows)}


# --- CLI -----------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    load = sub.add_parser("load", help="load annuaire / collèges / pupil-count CSV files (kind detected)")
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument(
        "--replace", action="store_true", help="start from an empty referential instead of the current one"
    )


def run(args: argparse.Namespace) -> int:
    from aggregator.migrate import migrate
    from dnma.chclient import get_client
    from dnma.settings import get_settings

    settings = get_settings()
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    client = get_client(settings)
    migrate(client, settings)
    counts = load_files(client, settings, list(args.files), replace=args.replace)
    for kind, n in counts.items():
        print(f"{kind}: {n}")
    return 0
