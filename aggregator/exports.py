"""The four weekly open-data exports of INDICATORS.md (fr-en-dnma-par-uai-*): one `;`-separated row
per UAI × ISO week, read from `dnma.visits`, shared columns from the establishments referential.

Choices the spec leaves open, fixed here:
- a breakdown with no visit that week is written `0`, `0`, `0:00:00` (never empty), so every
  numeric column parses as a number;
- `duree_X` is the total visit duration as `[h]h:mm:ss`, elapsed hours not padded and not wrapped
  at 24: 0 s -> '0:00:00', 3725 s -> '1:02:05', 443045 s -> '123:04:05';
- `utilisateurs_X` = distinct hashed uid, else distinct visitor id, over the UAI × week;
- visits of service X = visits whose `services` contain X (service columns do not sum to the total);
- `--from` / `--to` are inclusive visit days and must span whole ISO weeks (Monday..Sunday) that
  are over: any other range is refused, or with `--partial` written under a file name and a
  manifest saying partial, so a cut week is never published as a whole one (aggregator.publication
  writes the weekly publication itself);
- visits without a UAI are left out (the rows are per UAI); unknown UAIs get empty shared columns;
- shared columns come from the referential of the week's school year (that of its Monday; 1 August
  starts one), or of the loaded year nearest to it when that year was never loaded (the earlier
  on a tie), as referential_version() records it;
- shared columns are labels: académie, commune, département, région, ministère and
  circonscription names, `nature_uai` the nature label (e.g. 'COLLEGE'), `secteur` PU/PR.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from aggregator.referentiel import ref_sql, year_sql
from aggregator.rollups import USER_KEY
from dnma.vocab import BROWSERS, DEVICES, OSES, SERVICES

SHARED_COLUMNS: tuple[str, ...] = (
    "debutsemaine",
    "uai",
    "academie",
    "commune",
    "departement",
    "region",
    "ministere",
    "circonscription",
    "nature_uai",
    "secteur",
)
# shared column -> attribute of dnma.etablissements_dict
_REFERENTIEL_ATTRIBUTES: dict[str, str] = {
    "academie": "academie",
    "commune": "commune",
    "departement": "departement",
    "region": "region",
    "ministere": "ministere",
    "circonscription": "circonscription",
    "nature_uai": "libelle_nature",
    "secteur": "secteur",
}
# export suffix -> visits.profil value
PROFILS: dict[str, str] = {
    "eleve": "ELEVE",
    "parent": "PARENT",
    "enseignant": "ENSEIGNANT",
    "admin_vie_scol_tech": "ADMIN_VIE_SCOL_TECH",
}
MEASURES: tuple[str, ...] = ("visites", "utilisateurs", "duree")
Produce = Callable[[IO[str]], int]  # writes an export's CSV to a file, returns its rows


@dataclass(frozen=True)
class ExportDataset:
    name: str
    # (suffix, ClickHouse condition on a visit), in column order
    breakdowns: tuple[tuple[str, str], ...]

    @property
    def columns(self) -> list[str]:
        return [*SHARED_COLUMNS, *(f"{m}_{suffix}" for suffix, _ in self.breakdowns for m in MEASURES)]


def _quote(value: str) -> str:
    # Values come from the vocabulary (dnma.vocab), never from the user.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


DATASETS: dict[str, ExportDataset] = {
    d.name: d
    for d in (
        ExportDataset(
            "fr-en-dnma-par-uai-profils",
            (("globales", "1"), *((s, f"profil = {_quote(p)}") for s, p in PROFILS.items())),
        ),
        ExportDataset(
            "fr-en-dnma-par-uai-services",
            tuple((s, f"has(services, {_quote(s)})") for s in SERVICES),
        ),
        ExportDataset(
            "fr-en-dnma-par-uai-profils-appareils",
            tuple(
                (f"{s}_{d}", f"profil = {_quote(p)} AND device = {_quote(d)}")
                for s, p in PROFILS.items()
                for d in DEVICES
            ),
        ),
        ExportDataset(
            "fr-en-dnma-par-uai-appareils",
            (
                *((d, f"device = {_quote(d)}") for d in DEVICES),
                *((o, f"os = {_quote(o)}") for o in OSES),
                *((b, f"browser = {_quote(b)}") for b in BROWSERS),
            ),
        ),
    )
}


def format_duree(seconds: int) -> str:
    """`[h]h:mm:ss`: elapsed hours, unpadded, beyond 24 if need be."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def query(dataset: ExportDataset, database: str = "dnma", *, where: str = "", bucket: str = "toMonday(day)") -> str:
    """The export's SELECT; parameters {debut:Date} and {fin:Date} (inclusive). The reporting API's
    DNMA module reads the same figures through it: `where` narrows the visits (an SQL condition on
    `visits`, values as parameters), `bucket` is the period a row falls in (the ISO week here)."""
    measures = []
    for suffix, cond in dataset.breakdowns:
        measures.append(f"countIf({cond}) AS `visites_{suffix}`")
        measures.append(f"uniqExactIf({USER_KEY}, {cond}) AS `utilisateurs_{suffix}`")
        measures.append(f"sumIf(toUInt64(duration), {cond}) AS `duree_{suffix}`")
    # The referential of the week's school year (its Monday's), else the loaded year nearest to it.
    year = year_sql(database, "debutsemaine")
    referentiel = [
        f"{ref_sql(database, attr, year, 'uai')} AS `ref_{col}`" for col, attr in _REFERENTIEL_ATTRIBUTES.items()
    ]
    return (
        f"SELECT {bucket} AS debutsemaine, toString(uai) AS uai_, "
        + ", ".join(referentiel)
        + ", "
        + ", ".join(measures)
        + f"\nFROM {database}.visits\n"
        "WHERE day BETWEEN {debut:Date} AND {fin:Date} AND uai != ''"
        + (f" AND ({where})" if where else "")
        + "\n"
        "GROUP BY debutsemaine, uai_\n"
        "ORDER BY debutsemaine, uai_"
    )


