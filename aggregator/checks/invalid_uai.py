"""invalid_uai: share of a site's hits whose UAI is malformed, has a bad département prefix or a
wrong check letter (the collector's `invalid_uai` flag), above a threshold."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, pct
from aggregator.checks.shares import per_site_shares, seuil


def run(ctx: CheckContext) -> CheckResult:
    limit = ctx.settings.quality_invalid_uai_max_share
    return per_site_shares(
        ctx,
        faulty="countIf(has(flags, 'invalid_uai'))",
        extra="topKIf(5)(uai, has(flags, 'invalid_uai'))",
        threshold=limit,
        message=lambda s, n, more: f"{pct(s)} des hits avec un UAI invalide ({seuil(limit)}), ex. {', '.join(more[0][:3])}",
    )


CHECK = Check("invalid_uai", "Part des hits avec un UAI invalide (format, département, lettre clé)", run)
