"""The share checks' common shape: per site, count the hits of the window and the faulty ones,
and report the sites above a threshold (with enough hits to mean something)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aggregator.checks.base import CheckContext, CheckResult, Finding, pct, share_severity, ts

HITS_IN_WINDOW = "ts >= toDateTime({start:UInt32}) AND ts < toDateTime({end:UInt32})"


def per_site_shares(
    ctx: CheckContext,
    *,
    faulty: str,
    total: str = "count()",
    extra: str = "",
    where: str = HITS_IN_WINDOW,
    threshold: float,
    message: Callable[[float, int, list[Any]], str],
    min_total: int | None = None,
    params: dict[str, Any] | None = None,
) -> CheckResult:
    """`faulty`/`total` are aggregate expressions over dnma.hits; `extra` more aggregates whose
    values reach `message` and the finding's details."""
    label, start, end = ctx.share_window()
    result = CheckResult(label, start, end)
    extras = f", {extra}" if extra else ""
    sql = (
        f"SELECT site_id, {total} AS total, {faulty} AS faulty{extras} "
        f"FROM {ctx.table('hits')} WHERE {where} GROUP BY site_id ORDER BY site_id"
    )
    floor = ctx.settings.quality_min_hits if min_total is None else min_total
    for site_id, n, bad, *more in ctx.rows(sql, start=ts(start), end=ts(end), **(params or {})):
        scope = ("site", str(site_id))
        if n < floor:
            result.skipped.add(scope)  # too few hits to judge: keep whatever state it had
            continue
        share = bad / n if n else 0.0
        if share > threshold:
            result.findings.append(
                Finding(
                    *scope,
                    observed=round(share, 6),
                    expected=threshold,
                    severity=share_severity(share, threshold),
                    message=message(share, int(bad), more),
                    details={"hits": int(n), "faulty": int(bad), **_details(more)},
                )
            )
    return result


def _details(more: list[Any]) -> dict[str, Any]:
    return {f"extra{i}": v for i, v in enumerate(more)} if more else {}


def seuil(threshold: float) -> str:
    return f"seuil {pct(threshold)}"
