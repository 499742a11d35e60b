"""Findings -> `dnma.quality_alerts` rows: one key per (check, scope, window), a newer version per
run; an open alert whose scope no longer fires gets a `resolved` version. Returns the transitions."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

from aggregator.checks.base import CheckResult, Scope
from aggregator.migrations.m0010_quality_alerts import ALERT_COLUMN_NAMES
from dnma.clock import PARIS

_DATETIMES = ("window_start", "window_end", "first_seen", "last_seen")


@dataclass(frozen=True)
class Transition:
    """An alert that opened or resolved in this run (what the webhook posts)."""

    change: str  # opened / resolved
    check: str
    scope_kind: str
    scope_value: str
    window: str
    severity: str
    observed: float
    expected: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _skipped(scope: Scope, skipped: set[Scope]) -> bool:
    for kind, value in skipped:
        if kind == "*" or (kind == scope[0] and (value == scope[1] or (value.endswith("*") and scope[1].startswith(value[:-1])))):
            return True
    return False


def current(client: Any, database: str, check: str, window: str) -> tuple[dict[Scope, dict[str, Any]], int]:
    """The latest version of every alert of (check, window), and the highest version stored."""
    # Datetimes travel as unix seconds: the client's naive-datetime conventions vary by type.
    cols = ", ".join(f"toUnixTimestamp(`{c}`)" if c in _DATETIMES else f"`{c}`" for c in ALERT_COLUMN_NAMES)
    result = client.query(
        f"SELECT {cols} FROM {database}.quality_alerts FINAL WHERE `check` = {{c:String}} AND `window` = {{w:String}}",
        parameters={"c": check, "w": window},
    )
    rows = {}
    top = 0
    for values in result.result_rows:
        row = dict(zip(ALERT_COLUMN_NAMES, values, strict=True))
        for c in _DATETIMES:
            row[c] = datetime.fromtimestamp(row[c], PARIS)
        rows[(row["scope_kind"], row["scope_value"])] = row
        top = max(top, int(row["version"]))
    return rows, top


def apply(client: Any, database: str, check: str, result: CheckResult, run_at: datetime) -> list[Transition]:
    previous, top = current(client, database, check, result.window)
    # Versions grow even if the clock steps back: the latest run must win.
    version = max(int(time.time() * 1_000_000), top + 1)
    rows: list[list[Any]] = []
    transitions: list[Transition] = []
    seen: set[Scope] = set()
    for f in result.findings:
        seen.add(f.scope)
        prev = previous.get(f.scope)
        still_open = prev is not None and prev["status"] == "open"
        first_seen = prev["first_seen"] if still_open and prev else run_at
        row = {
            "check": check, "scope_kind": f.scope_kind, "scope_value": f.scope_value, "window": result.window,
            "severity": f.severity, "observed": float(f.observed), "expected": float(f.expected),
            "window_start": result.window_start, "window_end": result.window_end,
            "first_seen": first_seen, "last_seen": run_at, "status": "open", "message": f.message,
            "details": orjson.dumps(f.details, default=str, option=orjson.OPT_NON_STR_KEYS).decode(), "version": version,
        }
        rows.append([row[c] for c in ALERT_COLUMN_NAMES])
        if not still_open:
            transitions.append(_transition("opened", row))
    for scope, prev in sorted(previous.items()):
        if prev["status"] != "open" or scope in seen or _skipped(scope, result.skipped):
            continue
        row = dict(prev, status="resolved", version=version, window_start=result.window_start, window_end=result.window_end)
        rows.append([row[c] for c in ALERT_COLUMN_NAMES])
        transitions.append(_transition("resolved", row))
    if rows:
        client.insert(f"{database}.quality_alerts", rows, column_names=list(ALERT_COLUMN_NAMES))
    return transitions


def record_run(client: Any, database: str, check: str, run_at: datetime, duration_ms: float,
               result: CheckResult | None, error: str = "") -> None:
    client.insert(
        f"{database}.quality_check_runs",
        [[check, run_at, duration_ms, len(result.findings) if result else 0, len(result.skipped) if result else 0, error[:500]]],
        column_names=["check", "ran_at", "duration_ms", "findings", "skipped", "error"],
    )


def _transition(change: str, row: dict[str, Any]) -> Transition:
    return Transition(change, row["check"], row["scope_kind"], row["scope_value"], row["window"], row["severity"],
                      float(row["observed"]), float(row["expected"]), row["message"])


def acknowledge(client: Any, database: str, check: str, scope_kind: str, scope_value: str, by: str,
                note: str = "", at: datetime | None = None) -> int:
    """Record that `by` acknowledged the open alert(s) of this check and scope (every window):
    `quality_alert_acks`, keyed by the alert's first_seen. Returns how many were open."""
    from dnma import clock

    opened = client.query(
        f"SELECT `window`, toUnixTimestamp(first_seen) FROM {database}.quality_alerts FINAL "
        "WHERE `check` = {c:String} AND scope_kind = {k:String} AND scope_value = {v:String} AND status = 'open'",
        parameters={"c": check, "k": scope_kind, "v": scope_value},
    ).result_rows
    acked_at = (at or clock.now(PARIS)).astimezone(PARIS).replace(microsecond=0)
    rows = [[check, scope_kind, scope_value, window, datetime.fromtimestamp(first, PARIS), acked_at, by, note]
            for window, first in opened]
    if rows:
        client.insert(f"{database}.quality_alert_acks", rows,
                      column_names=["check", "scope_kind", "scope_value", "window", "first_seen", "acked_at",
                                    "acked_by", "note"])
    return len(rows)