def rows(
    client: Any, dataset: ExportDataset, debut: date, fin: date, database: str = "dnma"
) -> Iterator[list[str]]:
    """The export's rows as CSV fields, header excluded."""
    n_shared = len(SHARED_COLUMNS)
    result = client.query(query(dataset, database), parameters={"debut": debut, "fin": fin})
    for row in result.result_rows:
        out = [row[0].isoformat(), *(str(v) for v in row[1:n_shared])]
        for i, value in enumerate(row[n_shared:]):
            out.append(format_duree(value) if i % 3 == 2 else str(int(value)))
        yield out


def write(client: Any, dataset: ExportDataset, debut: date, fin: date, out: IO[str], database: str = "dnma") -> int:
    """Header then rows, `;`-separated, '\\n' line ends, UTF-8 without BOM. Returns the row count."""
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(dataset.columns)
    n = 0
    for row in rows(client, dataset, debut, fin, database):
        writer.writerow(row)
        n += 1
    return n


def write_file(client: Any, dataset: ExportDataset, debut: date, fin: date, path: Path,
               database: str = "dnma", produce: Produce | None = None) -> tuple[int, str]:
    """The export written to `path` through a temporary file renamed into place (never half a
    file); returns (rows, SHA-256 of the file). `produce` writes the CSV instead of `client`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            n = produce(f) if produce else write(client, dataset, debut, fin, f, database)
            f.flush()
            os.fsync(f.fileno())
        digest = hashlib.sha256()
        with tmp.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n, digest.hexdigest()


def range_problem(debut: date, fin: date, today: date) -> str | None:
    """Why [debut, fin] is not whole ISO weeks that are over (None: it is). `today` is DNMA's."""
    if debut > fin:
        return f"--from {debut} is after --to {fin}"
    if debut.weekday() != 0 or fin.weekday() != 6:
        monday = debut - timedelta(days=debut.weekday())
        sunday = fin + timedelta(days=6 - fin.weekday())
        return (f"{debut}..{fin} is not whole ISO weeks (Monday..Sunday): "
                f"use --from {monday} --to {sunday}, or --partial")
    if fin >= today:
        return f"the week ending {fin} is not over (today is {today}): use --partial to export it so far"
    return None


def partial_path(path: Path, debut: date, fin: date) -> Path:
    """`s.csv` -> `s.partial-2026-12-01_2026-12-03.csv`: a partial export says so in its name."""
    return path.with_name(f"{path.stem}.partial-{debut}_{fin}{path.suffix}")


