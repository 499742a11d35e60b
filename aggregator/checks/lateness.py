"""lateness: share of the hits a site delivered in the window that arrived more than N hours
after their own time (replays, queued trackers, log imports), above a threshold."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, pct
from aggregator.checks.shares import per_site_shares, seuil

# Hits received in the window but dated up to this long before: bounds the partitions scanned.
LOOKBACK_S = 31 * 86400
RECEIVED_IN_WINDOW = (
    "received_at >= toDateTime({start:UInt32}) AND received_at < toDateTime({end:UInt32}) "
    "AND ts >= toDateTime({start:UInt32} - {lookback:UInt32})"
)


def run(ctx: CheckContext) -> CheckResult:
    limit = ctx.settings.quality_lateness_max_share
    hours = ctx.settings.quality_lateness_hours
    late_s = int(hours * 3600)
    return per_site_shares(
        ctx,
        faulty="countIf(toInt64(toUnixTimestamp(received_at)) - toUnixTimestamp(ts) > {late:UInt32})",
        extra="max(toInt64(toUnixTimestamp(received_at)) - toUnixTimestamp(ts))",
        where=RECEIVED_IN_WINDOW,
        params={"late": late_s, "lookback": LOOKBACK_S},
        threshold=limit,
        message=lambda s, n, more: (
            f"{pct(s)} des hits reçus plus de {hours:g} h après leur date ({seuil(limit)}), "
            f"retard max {int(more[0]) // 3600} h"
        ),
    )


CHECK = Check("lateness", "Hits reçus avec plus de N heures de retard", run)
