"""The conformance report's figures: one site's hits over a window of its own days, per site and per
service, judged by the criteria; the 25 services never seen, the UAIs outside the perimeter and the
perimeter's establishments never seen, and the worst examples of each defect.

Every definition is the quality checks' (aggregator/checks): a valid UAI (unknown_uai.VALID_UAI),
the perimeter (perimeter.outside, perimetres.rows), a duplicate (duplicates.DUPLICATES), a clock
problem (clock_skew.FUTURE); the vocabulary is dnma.vocab's. Reads only: any client will do (the
live loader's read-only endpoint, or the storage opened by the command)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aggregator.checks import perimetres
from aggregator.checks.base import CheckContext, top
from aggregator.checks.clock_skew import FUTURE
from aggregator.checks.duplicates import DUPLICATES
from aggregator.checks.perimeter import declared, outside
from aggregator.checks.unknown_uai import VALID_UAI
from aggregator.conformance import criteria as c
from dnma import uai as uai_rules
from dnma import vocab
from dnma.settings import Settings
from dnma.sites import Site, SiteRegistry

EXAMPLES = 10  # worst examples shown per defect
NEVER_SEEN_SHOWN = 50  # establishments never seen listed (all are counted)

WINDOW = "site_id = {site:UInt32} AND ts >= toDateTime({start:UInt32}) AND ts < toDateTime({end:UInt32})"
# The OUTIL rule (docs/tagging.md, Règle OUTIL), judged on hits whose TYPE is known.
TYPE_KNOWN = "type IN {types:Array(String)}"
OUTIL_OK = "if(type = 'TIERS', outil != '', outil = '')"
# The shares of PROPERTY_CRITERIA then DOUBLONS and HORLOGE, as aggregates over a group of hits.
_AGGREGATES = (
    "count()",
    f"countIf({VALID_UAI})",
    "countIf(profil IN {profils:Array(String)})",
    "countIf(service IN {services:Array(String)})",
    f"countIf({TYPE_KNOWN})",
    f"countIf({TYPE_KNOWN} AND {OUTIL_OK})",
    DUPLICATES,
    f"countIf({FUTURE})",
)


@dataclass(frozen=True)
class Figure:
    """One criterion judged over one scope: the site ('' service) or one service of it."""

    scope: str  # 'site' or 'service'
    service: str
    criterion: c.Criterion
    numerator: int
    denominator: int
    value: float | None  # None: not judged (see verdict)
    verdict: str


@dataclass(frozen=True)
class Examples:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    total: int | None = None  # how many there are when more than the rows shown


@dataclass
class Report:
    site: Site
    debut: date
    fin: date
    start: datetime
    end: datetime
    hits: int
    min_hits: int
    figures: list[Figure] = field(default_factory=list)
    services_never_seen: list[str] = field(default_factory=list)
    examples: dict[str, Examples] = field(default_factory=dict)

    def site_figures(self) -> list[Figure]:
        return [f for f in self.figures if f.scope == "site"]

    def services(self) -> list[str]:
        """The services of the window, most hits first (as stored; '' when absent)."""
        return list(dict.fromkeys(f.service for f in self.figures if f.scope == "service"))

    def figure(self, key: str, service: str | None = None) -> Figure:
        scope = "site" if service is None else "service"
        return next(f for f in self.figures
                    if f.scope == scope and f.criterion.key == key and (service is None or f.service == service))


def window(site: Site, debut: date, fin: date) -> tuple[datetime, datetime]:
    """[debut 00:00, fin + 1 day 00:00) in the site's own time zone."""
    tz = ZoneInfo(site.timezone)
    return datetime.combine(debut, time(), tz), datetime.combine(fin + timedelta(days=1), time(), tz)


def _share(criterion: c.Criterion, scope: str, service: str, num: int, den: int, min_hits: int) -> Figure:
    value = num / den if den else None
    verdict = criterion.verdict(value) if den >= max(min_hits, 1) else c.NON_EVALUABLE
    return Figure(scope, service, criterion, int(num), int(den), value, verdict)


def _property_figures(scope: str, service: str, row: tuple[Any, ...], min_hits: int,
                      judged: tuple[c.Criterion, ...]) -> list[Figure]:
    hits, uai, profil, svc, typ, outil, doublons, futur = (int(v) for v in row)
    parts = {c.UAI_VALIDE: (uai, hits), c.PROFIL_CONNU: (profil, hits), c.SERVICE_CONNU: (svc, hits),
             c.TYPE_CONNU: (typ, hits), c.OUTIL_CONFORME: (outil, typ), c.DOUBLONS: (doublons, hits),
             c.HORLOGE: (futur, hits)}
    return [_share(k, scope, service, *parts[k], min_hits) for k in judged]


