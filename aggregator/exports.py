"""The four weekly open-data exports of INDICATORS.md (fr-en-dnma-par-uai-*): one `;`-separated row
per UAI × ISO week, read from `dnma.visits`, shared columns from the establishments referential.

Choices the spec leaves open, fixed here:
- a breakdown with no visit that week is written `0`, `0`, `0:00:00` (never empty), so every
  numeric column parses as a number;
- `duree_X` is the total visit duration as `[h]h:mm:ss`, elapsed hours not padded and not wrapped
  at 24: 0 s -> '0:00:00', 3725 s -> '1:02:05', 443045 s -> '123:04:05';
- `utilisateurs_X` = distinct hashed uid, else distinct visitor id, over the UAI × week;
- visits of service X = visits whose `services` contain X (service columns do not sum to the total);
- `--from` / `--to` are inclusive visit days; a week cut by them is partial (pass Monday..Sunday);
- visits without a UAI are left out (the rows are per UAI); unknown UAIs get empty shared columns;
- shared columns are labels: académie, commune, département, région, ministère and
  circonscription names, `nature_uai` the nature label (e.g. 'COLLEGE'), `secteur` PU/PR.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

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


def query(dataset: ExportDataset, database: str = "dnma") -> str:
    """The export's SELECT; parameters {debut:Date} and {fin:Date} (inclusive)."""
    user = "if(user_hash != 0, user_hash, visitor_id)"
    measures = []
    for suffix, cond in dataset.breakdowns:
        measures.append(f"countIf({cond}) AS `visites_{suffix}`")
        measures.append(f"uniqExactIf({user}, {cond}) AS `utilisateurs_{suffix}`")
        measures.append(f"sumIf(toUInt64(duration), {cond}) AS `duree_{suffix}`")
    referentiel = [
        f"dictGetOrDefault('{database}.etablissements_dict', '{attr}', tuple(toString(uai)), '') AS `ref_{col}`"
        for col, attr in _REFERENTIEL_ATTRIBUTES.items()
    ]
    return (
        "SELECT toMonday(day) AS debutsemaine, toString(uai) AS uai_, "
        + ", ".join(referentiel)
        + ", "
        + ", ".join(measures)
        + f"\nFROM {database}.visits\n"
        "WHERE day BETWEEN {debut:Date} AND {fin:Date} AND uai != ''\n"
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument(
        "--from", dest="debut", type=date.fromisoformat, required=True, help="first day (YYYY-MM-DD)"
    )
    p.add_argument("--to", dest="fin", type=date.fromisoformat, required=True, help="last day, inclusive")
    p.add_argument("-o", "--output", type=Path, help="CSV file to write (default: standard output)")


def run(args: argparse.Namespace) -> int:
    from dnma.chclient import get_client
    from dnma.settings import get_settings

    settings = get_settings()
    client = get_client(settings)
    dataset = DATASETS[args.dataset]
    if args.output is None:
        n = write(client, dataset, args.debut, args.fin, sys.stdout, settings.clickhouse_database)
    else:
        with args.output.open("w", encoding="utf-8", newline="") as f:
            n = write(client, dataset, args.debut, args.fin, f, settings.clickhouse_database)
    print(f"{dataset.name}: {n} rows", file=sys.stderr)
    return 0
