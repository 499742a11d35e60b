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
from aggregator.migrations import m0011_etablissements_annees as m0011
from aggregator.migrations.m0002_etablissements import ETABLISSEMENT_COLUMNS, STAGE, TABLE
from aggregator.periods import school_year
from dnma import clock
from dnma.uai import normalise

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in ETABLISSEMENT_COLUMNS)
# Files above this size get a progress bar even when stderr is not a terminal (the national annuaire).
PROGRESS_MIN_BYTES = 5 * 1024**2
# The referential per school year (m0011): `annee` is the year the school year starts.
YEARS_TABLE, YEARS_STAGE, YEARS_DICTIONARY = m0011.TABLE, m0011.STAGE, m0011.DICTIONARY


def nearest_year(loaded: Iterable[int], annee: int) -> int | None:
    """The loaded year nearest to `annee` (itself when loaded; the earlier one on a tie), None if
    nothing is loaded: a period whose own year is missing is shown with the closest referential."""
    return min(loaded, key=lambda y: (abs(y - annee), y), default=None)


def year_sql(database: str, day: str) -> str:
    """SQL for nearest_year(loaded years, school year of `day`), 0 when no year is loaded: the
    first component of a key of `etablissements_annees_dict`."""
    wanted = f"(toInt32(toYear(toDate({day}))) - (toMonth(toDate({day})) < 8))"
    loaded = f"(SELECT groupUniqArray(annee) FROM {database}.{YEARS_TABLE})"
    return f"toUInt16(arraySort(a -> (abs(toInt32(a) - {wanted}), a), {loaded})[1])"


def ref_sql(database: str, attr: str, year: str, uai: str, default: str = "''") -> str:
    """An attribute of an establishment in the referential of school year `year` (SQL); when no
    year is loaded (`year` 0, e.g. rows put straight into `etablissements`), the current one."""
    return (f"if({year} = 0, dictGetOrDefault('{database}.etablissements_dict', '{attr}', tuple(toString({uai})), "
            f"{default}), dictGetOrDefault('{database}.{YEARS_DICTIONARY}', '{attr}', "
            f"tuple({year}, toString({uai})), {default}))")


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
    # The school year built: pupil counts of that year or the latest before it win (None: the latest).
    annee: int | None = None

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
        latest: dict[str, tuple[tuple[bool, str], int]] = {}
        for row in rows:
            # Within the years up to self.annee the latest wins; a later year only if none is.
            year = row["annee"]
            rank = (self.annee is None or _start_year(year) <= self.annee, year)
            seen = latest.get(row["uai"])
            if seen is None or rank >= seen[0]:
                latest[row["uai"]] = (rank, row["eleves"])
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


def _start_year(annee: str) -> int:
    """'2022' (écoles) and '2018-2019' (second degré) -> the school year's first year."""
    digits = annee.strip()[:4]
    return int(digits) if digits.isdigit() else 0


def _counting(rows: Iterable[dict[str, Any]], counts: dict[str, int], key: str) -> Iterator[dict[str, Any]]:
    counts.setdefault(key, 0)
    for row in rows:
        counts[key] += 1
        yield row


# --- ClickHouse ----------------------------------------------------------------------------


def _current(client: Any, database: str, annee: int) -> dict[str, dict[str, Any]]:
    """The referential of school year `annee` as loaded (empty when that year is not)."""
    result = client.query(
        f"SELECT {', '.join(COLUMN_NAMES)} FROM {database}.{YEARS_TABLE} FINAL WHERE annee = {{annee:UInt16}}",
        parameters={"annee": annee},
    )
    return {row[0]: dict(zip(COLUMN_NAMES, row, strict=True)) for row in result.result_rows}


def loaded_years(client: Any, database: str) -> list[int]:
    rows = client.query(f"SELECT DISTINCT annee FROM {database}.{YEARS_TABLE} ORDER BY annee").result_rows
    return [int(row[0]) for row in rows]


def _swap(client: Any, r: Any, stage: str, table: str, partition: str, rows: list[list[Any]],
          columns: list[str]) -> None:
    """Replace one partition of `table` with `rows` in one step (through `stage`); none: drop it."""
    on_cluster = r.on_cluster
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(stage)}{on_cluster}")
    if rows:
        client.insert(
            r.name(stage),
            rows,
            column_names=columns,
            # A cluster inserts through the Distributed stage: wait until every shard has its part.
            settings={"insert_distributed_sync": 1} if r.cluster else None,
        )
        client.command(f"ALTER TABLE {r.local_name(table)}{on_cluster} REPLACE PARTITION {partition} "
                       f"FROM {r.local_name(stage)}")
    elif partition == "tuple()":
        client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(table)}{on_cluster}")
    else:
        client.command(f"ALTER TABLE {r.local_name(table)}{on_cluster} DROP PARTITION {partition}")
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(stage)}{on_cluster}")


