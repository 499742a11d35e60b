"""volume: the last complete day's visits (hits when no visits are built) of each site, projet and
académie against a robust band (median ± k·MAD) of the same weekday over previous weeks; days off skipped."""

from __future__ import annotations

import statistics
from datetime import date, datetime, time, timedelta

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding
from aggregator.checks.calendar import NATIONAL, Territory
from dnma.clock import PARIS

Series = dict[tuple[str, str], dict[date, int]]


def _day(ctx: CheckContext) -> date:
    if ctx.explicit_window:
        return (ctx.window_end - timedelta(seconds=1)).date()
    return ctx.window_end.date() - timedelta(days=1)


def _series(ctx: CheckContext, days: list[date]) -> tuple[Series, str]:
    """Daily counts per scope; visits when the sessionizer built the day judged, else hits."""
    params = {"days": days, "d": days[0]}
    unit = "hits"
    if ctx.has_table("visits") and ctx.scalar(f"SELECT count() FROM {ctx.table('visits')} WHERE day = {{d:Date}}", **params):
        unit = "visites"
        sql = (
            f"SELECT day, site_id, projet, academie, count() FROM {ctx.table('visits')} "
            "WHERE day IN {days:Array(Date)} GROUP BY day, site_id, projet, academie"
        )
    else:
        # Aggregate by UAI first, then attach the académie: the join sees thousands of rows, not millions.
        academie = "''"
        join = ""
        if ctx.referential_size:
            academie = "e.academie"
            join = (
                f"LEFT JOIN (SELECT uai, any(academie) AS academie FROM {ctx.table('etablissements')} GROUP BY uai) AS e "
                "ON h.uai = e.uai"
            )
        sql = (
            f"SELECT h.day, h.site_id, h.projet, {academie}, sum(h.n) FROM ("
            f"SELECT toDate(ts) AS day, site_id, projet, uai, count() AS n FROM {ctx.table('hits')} "
            "WHERE toDate(ts) IN {days:Array(Date)} GROUP BY day, site_id, projet, uai"
            f") AS h {join} GROUP BY h.day, h.site_id, h.projet, 4"
        )
    series: Series = {}
    for day, site_id, projet, academie, n in ctx.rows(sql, **params):
        for scope in (("site", str(site_id)), ("projet", projet), ("academie", academie)):
            if scope[1]:
                per_day = series.setdefault(scope, {})
                per_day[day] = per_day.get(day, 0) + int(n)
    return series, unit


def _territory(ctx: CheckContext, kind: str, value: str) -> Territory:
    if kind == "site":
        return ctx.site_territory(int(value))
    if kind == "academie":
        return ctx.calendar.territory_of_academie(value)
    sites = [s for s in ctx.sites.all() if s.projet == value]
    if not sites:
        return NATIONAL
    out = ctx.site_territory(sites[0].id)
    for site in sites[1:]:
        out = out | ctx.site_territory(site.id)
    return out


def _nombre(x: float) -> str:
    return f"{x:,.0f}".replace(",", "\u202f")


def run(ctx: CheckContext) -> CheckResult:
    s = ctx.settings
    day = _day(ctx)
    start = datetime.combine(day, time(0), PARIS)
    label = ctx.window(24, "1d")[0]
    result = CheckResult(label, start, start + timedelta(days=1))
    past = [day - timedelta(weeks=w) for w in range(1, s.quality_volume_weeks + 1)]
    series, unit = _series(ctx, [day, *past])
    for (kind, value), per_day in sorted(series.items()):
        scope = (kind, value)
        territory = _territory(ctx, kind, value)
        if ctx.calendar.is_off(day, territory):
            result.skipped.add(scope)
            continue
        base = [per_day.get(d, 0) for d in past if not ctx.calendar.is_off(d, territory)]
        if len(base) < s.quality_volume_min_weeks:
            result.skipped.add(scope)
            continue
        median = statistics.median(base)
        if median < s.quality_volume_min_daily:
            result.skipped.add(scope)
            continue
        mad = statistics.median(abs(x - median) for x in base)
        half = max(s.quality_volume_k * 1.4826 * mad, s.quality_volume_min_rel_band * median)
        x = per_day.get(day, 0)
        if median - half <= x <= median + half:
            continue
        sens = "basse" if x < median else "haute"
        result.findings.append(
            Finding(
                kind,
                value,
                observed=x,
                expected=median,
                severity="critical" if x == 0 or abs(x - median) > 2 * half else "warning",
                message=(
                    f"{_nombre(x)} {unit} le {day:%d/%m/%Y}, anormalement {sens} : attendu {_nombre(median)} "
                    f"(bande {_nombre(max(0, median - half))} – {_nombre(median + half)})"
                ),
                details={"unite": unit, "jour": day.isoformat(), "bas": median - half, "haut": median + half,
                         "reference": dict(zip([d.isoformat() for d in past], [per_day.get(d, 0) for d in past], strict=True))},
            )
        )
    return result


CHECK = Check("volume", "Volume quotidien hors de la bande habituelle (site, projet, académie)", run)
