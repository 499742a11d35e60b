"""silence: a site has sent nothing for longer than usual at this time of the week. Learned from
past weeks: the same span, same weekday and hour, held hits in most of them. Days off never fire."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding, ts
from dnma.clock import PARIS

WEEK_S = 7 * 86400


def _duree(seconds: int) -> str:
    h, m = divmod(seconds // 60, 60)
    return f"{h} h {m:02d}" if h else f"{m} min"


def run(ctx: CheckContext) -> CheckResult:
    s = ctx.settings
    now = ctx.window_end if ctx.explicit_window else ctx.now
    result = CheckResult(ctx.window(0, "now")[0], now, now)
    cap = min(s.quality_silence_max_hours * 3600, WEEK_S - 3600)  # one week window per hit: span < 1 week
    weeks = s.quality_silence_weeks + 2  # spare weeks replace holiday weeks
    horizon = weeks * WEEK_S + cap
    now_s = ts(now)
    last = dict(
        ctx.rows(
            f"SELECT site_id, toUnixTimestamp(max(ts)) FROM {ctx.table('hits')} "
            "WHERE ts >= toDateTime({lo:UInt32}) AND ts <= toDateTime({now:UInt32}) GROUP BY site_id",
            lo=now_s - horizon,
            now=now_s,
        )
    )
    silent = {sid: now_s - t for sid, t in last.items() if now_s - t >= s.quality_silence_min_minutes * 60}
    if not silent:
        return result
    ids = sorted(silent)
    spans = [min(silent[i], cap) for i in ids]
    # Hit at distance d before now falls in week w's span when w*WEEK < d <= w*WEEK + span.
    rows = ctx.rows(
        f"""
        SELECT site_id, w, count() FROM (
            SELECT site_id, {{now:UInt32}} - toUnixTimestamp(ts) AS d, intDiv(d - 1, {WEEK_S}) AS w,
                   transform(site_id, {{ids:Array(UInt32)}}, {{spans:Array(UInt32)}}, 0) AS span
            FROM {ctx.table('hits')}
            WHERE site_id IN {{ids:Array(UInt32)}} AND ts >= toDateTime({{lo:UInt32}}) AND ts < toDateTime({{now:UInt32}})
        ) WHERE w >= 1 AND d - w * {WEEK_S} <= span GROUP BY site_id, w
        """,
        now=now_s,
        ids=ids,
        spans=spans,
        lo=now_s - horizon,
    )
    counts: dict[int, dict[int, int]] = {}
    for site_id, w, n in rows:
        counts.setdefault(site_id, {})[int(w)] = int(n)
    for site_id, span in zip(ids, spans, strict=True):
        scope = ("site", str(site_id))
        territory = ctx.site_territory(site_id)
        here = [(now - timedelta(seconds=x)).date() for x in (0, span)]
        if any(ctx.calendar.is_off(d, territory) for d in here):
            result.skipped.add(scope)  # holidays and public holidays never fire
            continue
        usable: list[int] = []
        for w in range(1, weeks + 1):
            end = now - timedelta(seconds=w * WEEK_S)
            if ts(end) > last[site_id]:
                continue  # that week's span overlaps the current silence itself
            if any(ctx.calendar.is_off(d.date(), territory) for d in (end, end - timedelta(seconds=span))):
                continue
            usable.append(w)
            if len(usable) == s.quality_silence_weeks:
                break
        if len(usable) < s.quality_silence_min_weeks:
            result.skipped.add(scope)  # not enough history to know what is usual
            continue
        seen = [counts.get(site_id, {}).get(w, 0) for w in usable]
        active = sum(1 for n in seen if n > 0) / len(seen)
        expected = statistics.median(seen)
        if active >= s.quality_silence_active_share and expected >= s.quality_silence_min_expected_hits:
            silence = silent[site_id]
            since = datetime.fromtimestamp(last[site_id], PARIS)
            result.findings.append(
                Finding(
                    *scope,
                    observed=silence / 60,
                    expected=expected,
                    severity="critical" if silence >= 86400 else "warning",
                    message=(
                        f"Aucun hit depuis {_duree(silence)} (dernier le {since:%d/%m à %H:%M}) ; "
                        f"d'habitude ~{expected:g} hits sur cette plage"
                    ),
                    details={"dernier_hit": since.isoformat(), "semaines": dict(zip(usable, seen, strict=True))},
                )
            )
    return result


CHECK = Check("silence", "Site muet plus longtemps que d'habitude à cette heure de la semaine", run)