def build(client: Any, settings: Settings, site: Site, debut: date, fin: date,
          min_hits: int | None = None) -> Report:
    """The report of `site` over its days [debut, fin]; `min_hits` (default settings.quality_min_hits):
    a scope with fewer hits is shown but not judged."""
    start, end = window(site, debut, fin)
    ctx = CheckContext(client, settings, now=end, explicit_window=(start, end))
    floor = settings.quality_min_hits if min_hits is None else min_hits
    params: dict[str, Any] = {
        "site": site.id, "start": int(start.timestamp()), "end": int(end.timestamp()),
        "profils": list(vocab.PROFILS), "services": list(vocab.SERVICES), "types": list(vocab.TYPES),
        "bucket": max(1, settings.quality_duplicate_seconds), "skew": settings.quality_clock_skew_s,
    }
    hits_table = ctx.table("hits")
    aggregates = ", ".join(_AGGREGATES)
    [site_row] = ctx.rows(f"SELECT {aggregates} FROM {hits_table} WHERE {WINDOW}", **params)
    report = Report(site, debut, fin, start, end, int(site_row[0]), floor)
    site_figures = _property_figures("site", "", site_row, floor, (*c.PROPERTY_CRITERIA, c.DOUBLONS, c.HORLOGE))

    service_rows = ctx.rows(f"SELECT service, {aggregates} FROM {hits_table} WHERE {WINDOW} "
                            "GROUP BY service ORDER BY count() DESC, service", **params)
    for service, *row in service_rows:
        report.figures.extend(_property_figures("service", service, tuple(row), floor, c.SERVICE_CRITERIA))

    seen = {s for s, *row in service_rows if s in vocab.SERVICES and row[0]}
    report.services_never_seen = [s for s in vocab.SERVICES if s not in seen]
    never = len(report.services_never_seen)
    site_figures.append(Figure("site", "", c.SERVICES_JAMAIS_VUS, never, len(vocab.SERVICES), float(never),
                               c.SERVICES_JAMAIS_VUS.verdict(never) if report.hits >= max(floor, 1)
                               else c.NON_EVALUABLE))

    by_uai = [(str(u), int(n), int(v)) for u, n, v in ctx.rows(
        f"SELECT uai, count(), countIf({VALID_UAI}) FROM {hits_table} WHERE {WINDOW} GROUP BY uai", **params)]
    site_figures.append(_outside(ctx, report, by_uai))
    site_figures.append(_perimeter_seen(ctx, report, by_uai))
    order = {k: i for i, k in enumerate(c.SITE_CRITERIA)}
    report.figures[:0] = sorted(site_figures, key=lambda f: order[f.criterion])
    _examples(ctx, report, by_uai, params)
    return report


def _outside(ctx: CheckContext, report: Report, by_uai: list[tuple[str, int, int]]) -> Figure:
    """UAIs valid but outside the declared perimeter (the perimeter check's rule), over all hits."""
    site = report.site
    if not declared(site.perimeter):
        return Figure("site", "", c.HORS_PERIMETRE, 0, report.hits, None, c.NON_EVALUABLE)
    ref = ctx.referential
    offenders: list[tuple[str, int, str]] = []
    for uai, n, valid in by_uai:
        if valid and uai_rules.is_valid(uai):
            why = outside(site.perimeter, uai, ref.get(uai))
            if why:
                offenders.append((uai, n, why))
    offenders.sort(key=lambda o: (-o[1], o[0]))
    report.examples["hors_perimetre"] = Examples(
        "UAI hors du périmètre déclaré", ("UAI", "Hits", "Motif"),
        [(u, n, "degré" if why == "degre" else "territoire") for u, n, why in offenders[:EXAMPLES]], len(offenders))
    return _share(c.HORS_PERIMETRE, "site", "", sum(n for _, n, _ in offenders), report.hits, report.min_hits)