def load_files(client: Any, settings: Any, paths: list[Path], *, replace: bool = False,
               annee: int | None = None) -> dict[str, int]:
    """Merge the files onto the referential of school year `annee` (default: the school year of
    today on DNMA's clock), or onto nothing with replace=True, and swap the result in atomically.
    Rows read per kind, plus 'etablissements' (rows of that year) and 'annee'.

    Other years are kept (`etablissements_annees`, one partition per year). When `annee` is the
    latest year loaded, `etablissements` (the current referential) becomes that year's too.
    Loading the same files again gives the same tables: the merge is keyed by UAI and each swap
    replaces one partition (`REPLACE PARTITION ... FROM` a stage table).
    """
    from aggregator.migrate import renderer

    r = renderer(settings)
    year = annee if annee is not None else school_year(clock.now().date())
    ref = Referentiel(annee=year)
    if not replace:
        for uai, row in _current(client, r.database, year).items():
            row.pop("loaded_at")
            ref.etablissements[uai] = row
    ref.add_files(paths)
    loaded_at = clock.now().replace(microsecond=0)
    rows = [[*(e[name] for name in COLUMN_NAMES[:-1]), loaded_at] for e in ref.etablissements.values()]

    _swap(client, r, YEARS_STAGE, YEARS_TABLE, str(int(year)), [[year, *row] for row in rows],
          ["annee", *COLUMN_NAMES])
    latest = max(loaded_years(client, r.database), default=None)
    if latest is None or latest == year:
        _swap(client, r, STAGE, TABLE, "tuple()", rows, list(COLUMN_NAMES))
    elif latest < year:  # this year is now empty: the current referential is the latest one left
        current = [[*(e[n] for n in COLUMN_NAMES)] for e in _current(client, r.database, latest).values()]
        _swap(client, r, STAGE, TABLE, "tuple()", current, list(COLUMN_NAMES))
    for dictionary in ("etablissements_dict", YEARS_DICTIONARY):
        client.command(f"SYSTEM RELOAD DICTIONARY{r.on_cluster} {r.database}.{dictionary}")
    return {**ref.counts, "etablissements": len(rows), "annee": year}


def load_fetched(client: Any, settings: Any, result: Any) -> dict[str, int]:
    """Load what referentiel_fetch.fetch() verified (a FetchResult) as school year result.annee,
    in one swap: the whole country replaces that year's referential, some départements are
    merged onto it."""
    return load_files(client, settings, list(result.paths), replace=not result.departements, annee=result.annee)


# --- CLI -----------------------------------------------------------------------------------


def _annee(raw: str) -> int:
    if not (raw.isdigit() and 2000 <= int(raw) <= 2999):
        raise argparse.ArgumentTypeError(f"a school year's first year, e.g. 2026 for 2026-2027 (not {raw!r})")
    return int(raw)


ANNEE_HELP = ("the school year to load as, by its first year (2026 = 2026-2027; default: today's, "
              "a new year starting on 1 August); other years are kept")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    load = sub.add_parser("load", help="load annuaire / collèges / pupil-count CSV files (kind detected)")
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument(
        "--replace", action="store_true", help="start from an empty referential instead of the current one"
    )
    load.add_argument("--annee", type=_annee, help=ANNEE_HELP)
    fetch = sub.add_parser("fetch", help="download the national files from data.education.gouv.fr, verify, load")
    fetch.add_argument("--annee", type=_annee, help=ANNEE_HELP)
    fetch.add_argument("--departements", nargs="+", default=[], metavar="CODE",
                       help="only these départements (035 56 2A, or 035,056); default: all of France")
    fetch.add_argument("--base-url", default="", help="the portal (default: the referentiel_base_url setting)")


def run(args: argparse.Namespace) -> int:
    from aggregator.jobs import run_command

    # Jobs (aggregator/jobs.py): run by the live loader when one runs, else in this process.
    if args.action == "fetch":
        return run_command("referentiel.fetch", {"annee": args.annee, "departements": list(args.departements),
                                                 "base_url": args.base_url})
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    return run_command("referentiel.load", {"files": [str(p.resolve()) for p in args.files],
                                            "replace": args.replace, "annee": args.annee})


def fetch_job(ctx: Any, annee: int | None, departements: list[str] | None, base_url: str | None) -> int:
    """`dnma referentiel fetch` (a job): download into a temporary directory beside the data, verify
    everything, then load once."""
    import tempfile

    from aggregator.migrate import migrate
    from aggregator.referentiel_fetch import FetchError, FetchOptions, fetch

    settings = ctx.settings
    options = FetchOptions(annee=annee, departements=tuple(departements or ()), base_url=base_url or "")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="referentiel-fetch-", dir=settings.data_dir) as tmp:
            result = fetch(settings, options, Path(tmp), progress=ctx.err)
            try:
                client = ctx.client()
                if not ctx.in_loader:  # a live loader migrated when it started
                    migrate(client, settings)
                counts = load_fetched(client, settings, result)
            except Exception as exc:  # noqa: BLE001 (one line for the operator, never a traceback)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                ctx.err(f"dnma referentiel fetch: loading failed: {first[:300]}")
                return 1
    except FetchError as exc:
        ctx.err(f"dnma referentiel fetch: {exc}; nothing changed")
        return 1
    except OSError as exc:
        ctx.err(f"dnma referentiel fetch: {exc.strerror or exc} ({exc.filename or settings.data_dir}); nothing changed")
        return 1
    for kind, n in counts.items():
        ctx.out(f"{kind}: {n}\n")
    return 0
