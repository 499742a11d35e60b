"""`dnma access issue|revoke|list`: perimeter tokens (view only, across the sites of a région
académique, académie, département or ENT project, or of one site: its editor's); the rules
themselves are dnma.access's."""

from __future__ import annotations

import argparse
import sys

from dnma import access, clock
from dnma.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("issue", help="issue a perimeter token and print it (once: only its SHA-256 is kept)")
    new.add_argument("--perimeter", required=True,
                     help=f"KIND:VALUE, KIND one of {', '.join(access.KINDS)} (e.g. academie:Rennes, site:1, national)")
    new.add_argument("--name", required=True, help="the token's name, to list and revoke it")
    gone = sub.add_parser("revoke", help="revoke a perimeter token")
    gone.add_argument("name")
    sub.add_parser("list", help="list the perimeter tokens and the sites each may view")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.action == "issue":
        try:
            perimeter = access.PerimeterFilter.parse(args.perimeter)
            token = access.issue(settings, args.name, perimeter, clock.now().isoformat(timespec="seconds"))
        except ValueError as exc:
            print(f"dnma access: {exc}", file=sys.stderr)
            return 2
        print(token)
        print(f"perimeter token {args.name!r} ({perimeter}) issued: view only; shown this once, "
              f"stored as its SHA-256 in {access.access_file(settings)}", file=sys.stderr)
        return 0
    if args.action == "revoke":
        if not access.revoke(settings, args.name):
            print(f"dnma access: no perimeter token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"perimeter token {args.name!r} revoked")
        return 0
    registry = access.Access(settings)
    for t in registry.perimeter_tokens:
        views = sorted(s.id for s in registry.sites.all() if t.perimeter.overlaps(s))
        sites = ",".join(map(str, views)) or "none"
        print(f"{t.name}\t{t.perimeter}\tissued {t.issued_at or '?'}\tsites {sites}")
    return 0
