"""missing_properties: share of a site's page views without UAI, SERVICE, TYPE or PROFIL (the four
properties every DNMA indicator is broken down by), above a threshold."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, pct
from aggregator.checks.shares import HITS_IN_WINDOW, per_site_shares, seuil

_PROPS = ("uai", "service", "type", "profil")


def run(ctx: CheckContext) -> CheckResult:
    limit = ctx.settings.quality_missing_properties_max_share
    missing = " OR ".join(f"{p} = ''" for p in _PROPS)
    per_prop = ", ".join(f"countIf({p} = '')" for p in _PROPS)

    def message(share: float, n: int, more: list[int]) -> str:
        worst = [p.upper() for p, k in zip(_PROPS, more, strict=True) if k]
        return f"{pct(share)} des pages vues sans {', '.join(worst)} ({seuil(limit)})"

    result = per_site_shares(
        ctx,
        faulty=f"countIf({missing})",
        extra=per_prop,
        where=f"{HITS_IN_WINDOW} AND action = 'pageview'",
        threshold=limit,
        message=message,
    )
    for f in result.findings:  # name the per-property counts instead of extra0..3
        for i, p in enumerate(_PROPS):
            f.details[f"sans_{p}"] = f.details.pop(f"extra{i}")
    return result


CHECK = Check("missing_properties", "Part des pages vues sans UAI, SERVICE, TYPE ou PROFIL", run)
