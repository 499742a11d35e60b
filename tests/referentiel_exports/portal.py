"""A stand-in for data.education.gouv.fr's Explore v2.1 API, on a real local HTTP server: the
datasets `dnma referentiel fetch` names, built from the real extracts in ../shared/data (two
départements, 035 and 094), as the portal exports them (`;`-separated, column labels as headers).

Routes: GET /api/explore/v2.1/catalog/datasets/<id>/records?limit=0[&where=] -> {"total_count": n}
and GET .../<id>/exports/csv[?where=] -> the CSV. `where` understands what the fetcher sends:
`code_departement="035" OR code_departement="094"`. A dataset's `fault` makes it misbehave."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from refexp_data import ANNUAIRE_35, ANNUAIRE_94, EFFECTIFS_1D, EFFECTIFS_2D

PREFIX = "/api/explore/v2.1/catalog/datasets/"
# The 2023-schema columns renamed in the 2026 schema the portal serves now.
RENAMED_2026 = {"Code postal": "Code_postal", "coordonnee_X": "coordX_origine", "coordonnee_Y": "coordY_origine",
                "epsg": "epsg_origine", "etablissement_multi_lignes": "multi_uai"}


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    return rows[0], [r for r in rows[1:] if r]


def annuaire() -> tuple[list[str], list[list[str]]]:
    """Both départements in the 2026 schema (the 35 extract is 2023's: columns mapped by name)."""
    header, rows = _read(ANNUAIRE_94)
    header_35, rows_35 = _read(ANNUAIRE_35)
    at = {RENAMED_2026.get(name, name): i for i, name in enumerate(header_35)}
    rows = rows + [[r[at[c]] if c in at else "" for c in header] for r in rows_35]
    return header, rows


@dataclass
class Dataset:
    header: list[str]
    rows: list[list[str]]
    departement_column: str | None  # the label of the portal field `code_departement`, if any
    fault: str = ""  # '', 'http500', 'truncate' (Content-Length kept), 'chunked_cut', 'count'

    def select(self, where: str) -> list[list[str]]:
        wanted = set(re.findall(r'code_departement\s*=\s*"([^"]*)"', where))
        if not wanted or self.departement_column is None:
            return self.rows
        at = self.header.index(self.departement_column)
        return [r for r in self.rows if r[at] in wanted]

    def csv_bytes(self, where: str) -> bytes:
        out = io.StringIO()
        w = csv.writer(out, delimiter=";", lineterminator="\r\n")
        w.writerow(self.header)
        w.writerows(self.select(where))
        return ("\ufeff" + out.getvalue()).encode("utf-8")


def datasets() -> dict[str, Dataset]:
    return {
        "fr-en-annuaire-education": Dataset(*annuaire(), "Code_departement"),
        "fr-en-ecoles-effectifs-nb_classes": Dataset(*_read(EFFECTIFS_1D), None),
        "fr-en-effectifs-second-degre": Dataset(*_read(EFFECTIFS_2D), "Code_departement"),
    }


@dataclass
class Portal:
    url: str
    datasets: dict[str, Dataset]
    requests: list[str] = field(default_factory=list)


def _handler(portal: Portal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet test output
            pass

        def _send(self, code: int, body: bytes, ctype: str, length: int | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            portal.requests.append(self.path)
            parsed = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(parsed.query))
            m = re.fullmatch(re.escape(PREFIX) + r"([^/]+)/(records|exports/csv)", parsed.path)
            ds = portal.datasets.get(m.group(1)) if m else None
            if m is None or ds is None:
                self._send(404, b'{"error_code": "UnknownDatasetError"}', "application/json")
                return
            where = params.get("where", "")
            if ds.fault == "http500":
                self._send(500, b'{"error_code": "InternalError"}', "application/json")
                return
            if m.group(2) == "records":
                total = len(ds.select(where)) + (7 if ds.fault == "count" else 0)
                self._send(200, json.dumps({"total_count": total, "results": []}).encode(), "application/json")
                return
            assert params.get("delimiter") == ";" and params.get("use_labels") == "true", params
            body = ds.csv_bytes(where)
            if ds.fault == "truncate":  # promises the whole body, sends 60 % of it, closes
                self._send(200, body[: len(body) * 6 // 10], "text/csv; charset=utf-8", length=len(body))
                self.close_connection = True
                return
            if ds.fault == "chunked_cut":  # chunked, the connection closed before the last chunk
                self.send_response(200)
                self.send_header("Content-Type", "text/csv; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = body[: len(body) // 2]
                self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, body, "text/csv; charset=utf-8")

    return Handler


@contextmanager
def serve(data: dict[str, Dataset] | None = None) -> Iterator[Portal]:
    portal = Portal("", data if data is not None else datasets())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(portal))
    portal.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield portal
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