def _perimeter_seen(ctx: CheckContext, report: Report, by_uai: list[tuple[str, int, int]]) -> Figure:
    """The establishments of the declared perimeter (perimetres.rows: the tagging denominator of
    dnma.indicators) with at least one hit of a valid UAI in the window."""
    site = report.site
    if not declared(site.perimeter) or ctx.referential_size == 0:
        return Figure("site", "", c.ETABLISSEMENTS_VUS, 0, 0, None, c.NON_EVALUABLE)
    perimeter = {row[2]: row for row in perimetres.rows(ctx.client, ctx.db, SiteRegistry([site]))}
    if not perimeter:
        return Figure("site", "", c.ETABLISSEMENTS_VUS, 0, 0, None, c.NON_EVALUABLE)
    seen = {u for u, _n, valid in by_uai if valid}
    never = sorted(u for u in perimeter if u not in seen)
    names = dict(ctx.rows(f"SELECT uai, any(nom) FROM {ctx.table('etablissements')} WHERE uai IN {{u:Array(String)}} "
                          "GROUP BY uai", u=never[:NEVER_SEEN_SHOWN]))
    report.examples["etablissements_jamais_vus"] = Examples(
        "Établissements du périmètre jamais vus", ("UAI", "Établissement", "Degré", "Département"),
        [(u, names.get(u, ""), perimeter[u][3], perimeter[u][4]) for u in never[:NEVER_SEEN_SHOWN]], len(never))
    found = len(perimeter) - len(never)
    value = found / len(perimeter)
    verdict = c.ETABLISSEMENTS_VUS.verdict(value) if report.hits >= max(report.min_hits, 1) else c.NON_EVALUABLE
    return Figure("site", "", c.ETABLISSEMENTS_VUS, found, len(perimeter), value, verdict)


def _shown(value: str) -> str:
    return value if value != "" else "(absent)"


def _examples(ctx: CheckContext, report: Report, by_uai: list[tuple[str, int, int]], params: dict[str, Any]) -> None:
    hits = ctx.table("hits")
    ex = report.examples
    invalid = top(((u, n - v) for u, n, v in by_uai if u and n > v), EXAMPLES)
    ex["uai_invalides"] = Examples("UAI invalides", ("UAI", "Hits", "Problème"),
                                   [(u, n, uai_rules.problem(u)) for u, n in invalid.items()],
                                   sum(1 for u, n, v in by_uai if u and n > v))
    missing = sum(n for u, n, _ in by_uai if not u)
    if missing:
        ex["uai_invalides"].rows.append(("(absent)", missing, "UAI non envoyé"))
    for prop, allowed, title in (("profil", "profils", "PROFIL inconnus"), ("service", "services", "SERVICE inconnus"),
                                 ("type", "types", "TYPE inconnus")):
        rows = ctx.rows(f"SELECT {prop}, count() AS n FROM {hits} WHERE {WINDOW} AND {prop} NOT IN "
                        f"{{{allowed}:Array(String)}} GROUP BY {prop} ORDER BY n DESC, {prop} LIMIT {EXAMPLES}",
                        **params)
        ex[f"{prop}_inconnus"] = Examples(title, ("Valeur", "Hits"), [(_shown(v), int(n)) for v, n in rows])
    rows = ctx.rows(f"SELECT type, outil, count() AS n FROM {hits} WHERE {WINDOW} AND {TYPE_KNOWN} AND NOT {OUTIL_OK} "
                    f"GROUP BY type, outil ORDER BY n DESC, type, outil LIMIT {EXAMPLES}", **params)
    ex["outil"] = Examples("OUTIL contraire à la règle", ("TYPE", "OUTIL", "Hits"),
                           [(t, _shown(o), int(n)) for t, o, n in rows])
    # Pages only (path, no query string: it may hold personal data).
    rows = ctx.rows(f"SELECT path(url) AS page, {DUPLICATES} AS n FROM {hits} WHERE {WINDOW} GROUP BY page "
                    f"HAVING n > 0 ORDER BY n DESC, page LIMIT {EXAMPLES}", **params)
    ex["doublons"] = Examples("Pages aux hits en double", ("Page", "Hits en double"), [(p, int(n)) for p, n in rows])
    rows = ctx.rows(f"SELECT ts, received_at, toInt64(toUnixTimestamp(ts)) - toUnixTimestamp(received_at) AS avance, "
                    f"path(url) FROM {hits} WHERE {WINDOW} AND {FUTURE} ORDER BY avance DESC, ts LIMIT {EXAMPLES}",
                    **params)
    tz = ZoneInfo(report.site.timezone)
    ex["horloge"] = Examples("Hits datés dans le futur", ("Date du hit", "Reçu à", "Avance", "Page"),
                             [(_local(t, tz), _local(r, tz), _duration(int(a)), p) for t, r, a, p in rows])


def _local(value: datetime, tz: ZoneInfo) -> str:
    if value.tzinfo is None:  # clickhouse-connect gives the column's zone; a bare value is Paris time
        value = value.replace(tzinfo=ZoneInfo("Europe/Paris"))
    return value.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S")


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
