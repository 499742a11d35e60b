"""`dnma referentiel fetch`: the national reference files from the ministry's open-data portal
(data.education.gouv.fr, Opendatasoft Explore v2.1), verified, then loaded as one school year.

Two separate steps, so the loader's admin channel can run them as jobs:
- fetch(settings, options, dest, progress) -> FetchResult: downloads every dataset into `dest`,
  checks each (complete, required columns, UAI check letters) and writes the kept rows there.
  Nothing touches ClickHouse; any failure raises FetchError (one line) and leaves `dest` to the
  caller to throw away.
- referentiel.load_fetched(client, settings, result) -> counts: one `load_files` of the verified
  files (in aggregator/referentiel.py, which imports this module for its CLI).

A failed or partial download therefore changes nothing: loading starts only once every file is
complete and verified. The portal has not been met live from here (no internet where this was
written): the URLs, parameters and headers follow the Explore v2.1 API and the extracts the
project received (deploy/referentiel/README.md); the tests run against a local server.
"""

from __future__ import annotations

import csv
import http.client
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.geo_codes import departement_code
from aggregator.periods import school_year
from dnma import clock
from dnma.uai import UaiStatus, normalise, status
from dnma.uai import departement_code as uai_departement

API = "/api/explore/v2.1/catalog/datasets"
CHUNK = 1024 * 1024
PROGRESS_EVERY = 8 * CHUNK
# More bad UAIs than this share of a file's rows: the file is refused, not loaded.
MAX_BAD_UAI_SHARE = 0.5
Progress = Callable[[str], None]


class FetchError(Exception):
    """A download or a verification failed; the message is one line for the operator."""


@dataclass(frozen=True)
class Dataset:
    id: str
    uai_column: str
    required: tuple[str, ...]  # columns the loader reads (portal labels, use_labels=true)
    # The portal field filtered on for --departements ('035' style values); None: filtered here,
    # by the département of each row's UAI.
    departement_field: str | None


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "fr-en-annuaire-education",
        "Identifiant_de_l_etablissement",
        ("Identifiant_de_l_etablissement", "Nom_etablissement", "Type_etablissement", "Statut_public_prive",
         "Code_commune", "Nom_commune", "Code_departement", "Libelle_departement", "Code_academie",
         "Libelle_academie", "Code_region", "Libelle_region", "code_nature", "libelle_nature", "latitude",
         "longitude"),
        "code_departement",
    ),
    Dataset(
        "fr-en-ecoles-effectifs-nb_classes",
        "Numéro de l'école",
        ("Rentrée scolaire", "Numéro de l'école", "Nombre total d'élèves"),
        None,
    ),
    Dataset(
        "fr-en-effectifs-second-degre",
        "Numero_d_etablissement",
        ("Annee_scolaire", "Numero_d_etablissement", "Nombre_d_eleves", "Code_departement"),
        "code_departement",
    ),
)


@dataclass(frozen=True)
class FetchOptions:
    annee: int | None = None  # the school year to load the files as (default: today's)
    departements: tuple[str, ...] = ()  # empty: all of France
    base_url: str = ""  # empty: settings.referentiel_base_url
    timeout_s: float = 120.0


@dataclass
class FileReport:
    dataset: str
    path: Path
    bytes: int
    rows: int  # rows downloaded
    kept: int  # rows written for the loader (valid UAI, in the départements asked)
    bad_uai: int
    expected_rows: int | None  # the portal's total_count, when it gave one


@dataclass
class FetchResult:
    annee: int
    departements: tuple[str, ...]
    files: list[FileReport] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def normalise_departements(raw: Iterable[str]) -> tuple[str, ...]:
    """'35', '035', '2a', '974' -> the annuaire's writing ('035', '2A', '974'); comma lists accepted."""
    out: list[str] = []
    for item in raw:
        for part in item.split(","):
            code = departement_code(part)
            if not code:
                continue
            if not re.fullmatch(r"[0-9]{3}|2[AB]", code):
                raise FetchError(f"not a département code: {part.strip()!r} (e.g. 035, 2A, 974)")
            if code not in out:
                out.append(code)
    return tuple(out)


def _where(dataset: Dataset, departements: tuple[str, ...]) -> str:
    if not departements or dataset.departement_field is None:
        return ""
    return " OR ".join(f'{dataset.departement_field}="{d}"' for d in departements)


def _url(base: str, dataset: Dataset, endpoint: str, params: dict[str, str]) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    return f"{base.rstrip('/')}{API}/{urllib.parse.quote(dataset.id)}/{endpoint}?{query}"


def _open(url: str, timeout: float, what: str) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "dnma-referentiel-fetch"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) base URL, a setting)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{what}: the portal answered HTTP {exc.code} {exc.reason} ({url})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{what}: cannot reach the portal ({reason}; {url})") from None


