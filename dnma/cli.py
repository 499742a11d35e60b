"""The `dnma` command line. Each command lives in its own module exposing
`add_arguments(parser)` and `run(args) -> int`; this file only lists them."""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, help). Modules must import heavy libraries lazily inside run().
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": ("aggregator.migrate", "apply the ClickHouse migrations (idempotent)"),
    "serve": ("collector.server", "run the collector (tracking endpoints)"),
    "loader": ("aggregator.loader", "run the loader (spool -> ClickHouse, read-only ClickHouse-HTTP endpoint)"),
    "up": ("dnma.stack", "start the embedded stack in the background"),
    "down": ("dnma.stack", "stop every process `dnma up` started"),
    "status": ("dnma.stack", "show the state of the embedded stack"),
    "referentiel": ("aggregator.referentiel", "load the annuaire de l'éducation and pupil counts"),
    "aggregate": ("aggregator.sessionizer", "compute visits and visit rollups (once or as a loop)"),
    "export": ("aggregator.exports", "write an open-data export (CSV)"),
    "demo": ("dnma_client.simulator", "send simulated ENT traffic through the collector"),
    "checks": ("aggregator.checks.cli", "run the data-quality checks, or list their status and open alerts"),
    "tag-check": ("dnma.tagcheck", "check the tracking requests of a page (URL) or HAR file: tagging plan"),
    "superset": ("dnma_superset.provision", "Superset: `provision` imports the dashboards, roles, RLS and users"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnma", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)  # a missing module is a broken install: fail
        p = sub.add_parser(name, help=help_text)
        adder = getattr(module, f"add_arguments_{name}", None) or getattr(module, "add_arguments", None)
        if adder:
            adder(p)
        p.set_defaults(_module=module, _runner=f"run_{name}" if hasattr(module, f"run_{name}") else "run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(getattr(args._module, args._runner)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
