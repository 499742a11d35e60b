"""vocabulary: SERVICE / PROFIL / TYPE values outside TAGGING.md's vocabulary (dnma.vocab), listed
per site with their counts; fires from a minimum number of hits."""

from __future__ import annotations

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding
from aggregator.checks.shares import HITS_IN_WINDOW
from dnma import vocab

_LISTS = {"service": vocab.SERVICES, "profil": vocab.PROFILS, "type": vocab.TYPES}


def run(ctx: CheckContext) -> CheckResult:
    label, start, end = ctx.share_window()
    result = CheckResult(label, start, end)
    branches = " UNION ALL ".join(
        f"SELECT site_id, '{prop}' AS prop, {prop} AS value, count() AS n FROM {ctx.table('hits')} "
        f"WHERE {HITS_IN_WINDOW} AND {prop} != '' AND {prop} NOT IN {{{prop}s:Array(String)}} GROUP BY site_id, value"
        for prop in _LISTS
    )
    rows = ctx.rows(
        f"SELECT site_id, prop, value, n FROM ({branches}) ORDER BY site_id, n DESC, value",
        start=int(start.timestamp()),
        end=int(end.timestamp()),
        **{f"{p}s": list(v) for p, v in _LISTS.items()},
    )
    by_site: dict[int, dict[str, dict[str, int]]] = {}
    for site_id, prop, value, n in rows:
        by_site.setdefault(site_id, {}).setdefault(prop, {})[value] = int(n)
    for site_id, props in sorted(by_site.items()):
        total = sum(sum(v.values()) for v in props.values())
        if total < ctx.settings.quality_vocabulary_min_hits:
            continue
        listed = [(p, v, n) for p, values in props.items() for v, n in values.items()]
        listed.sort(key=lambda x: -x[2])
        shown = ", ".join(f"{p.upper()}={v} ({n})" for p, v, n in listed[:5])
        result.findings.append(
            Finding(
                "site",
                str(site_id),
                observed=total,
                expected=0,
                message=f"{total} hits avec des valeurs hors vocabulaire : {shown}",
                details={p: dict(list(values.items())[:20]) for p, values in props.items()},
            )
        )
    return result


CHECK = Check("vocabulary", "Valeurs SERVICE / PROFIL / TYPE hors vocabulaire, avec leur nombre", run)
