"""duplicates: share of a site's hits that repeat a page view's `pv_id` or repeat an identical hit
(same visitor, action, URL and properties) within a few seconds, above a threshold."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding, pct, share_severity, ts
from aggregator.checks.shares import HITS_IN_WINDOW, seuil

_IDENTITY = "visitor_id, action, url, title, service, type, profil, uai, event_category, event_action, event_name"
_PAGEVIEW = "action = 'pageview' AND pv_id != ''"
# A key seen n times is n - 1 duplicates: count() minus the distinct keys, in one scan. Aggregates
# over the hits of a group; {bucket:UInt32} seconds (settings.quality_duplicate_seconds).
SAME_HITS = f"count() - uniqExact(cityHash64({_IDENTITY}, intDiv(toUnixTimestamp(ts), {{bucket:UInt32}})))"
REPEATED_PV = f"countIf({_PAGEVIEW}) - uniqExactIf(cityHash64(visitor_id, pv_id), {_PAGEVIEW})"
# The two counts overlap (a re-sent page view is both): the larger is the duplicate count. Also
# read by the conformance report (aggregator/conformance): one definition of a duplicate.
DUPLICATES = f"greatest({SAME_HITS}, {REPEATED_PV})"


def run(ctx: CheckContext) -> CheckResult:
    label, start, end = ctx.share_window()
    result = CheckResult(label, start, end)
    limit = ctx.settings.quality_duplicates_max_share
    sql = (
        f"SELECT site_id, count(), {SAME_HITS}, {REPEATED_PV} "
        f"FROM {ctx.table('hits')} WHERE {HITS_IN_WINDOW} GROUP BY site_id ORDER BY site_id"
    )
    rows = ctx.rows(sql, start=ts(start), end=ts(end), bucket=max(1, ctx.settings.quality_duplicate_seconds))
    for site_id, total, same, pv in rows:
        scope = ("site", str(site_id))
        if total < ctx.settings.quality_min_hits:
            result.skipped.add(scope)
            continue
        share = max(same, pv) / total  # as DUPLICATES
        if share > limit:
            result.findings.append(
                Finding(
                    *scope,
                    observed=round(share, 6),
                    expected=limit,
                    severity=share_severity(share, limit),
                    message=f"{pct(share)} de hits en double (pv_id répété ou hit identique à quelques secondes, {seuil(limit)})",
                    details={"hits": int(total), "identiques": int(same), "pv_id_repetes": int(pv)},
                )
            )
    return result


CHECK = Check("duplicates", "Hits en double (pv_id répété, hits identiques à quelques secondes)", run)
