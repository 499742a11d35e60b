"""`dnma checks run [--check NAME] [--window START/END]`, `dnma checks ack CHECK SCOPE_KIND
SCOPE_VALUE` and `dnma checks list` (status of every check and the open alerts). `run` and `ack`
write: jobs (aggregator/jobs.py) the live loader runs, or this process with no loader."""

from __future__ import annotations

import argparse
import logging
from datetime import datetime
from typing import Any

log = logging.getLogger("dnma.checks")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run the checks once (all, or --check NAME, repeatable)")
    run.add_argument("--check", action="append", dest="checks", metavar="NAME", help="only this check")
    run.add_argument("--window", help="explicit window START/END (ISO, Europe/Paris), e.g. 2025-03-10T00:00/2025-03-11T00:00")
    run.add_argument("--now", help="pretend the run happens at this time (ISO)")
    sub.add_parser("list", help="status of every check and the open alerts")
    ack = sub.add_parser("ack", help="acknowledge an open alert (who and when are recorded)")
    ack.add_argument("check")
    ack.add_argument("scope_kind", help="site, projet, academie, uai, pipeline (as `dnma checks list` shows)")
    ack.add_argument("scope_value")
    ack.add_argument("--by", help="who acknowledges (default: the login name)")
    ack.add_argument("--note", default="", help="a short note kept with the acknowledgement")


def parse_time(value: str) -> datetime:
    from dnma.clock import PARIS

    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=PARIS)


def run(args: argparse.Namespace) -> int:
    from aggregator.jobs import run_command
    from dnma.admin import read_client
    from dnma.settings import get_settings

    if args.action == "list":
        settings = get_settings()
        return _list(settings, read_client(settings))
    if args.action == "ack":
        import getpass

        return run_command("checks.ack", {"check": args.check, "scope_kind": args.scope_kind,
                                          "scope_value": args.scope_value, "by": args.by or getpass.getuser(),
                                          "note": args.note})
    return run_command("checks.run", {"checks": args.checks, "window": args.window, "now": args.now})


def _list(settings: Any, client: Any) -> int:
    from aggregator.checks.runner import CHECKS

    db = settings.clickhouse_database
    runs = {
        r[0]: r[1:]
        for r in client.query(
            f"SELECT `check`, toString(argMax(ran_at, ran_at)), argMax(duration_ms, ran_at), argMax(error, ran_at) "
            f"FROM {db}.quality_check_runs GROUP BY `check`"
        ).result_rows
    }
    opened = dict(
        client.query(f"SELECT `check`, count() FROM {db}.quality_alerts_current WHERE status = 'open' GROUP BY `check`").result_rows
    )
    disabled = set(settings.quality_checks_disabled)
    print(f"{'check':<19} {'state':<9} {'open':>4}  {'last run':<24} {'ms':>8}  description")
    for name, check in CHECKS.items():
        ran, ms, err = runs.get(name, ("never", 0.0, ""))
        state = "disabled" if name in disabled else ("error" if err else "ok")
        print(f"{name:<19} {state:<9} {opened.get(name, 0):>4}  {ran:<24} {ms:>8.1f}  {check.description}")
        if err:
            print(f"{'':<19} {err}")
    alerts = client.query(
        f"SELECT a.`check`, a.scope_kind, a.scope_value, a.severity, toString(a.first_seen), a.message, "
        f"k.last_by, toString(k.last_at) FROM {db}.quality_alerts_current AS a "
        f"LEFT JOIN (SELECT `check`, scope_kind, scope_value, `window`, first_seen, argMax(acked_by, acked_at) AS last_by, "
        f"max(acked_at) AS last_at FROM {db}.quality_alert_acks GROUP BY `check`, scope_kind, scope_value, `window`, first_seen) AS k "
        "ON a.`check` = k.`check` AND a.scope_kind = k.scope_kind AND a.scope_value = k.scope_value "
        "AND a.`window` = k.`window` AND a.first_seen = k.first_seen "
        "WHERE a.status = 'open' ORDER BY a.severity = 'critical' DESC, a.`check`, a.scope_kind, a.scope_value"
    ).result_rows  # an alert nobody acknowledged joins an empty acked_by
    print(f"\n{len(alerts)} open alert(s)")
    for check, kind, value, severity, first, message, by, at in alerts:
        acked = f" (acknowledged by {by} at {at})" if by else ""
        print(f"  [{severity}] {check} {kind}:{value} since {first}{acked}: {message}")
    return 0
