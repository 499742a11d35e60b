"""clock_skew: share of the hits a site delivered in the window dated in the future (after their
own reception, beyond a tolerance): a wrong server clock or a wrong `cdt`."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, pct
from aggregator.checks.lateness import LOOKBACK_S, RECEIVED_IN_WINDOW
from aggregator.checks.shares import per_site_shares, seuil

# A hit dated more than {skew:UInt32} seconds after its own reception (settings.quality_clock_skew_s);
# also read by the conformance report (aggregator/conformance): one definition of a clock problem.
FUTURE = "toInt64(toUnixTimestamp(ts)) - toUnixTimestamp(received_at) > {skew:UInt32}"


def run(ctx: CheckContext) -> CheckResult:
    limit = ctx.settings.quality_lateness_max_share
    skew = ctx.settings.quality_clock_skew_s
    return per_site_shares(
        ctx,
        faulty=f"countIf({FUTURE})",
        extra="max(toInt64(toUnixTimestamp(ts)) - toUnixTimestamp(received_at))",
        where=RECEIVED_IN_WINDOW,
        params={"skew": skew, "lookback": LOOKBACK_S},
        threshold=limit,
        message=lambda s, n, more: (
            f"{pct(s)} des hits datés dans le futur (avance max {int(more[0]) // 60} min, {seuil(limit)})"
        ),
    )


CHECK = Check("clock_skew", "Hits datés dans le futur (horloge décalée)", run)
