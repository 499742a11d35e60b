"""`dnma checks run [--check NAME] [--window START/END]` and `dnma checks list` (status of every
check and the open alerts). `run` writes, so in embedded mode it needs the loader stopped."""

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


def _parse(value: str) -> datetime:
    from dnma.clock import PARIS

    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=PARIS)


def _reader(settings: Any) -> Any:
    """The loader's read-only endpoint when it runs (it owns chDB), else the storage directly."""
    from clickhouse_connect.driver.exceptions import OperationalError

    from dnma.chclient import get_client, get_reader_client

    if settings.embedded:
        try:
            client = get_reader_client(settings)
            client.command("SELECT 1")
            return client
        except OperationalError:  # nothing listens: the loader is not running, nobody holds chDB
            log.info("checks_reader_fallback", extra={"reason": "loader endpoint unreachable, opening chDB"})
    return get_client(settings)


def run(args: argparse.Namespace) -> int:
    from dnma.settings import get_settings

    settings = get_settings()
    if args.action == "list":
        return _list(settings, _reader(settings))
    from aggregator.checks.runner import run_checks
    from dnma.chclient import get_client

    window = None
    if args.window:
        start, _, end = args.window.partition("/")
        window = (_parse(start), _parse(end))
    now = _parse(args.now) if args.now else (window[1] if window else None)
    transitions = run_checks(get_client(settings), settings, only=args.checks, now=now, window=window)
    for t in transitions:
        print(f"{t.change:<9} {t.check:<18} {t.scope_kind}:{t.scope_value:<12} {t.severity:<8} {t.message}")
    print(f"{len(transitions)} transition(s)")
    return 0


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
        f"SELECT `check`, scope_kind, scope_value, severity, toString(first_seen), message FROM {db}.quality_alerts_current "
        "WHERE status = 'open' ORDER BY severity = 'critical' DESC, `check`, scope_kind, scope_value"
    ).result_rows
    print(f"\n{len(alerts)} open alert(s)")
    for check, kind, value, severity, first, message in alerts:
        print(f"  [{severity}] {check} {kind}:{value} since {first}: {message}")
    return 0
