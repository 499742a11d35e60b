"""clock_jumps: DNMA's clock moved back or forward while the stack ran (the host's clock stepped by
NTP or by hand, or a rehearsal's DNMA_NOW file): hits received around the jump are dated on the
moved clock, so a visit that spans a backward jump is cut in two and a day's counts can shift. The
processes record what they saw (dnma/clock.py, `clock_jumps.jsonl` in the data dir); this check says
when, by how much, and which processes noticed, for the last 24 hours."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding
from dnma.clock import PARIS, read_jumps

LOOKBACK = timedelta(hours=24)


def _amount(seconds: float) -> str:
    minutes = abs(seconds) / 60
    if minutes >= 60 * 24:
        return f"{minutes / 1440:.1f} j"
    if minutes >= 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes:.0f} min"


def run(ctx: CheckContext) -> CheckResult:
    end = ctx.now
    start = end - LOOKBACK
    result = CheckResult("24h", start, end)
    jumps = []
    for j in read_jumps(ctx.settings.data_dir):
        try:
            at = datetime.fromtimestamp(float(j["at"]), PARIS)  # type: ignore[arg-type]
            host_age = time.time() - float(j.get("host_at", 0))  # type: ignore[arg-type]
            jump = float(j["jump_s"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            continue
        # Within the last 24 h on DNMA's clock or on the host's: a jump forward by a day must not
        # push the jump before it out of sight.
        if start <= at <= end + timedelta(minutes=5) or 0 <= host_age <= LOOKBACK.total_seconds():
            jumps.append((at, jump, str(j.get("process", "?"))))
    if not jumps:
        return result
    # One jump seen by several processes (each collector worker, the loader) is told once.
    told: list[tuple[datetime, float, set[str]]] = []
    for at, jump, process in sorted(jumps):
        if told and abs(told[-1][1] - jump) < 60 and abs((at - told[-1][0]).total_seconds()) < 120:
            told[-1][2].add(process)
        else:
            told.append((at, jump, {process}))
    parts = [f"{'recul' if jump < 0 else 'avance'} de {_amount(jump)} vers {at:%d/%m %H:%M} "
             f"(vu par {', '.join(sorted(procs))})" for at, jump, procs in told]
    worst = max(abs(j) for _, j, _ in told)
    result.findings.append(Finding(
        "pipeline", "horloge", observed=worst, expected=0,
        severity="critical" if worst >= 3600 else "warning",
        message="L'horloge du serveur a sauté : " + " ; ".join(parts)
                + ". Les hits reçus autour de ces instants sont datés sur l'horloge déplacée.",
        details={"jumps": [{"at": at.isoformat(), "jump_s": jump, "processes": sorted(p)} for at, jump, p in told]},
    ))
    return result


CHECK = Check("clock_jumps", "Sauts de l'horloge du serveur", run)
