"""unknown_uai: share of a site's hits with a valid UAI that the referential (dnma.etablissements)
does not know, above a threshold. Skipped while no referential is loaded."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, pct
from aggregator.checks.shares import HITS_IN_WINDOW, per_site_shares, seuil

# A valid UAI: present and not flagged invalid by the collector (format, département, check letter).
VALID_UAI = "uai != '' AND NOT has(flags, 'invalid_uai')"


def run(ctx: CheckContext) -> CheckResult:
    limit = ctx.settings.quality_unknown_uai_max_share
    if ctx.referential_size == 0:
        label, start, end = ctx.share_window()
        return CheckResult(label, start, end, skipped={("*", "*")})
    known = f"uai IN (SELECT uai FROM {ctx.table('etablissements')})"
    return per_site_shares(
        ctx,
        total="count()",
        faulty=f"countIf(NOT ({known}))",
        extra=f"topKIf(5)(uai, NOT ({known}))",
        where=f"{HITS_IN_WINDOW} AND {VALID_UAI}",
        threshold=limit,
        message=lambda s, n, more: f"{pct(s)} des hits avec un UAI absent du référentiel ({seuil(limit)}), ex. {', '.join(more[0][:3])}",
    )


CHECK = Check("unknown_uai", "Part des hits avec un UAI valide mais absent du référentiel", run)