# --- versions (recorded in manifests) ---------------------------------------------------
@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe` of the checkout when there is one, else the installed package's version."""
    from dnma.settings import REPO_ROOT

    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=10, check=True)
        if out.stdout.strip():
            return "git " + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "dnma " + version("dnma")
    except PackageNotFoundError:
        return "unknown"


def referential_version(client: Any, settings: Any, day: date | None = None) -> dict[str, Any]:
    """What identifies the referential the exports of `day` read: with the referential kept per
    school year (`etablissements_annees`), the loaded year nearest to `day`'s school year (1 August
    starts one), else the one table `etablissements`; with its rows, sources and last load time."""
    db = settings.clickhouse_database
    select = "count(), max(loaded_at), arraySort(groupUniqArray(source))"
    if day is not None and int(client.command(f"EXISTS TABLE {db}.etablissements_annees")):
        years = client.query(f"SELECT annee, {select} FROM {db}.etablissements_annees FINAL GROUP BY annee").result_rows
        wanted = day.year - (day.month < 8)
        if years:
            annee, rows, loaded_at, sources = min(years, key=lambda y: (abs(int(y[0]) - wanted), int(y[0])))
            return {"school_year": f"{annee}-{int(annee) + 1}", "rows": int(rows),
                    "loaded_at": loaded_at.isoformat(), "sources": list(sources)}
    rows, loaded_at, sources = client.query(f"SELECT {select} FROM {db}.etablissements FINAL").result_rows[0]
    return {"school_year": None, "rows": int(rows), "loaded_at": loaded_at.isoformat() if rows else None,
            "sources": list(sources)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument(
        "--from", dest="debut", type=date.fromisoformat, required=True, help="first day (YYYY-MM-DD)"
    )
    p.add_argument("--to", dest="fin", type=date.fromisoformat, required=True, help="last day, inclusive")
    p.add_argument("-o", "--output", type=Path,
                   help="CSV file to write, with FILE.manifest.json beside it (default: standard output)")
    p.add_argument("--partial", action="store_true",
                   help="accept a range that is not whole ISO weeks over (needs -o: the file name and "
                        "its manifest say partial)")


class RangeRefused(ValueError):
    """The range cannot be exported as asked (the message is the one line the CLI prints)."""


def export_to_file(client: Any, settings: Any, dataset_name: str, debut: date, fin: date, output: Path,
                   partial: bool = False, progress: Any = None, produce: Produce | None = None) -> dict[str, Any]:
    """One dataset over [debut, fin] into `output` (atomically) and `output.manifest.json` beside
    it; returns the manifest. A range that is not whole ISO weeks over raises RangeRefused, unless
    `partial`: then the file is `partial_path(output, ...)` and the manifest says partial. A
    reversed range is always refused. `progress` (optional) gets one line per step."""
    from dnma import clock

    problem = range_problem(debut, fin, clock.today())
    if problem and (not partial or debut > fin):
        raise RangeRefused(problem)
    dataset = DATASETS[dataset_name]
    path = partial_path(output, debut, fin) if problem else output
    if progress is not None:
        progress(f"exporting {dataset.name} {debut}..{fin} to {path}")
    n, digest = write_file(client, dataset, debut, fin, path, settings.clickhouse_database, produce)
    manifest = {
        "dataset": dataset.name,
        "period": {"from": debut.isoformat(), "to": fin.isoformat()},
        "partial": problem is not None,
        **({"partial_because": problem} if problem else {}),
        "files": {path.name: {"rows": n, "sha256": digest}},
        "referential": referential_version(client, settings, debut),
        "code_version": code_version(),
        "exported_at": clock.now().isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    side = path.with_name(path.name + ".manifest.json")
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, side)
    return manifest


def run(args: argparse.Namespace) -> int:
    from aggregator.jobs import JobFailed, export_csv
    from dnma import clock
    from dnma.admin import read_client
    from dnma.settings import get_settings

    # Refused before anything opens ClickHouse.
    problem = range_problem(args.debut, args.fin, clock.today())
    if problem and (not args.partial or args.debut > args.fin):
        print(f"dnma export: {problem}", file=sys.stderr)
        return 2
    if problem and args.output is None:
        print("dnma export: --partial needs -o FILE (the file name says partial)", file=sys.stderr)
        return 2
    settings = get_settings()
    dataset = DATASETS[args.dataset]

    def produce(out: IO[str]) -> int:
        # Streamed from the live loader's export job (no reader time limit), else computed here.
        return export_csv(dataset.name, args.debut, args.fin, out)

    try:
        if args.output is None:
            n = produce(sys.stdout)
            print(f"{dataset.name}: {n} rows", file=sys.stderr)
            return 0
        manifest = export_to_file(read_client(settings), settings, args.dataset, args.debut, args.fin, args.output,
                                  args.partial, produce=produce)
    except RangeRefused as exc:  # the day changed since the check above
        print(f"dnma export: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:  # the job said why on stderr
        return exc.code
    (name, info), = manifest["files"].items()
    print(f"{dataset.name}: {info['rows']} rows in {args.output.with_name(name)}"
          f"{' (partial)' if manifest['partial'] else ''}", file=sys.stderr)
    return 0
