"""`dnma conformance --site N --from YYYY-MM-DD --to YYYY-MM-DD [--out DIR]`: the site's tagging
conformance report as HTML and CSV in DIR. Reads through the live loader's read-only endpoint when
the stack runs (the loader owns chDB), else opens the storage itself (dnma.admin.read_client)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import IO

MAX_DAYS = 400  # a school year and some: longer windows are refused rather than scanned


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Dates and the site id are read as text and checked in run(): a bad one is one line, not usage.
    p.add_argument("--site", required=True, help="the site's id (sites registry)")
    p.add_argument("--from", dest="debut", required=True, help="first day, YYYY-MM-DD (the site's time zone)")
    p.add_argument("--to", dest="fin", required=True, help="last day, inclusive, YYYY-MM-DD")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="directory of conformance-site<N>-<from>_<to>.html and .csv (default: the current one)")


def _day(flag: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{flag} {value!r} is not a date YYYY-MM-DD") from None


def _problem(args: argparse.Namespace) -> str | tuple[int, date, date]:
    """The one-line complaint about the arguments, else (site id, first day, last day)."""
    try:
        site_id = int(args.site)
    except ValueError:
        return f"--site {args.site!r} is not a site id (an integer)"
    try:
        debut, fin = _day("--from", args.debut), _day("--to", args.fin)
    except ValueError as exc:
        return str(exc)
    if debut > fin:
        return f"--from {debut} is after --to {fin}"
    if (fin - debut).days >= MAX_DAYS:
        return f"{debut}..{fin} spans more than {MAX_DAYS} days: ask for a shorter window"
    return site_id, debut, fin


def _write(path: Path, write: Callable[[IO[str]], object]) -> None:
    """Through a temporary file renamed into place: never half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    from aggregator.conformance import figures, render
    from dnma.admin import read_client
    from dnma.settings import get_settings
    from dnma.sites import SiteRegistry

    checked = _problem(args)
    if isinstance(checked, str):
        print(f"dnma conformance: {checked}", file=sys.stderr)
        return 2
    site_id, debut, fin = checked
    settings = get_settings()
    try:
        site = SiteRegistry.load(settings.resolved_sites_file).get(site_id)
    except (OSError, ValueError) as exc:
        print(f"dnma conformance: cannot read the sites registry {settings.resolved_sites_file}: {exc}", file=sys.stderr)
        return 1
    if site is None:
        print(f"dnma conformance: no site {site_id} in the sites registry ({settings.resolved_sites_file})",
              file=sys.stderr)
        return 2
    out: Path = args.out
    if out.exists() and not out.is_dir():
        print(f"dnma conformance: --out {out} is not a directory", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"dnma conformance: cannot create {out}: {exc.strerror}", file=sys.stderr)
        return 1
    report = figures.build(read_client(settings), settings, site, debut, fin)
    stem = out / f"conformance-site{site.id}-{debut}_{fin}"
    html_path, csv_path = stem.with_suffix(".html"), stem.with_suffix(".csv")
    _write(html_path, lambda f: render.write_html(report, f))
    _write(csv_path, lambda f: render.write_csv(report, f))
    failed = [f.criterion.label for f in report.site_figures() if f.verdict == "non conforme"]
    print(f"site {site.id}: {report.hits} hits, {len(failed)} critère(s) non conforme(s)"
          f"{' : ' + ', '.join(failed) if failed else ''}; {html_path}, {csv_path}", file=sys.stderr)
    return 0
