"""coverage: share of the establishments of a site's declared perimeter (from the referential) seen
in its hits over the last N days, below a threshold ("objectif 100 % des ENT marqués")."""

from __future__ import annotations

from datetime import timedelta

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding, pct, ts
from aggregator.checks.calendar import Territory
from aggregator.checks.perimeter import declared, outside
from dnma.sites import SitePerimeter


def run(ctx: CheckContext) -> CheckResult:
    days = ctx.settings.quality_coverage_days
    label, start, end = ctx.window(24 * days, f"{days}d")
    result = CheckResult(label, start, end)
    limit = ctx.settings.quality_coverage_min_share
    ref = ctx.referential
    sites = [s for s in ctx.sites.all() if declared(s.perimeter)]
    if not ref or not sites:
        result.skipped.add(("*", "*"))
        return result
    seen: dict[int, set[str]] = {}
    sql = (
        f"SELECT site_id, groupUniqArray(uai) FROM {ctx.table('hits')} "
        "WHERE ts >= toDateTime({start:UInt32}) AND ts < toDateTime({end:UInt32}) "
        "AND uai != '' AND NOT has(flags, 'invalid_uai') GROUP BY site_id"
    )
    for site_id, uais in ctx.rows(sql, start=ts(start), end=ts(end)):
        seen[site_id] = set(uais)
    expected_by_perimeter: dict[SitePerimeter, set[str]] = {}
    school_days_by_territory: dict[Territory, int] = {}
    n_days = (end - start).days
    for site in sites:
        scope = ("site", str(site.id))
        territory = ctx.site_territory(site.id)
        if territory not in school_days_by_territory:
            school_days_by_territory[territory] = sum(
                1
                for i in range(n_days)
                if (d := (start + timedelta(days=i)).date()).weekday() < 5 and not ctx.calendar.is_off(d, territory)
            )
        school_days = school_days_by_territory[territory]
        if school_days < ctx.settings.quality_coverage_min_school_days:
            result.skipped.add(scope)  # summer: establishments are closed, not untagged
            continue
        if site.perimeter not in expected_by_perimeter:  # ENTs of one project often share a perimeter
            expected_by_perimeter[site.perimeter] = {u for u, row in ref.items() if not outside(site.perimeter, u, row)}
        expected = expected_by_perimeter[site.perimeter]
        if not expected:
            result.skipped.add(scope)
            continue
        found = len(expected & seen.get(site.id, set()))
        share = found / len(expected)
        if share < limit:
            result.findings.append(
                Finding(
                    *scope,
                    observed=round(share, 6),
                    expected=limit,
                    severity="critical" if found == 0 else "warning",
                    message=(
                        f"{found} établissements vus sur {len(expected)} du périmètre en {days} jours "
                        f"({pct(share)}, objectif {pct(limit)})"
                    ),
                    details={"vus": found, "perimetre": len(expected), "jours_scolaires": school_days},
                )
            )
    return result


CHECK = Check("coverage", "Part des établissements du périmètre vus sur 30 jours (marquage)", run)
