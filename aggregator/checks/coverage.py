"""coverage: share of the establishments of a site's declared perimeter (the tagging denominator
of dnma.indicators) active through that site (at least one visit in the last N school weeks, the
same definition as the dashboards'), below a threshold ("objectif 100 % des ENT marqués")."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding, pct
from aggregator.checks.perimeter import declared
from aggregator.checks.perimetres import sync
from dnma.clock import PARIS
from dnma.indicators import active_sql, is_school_week, school_weeks, tagging_sql


def run(ctx: CheckContext) -> CheckResult:
    n = ctx.settings.active_school_weeks
    end = ctx.window_end
    today = (end - timedelta(microseconds=1)).astimezone(PARIS).date()
    weeks = school_weeks(today, n)
    start = datetime.combine(weeks[-1], time(), tzinfo=PARIS)
    result = CheckResult(f"{n}sem", start, end)
    limit = ctx.settings.quality_coverage_min_share
    sites = [s for s in ctx.sites.all() if declared(s.perimeter)]
    if not ctx.referential_size or not sites:
        result.skipped.add(("*", "*"))
        return result
    sync(ctx.client, ctx.settings, ctx.sites)  # a no-op when the runner already wrote them
    if not is_school_week(today - timedelta(days=today.weekday())):
        result.skipped.add(("*", "*"))  # summer or Christmas: establishments are closed, not untagged
        return result
    db = ctx.db
    sql = (f"SELECT p.site_id, count() AS perimetre, countIf(has(a.sites, p.site_id)) AS vus\n"
           f"FROM ({tagging_sql(db)}) AS p\n"
           f"LEFT JOIN ({active_sql(db, '{today:Date}', '{n:UInt32}')}) AS a ON a.uai = p.uai\n"
           "GROUP BY p.site_id")
    counts = {int(site_id): (int(total), int(found)) for site_id, total, found in ctx.rows(sql, today=today, n=n)}
    for site in sites:
        scope = ("site", str(site.id))
        total, found = counts.get(site.id, (0, 0))
        if not total:
            result.skipped.add(scope)  # its perimeter holds no establishment of the referential
            continue
        share = found / total
        if share < limit:
            result.findings.append(
                Finding(
                    *scope,
                    observed=round(share, 6),
                    expected=limit,
                    severity="critical" if found == 0 else "warning",
                    message=(
                        f"{found} établissements actifs sur {total} du périmètre déclaré "
                        f"en {n} semaines scolaires ({pct(share)}, objectif {pct(limit)})"
                    ),
                    details={"actifs": found, "perimetre": total, "semaines_scolaires": n},
                )
            )
    return result


CHECK = Check("coverage", "Part des établissements du périmètre déclaré actifs (marquage)", run)
