"""perimeter: a site sends UAIs outside its declared perimeter: the wrong degree (from the
referential) or the wrong territory (département / académie / région), above a share of its hits."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding, pct, share_severity, top, ts
from aggregator.checks.calendar import _departement, _key
from aggregator.checks.shares import HITS_IN_WINDOW, seuil
from dnma import uai as uai_rules
from dnma.sites import SitePerimeter

RefRow = tuple[str, str, str, str]  # degre, departement_code, academie, region_code


def declared(perimeter: SitePerimeter) -> bool:
    return bool(perimeter.degrees or perimeter.departements or perimeter.academies or perimeter.regions)


@dataclass(frozen=True)
class _Rules:
    """A perimeter's codes normalised once: checks call `outside` for every (site, UAI) pair."""

    degrees: frozenset[str]
    departements: frozenset[str]
    academies: frozenset[str]
    regions: frozenset[str]

    @property
    def territorial(self) -> bool:
        return bool(self.departements or self.academies or self.regions)


@lru_cache(maxsize=4096)
def _rules(perimeter: SitePerimeter) -> _Rules:
    return _Rules(
        frozenset(perimeter.degrees),
        frozenset(_departement(d) for d in perimeter.departements),
        frozenset(_key(a) for a in perimeter.academies),
        frozenset(r.removeprefix("region:").strip().zfill(2) for r in perimeter.regions),
    )


def outside(perimeter: SitePerimeter, uai: str, ref: RefRow | None) -> str:
    """Why a valid UAI is outside the perimeter ('degre', 'territoire'), '' when inside or unknowable."""
    rules = _rules(perimeter)
    if rules.degrees and ref is not None and ref[0] and ref[0] not in rules.degrees:
        return "degre"
    if not rules.territorial:
        return ""
    departement = ref[1] if ref is not None else uai_rules.departement_code(uai)
    if departement in rules.departements:
        return ""
    if ref is None:
        # académie and région need the referential; an unknown UAI is another check's business.
        return "territoire" if not (rules.academies or rules.regions) else ""
    if rules.academies and _key(ref[2]) in rules.academies:
        return ""
    if ref[3] and ref[3].zfill(2) in rules.regions:
        return ""
    return "territoire"


def run(ctx: CheckContext) -> CheckResult:
    label, start, end = ctx.share_window()
    result = CheckResult(label, start, end)
    limit = ctx.settings.quality_perimeter_max_share
    sql = (
        f"SELECT site_id, uai, count() FROM {ctx.table('hits')} WHERE {HITS_IN_WINDOW} "
        "GROUP BY site_id, uai ORDER BY site_id"
    )
    totals: dict[int, int] = {}
    per_site: dict[int, list[tuple[str, int]]] = {}
    for site_id, uai, n in ctx.rows(sql, start=ts(start), end=ts(end)):
        totals[site_id] = totals.get(site_id, 0) + n
        per_site.setdefault(site_id, []).append((uai, n))
    ref = ctx.referential
    for site_id, uais in sorted(per_site.items()):
        site = ctx.site(site_id)
        if site is None or not declared(site.perimeter):
            continue
        if totals[site_id] < ctx.settings.quality_min_hits:
            result.skipped.add(("site", str(site_id)))
            continue
        reasons: dict[str, int] = {}
        offenders: list[tuple[str, int]] = []
        for uai, n in uais:
            if not uai_rules.is_valid(uai):
                continue
            why = outside(site.perimeter, uai, ref.get(uai))
            if why:
                reasons[why] = reasons.get(why, 0) + n
                offenders.append((uai, n))
        bad = sum(reasons.values())
        share = bad / totals[site_id]
        if share > limit:
            worst = top(offenders, 5)
            result.findings.append(
                Finding(
                    "site",
                    str(site_id),
                    observed=round(share, 6),
                    expected=limit,
                    severity=share_severity(share, limit),
                    message=(
                        f"{pct(share)} des hits avec un UAI hors périmètre ({seuil(limit)}), "
                        f"{len(offenders)} UAI dont {', '.join(worst)}"
                    ),
                    details={"hits": totals[site_id], "hors_perimetre": bad, "motifs": reasons, "uai": worst},
                )
            )
    return result


CHECK = Check("perimeter", "UAI hors du périmètre déclaré du site (degré ou territoire)", run)
