"""The `dnma` command line. Each command lives in a module exposing `add_arguments(parser)` and
`run(args) -> int` (or `add_arguments_<name>` / `run_<name>` when a module serves several); this
file only lists them, imported by name so that the architecture's contracts see every one."""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from dnma_superset import provision

from aggregator import backup, exports, loader, migrate, publication, referentiel, sessionizer
from aggregator.checks import cli as checks
from aggregator.conformance import cli as conformance
from cli import access, demo, quarantine, serve, sites, stack, tagcheck
from dnma.admin import Unavailable

# command name -> (module, help). Modules import heavy libraries lazily inside run().
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "migrate": (migrate, "apply the ClickHouse migrations (idempotent)"),
    "serve": (serve, "run the collector (tracking endpoints)"),
    "loader": (loader, "run the loader (spool -> ClickHouse, read-only ClickHouse-HTTP endpoint)"),
    "up": (stack, "start the embedded stack in the background"),
    "down": (stack, "stop every process `dnma up` started"),
    "status": (stack, "show the state of the embedded stack"),
    "referentiel": (referentiel, "load the annuaire de l'éducation and pupil counts"),
    "aggregate": (sessionizer, "compute visits and visit rollups (once or as a loop)"),
    "export": (exports, "write an open-data export (CSV)"),
    "publish": (publication, "publish an ISO week's open-data files now (var/exports/YYYY-Www, a new revision if changed)"),
    "demo": (demo, "send simulated ENT traffic through the collector"),
    "checks": (checks, "run the data-quality checks, or list their status and open alerts"),
    "conformance": (conformance, "write a site's tagging conformance report (HTML, CSV) over a window"),
    "tag-check": (tagcheck, "check the tracking requests of a page (URL) or HAR file: tagging plan"),
    "quarantine": (quarantine, "refused tracking requests kept: `list`, `replay --site N` once the cause is fixed"),
    "access": (access, "perimeter tokens: `issue`, `revoke`, `list` (view only, across sites)"),
    "sites": (sites, "register and change sites: `add`, `set`, `list`, `projet` (alert contacts); no restart"),
    "backup": (backup, "back the embedded stack up into a directory (ClickHouse, spool, settings, secrets; live: by the loader)"),
    "restore": (backup, "rebuild a stopped data directory from a `dnma backup` directory"),
    "superset": (provision, "Superset: `provision` imports the dashboards, roles, RLS and users"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnma", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        adder = getattr(module, f"add_arguments_{name}", None) or getattr(module, "add_arguments", None)
        if adder:
            adder(p)
        p.set_defaults(_module=module, _runner=f"run_{name}" if hasattr(module, f"run_{name}") else "run")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Everything a DNMA process creates (the data directory: chDB, spool, logs, secrets, Superset's
    # metadata, exports) is its owner's alone: files 0600, directories 0700, children included.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "loader"):  # those two set their own logging up
        _command_logging()
    try:
        return int(getattr(args._module, args._runner)(args) or 0)
    except Unavailable as exc:  # neither the live loader nor the storage can serve it: one line
        print(f"dnma {args.command}: {exc}", file=sys.stderr)
        return 1


def _command_logging() -> None:
    """A command's warnings and errors in DNMA's log schema (dnma/logs.py), on stderr or log_file;
    its INFO events stay quiet, as before, unless log_level is DEBUG."""
    import logging

    from dnma import logs
    from dnma.settings import Settings

    try:
        settings = Settings()  # not get_settings(): `dnma up` changes the environment before it reads its own
    except Exception:  # a broken configuration is the command's to report, in its own words
        return
    logs.setup_logging(settings)
    if logging.getLogger("dnma").getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("dnma").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