def _expected_rows(base: str, dataset: Dataset, where: str, timeout: float) -> int | None:
    """The portal's count of the rows the export will hold (catalog records call, limit=0)."""
    url = _url(base, dataset, "records", {"limit": "0", "where": where})
    with _open(url, timeout, f"{dataset.id} (count)") as response:
        try:
            body = json.loads(response.read(1024 * 1024))
        except (ValueError, OSError, http.client.HTTPException) as exc:
            raise FetchError(f"{dataset.id} (count): unreadable answer ({exc})") from None
    total = body.get("total_count") if isinstance(body, dict) else None
    return total if isinstance(total, int) and total >= 0 else None


def _download(base: str, dataset: Dataset, where: str, dest: Path, timeout: float, progress: Progress) -> int:
    """The dataset's CSV export into `dest`; the bytes received, all of them or FetchError."""
    url = _url(base, dataset, "exports/csv", {"delimiter": ";", "use_labels": "true", "where": where})
    received = 0
    with _open(url, timeout, dataset.id) as response, dest.open("wb") as out:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        shown = 0
        try:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                if received - shown >= PROGRESS_EVERY:
                    shown = received
                    size = f" of {expected / 1e6:.1f}" if expected else ""
                    progress(f"{dataset.id}: {received / 1e6:.1f}{size} MB")
        except (OSError, http.client.HTTPException) as exc:  # a cut chunked body, a reset, a timeout
            raise FetchError(f"{dataset.id}: download cut after {received} bytes ({exc.__class__.__name__})") \
                from None
    if expected is not None and received != expected:
        raise FetchError(f"{dataset.id}: download incomplete, {received} of {expected} bytes")
    progress(f"{dataset.id}: {received} bytes received")
    return received


def _verify(dataset: Dataset, raw: Path, out: Path, departements: tuple[str, ...],
            expected_rows: int | None, progress: Progress) -> tuple[int, int, int]:
    """Check the downloaded file and write the rows to load into `out`: (rows, kept, bad UAIs)."""
    wanted = set(departements)
    rows = kept = 0
    bad: list[str] = []
    try:
        with raw.open(encoding="utf-8-sig", newline="") as f, out.open("w", encoding="utf-8", newline="") as w:
            reader = csv.reader(f, delimiter=";")
            header = next(reader, [])
            missing = [c for c in dataset.required if c not in header]
            if missing:
                raise FetchError(f"{dataset.id}: required columns missing: {', '.join(missing)}")
            writer = csv.writer(w, delimiter=";", lineterminator="\n")
            writer.writerow(header)
            uai_at = header.index(dataset.uai_column)
            for row in reader:
                if not row:
                    continue
                rows += 1
                if len(row) != len(header):
                    raise FetchError(f"{dataset.id}: row {rows} has {len(row)} fields, the header {len(header)} "
                                     "(a cut or corrupt file)")
                uai = normalise(row[uai_at])
                if status(uai) is not UaiStatus.VALID:
                    bad.append(uai)
                    continue
                if wanted and uai_departement(uai) not in wanted:
                    continue
                writer.writerow(row)
                kept += 1
    except UnicodeDecodeError as exc:
        raise FetchError(f"{dataset.id}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise FetchError(f"{dataset.id}: unreadable CSV ({exc})") from None
    if rows == 0:
        raise FetchError(f"{dataset.id}: no rows")
    if expected_rows is not None and rows != expected_rows:
        raise FetchError(f"{dataset.id}: {rows} rows received, the portal counts {expected_rows}")
    if len(bad) > rows * MAX_BAD_UAI_SHARE:
        raise FetchError(f"{dataset.id}: {len(bad)} of {rows} UAIs are invalid (wrong column or file?)")
    if kept == 0:
        raise FetchError(f"{dataset.id}: no row left for départements {', '.join(departements)}")
    note = f", {len(bad)} invalid UAIs left out (e.g. {', '.join(repr(u) for u in bad[:5])})" if bad else ""
    progress(f"{dataset.id}: {rows} rows, {kept} kept{note}")
    return rows, kept, len(bad)


def fetch(settings: Any, options: FetchOptions, dest: Path, progress: Progress = _stderr) -> FetchResult:
    """Download and verify every dataset into `dest` (an empty directory the caller owns)."""
    base = options.base_url or settings.referentiel_base_url
    if not re.match(r"^https?://[^/\s]+", base):
        raise FetchError(f"the portal's base URL must be http(s)://host[/path], not {base!r}")
    departements = normalise_departements(options.departements)
    annee = options.annee if options.annee is not None else school_year(clock.now().date())
    result = FetchResult(annee=annee, departements=departements)
    for dataset in DATASETS:
        where = _where(dataset, departements)
        expected = _expected_rows(base, dataset, where, options.timeout_s)
        raw = dest / f"{dataset.id}.download"
        size = _download(base, dataset, where, raw, options.timeout_s, progress)
        out = dest / f"{dataset.id}.csv"
        rows, kept, bad = _verify(dataset, raw, out, departements, expected, progress)
        raw.unlink()
        result.files.append(FileReport(dataset.id, out, size, rows, kept, bad, expected))
    return result
