"""The SQL of the Marquage dashboard's datasets: the tagging conformance report of `dnma conformance`
(aggregator/conformance) over the last MARQUAGE_DAYS days, for an ENT site's editor, with the
report's own definitions (its aggregates, the checks' duplicate and clock-skew rules) and the
thresholds of the tagging plan (aggregator.conformance.criteria) as verdict metrics.

Rows are one per day, site, ENT and service: the shares of any selection are sums over them. A
duplicate is counted within its day and service (the report counts over its whole window: a page
view re-sent on another day or under another service is one duplicate there, none here).

The report's UAIs outside the perimeter (marquage_hors_perimetre) are read through perimetres_ent,
which the perimeter sync writes by the report's own rule (perimeter.outside); its worst examples
are the latest non-conforming hits of each site (marquage_exemples), pages as paths only."""

from __future__ import annotations

from aggregator.checks.clock_skew import FUTURE
from aggregator.checks.duplicates import DUPLICATES
from aggregator.checks.unknown_uai import VALID_UAI
from aggregator.conformance import criteria as c
from aggregator.conformance.figures import OUTIL_OK, TYPE_KNOWN
from dnma import vocab
from dnma.indicators import PERIMETERS_TABLE, tagging_sql
from dnma.settings import Settings
from dnma.uai import CHECK_LETTERS
from dnma_superset.labels import SERVICE_LABELS, label_sql

MARQUAGE_DAYS = 28  # four weeks: every service of a school week, twice over
# The report's judging floor and rule parameters, at their defaults (a dataset has no settings).
MIN_HITS = Settings.model_fields["quality_min_hits"].default
_SKEW = Settings.model_fields["quality_clock_skew_s"].default
_BUCKET = Settings.model_fields["quality_duplicate_seconds"].default


def _array(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"  # vocabulary codes: no quote inside


def _bound(sql: str) -> str:
    """The report's parameterised SQL with its parameters written in (a dataset has no binding)."""
    for name, value in (("profils", _array(vocab.PROFILS)), ("services", _array(vocab.SERVICES)),
                        ("types", _array(vocab.TYPES))):
        sql = sql.replace(f"{{{name}:Array(String)}}", value)
    return sql.replace("{skew:UInt32}", str(_SKEW)).replace("{bucket:UInt32}", str(max(1, _BUCKET)))


# (column, French label, aggregate over dnma.hits): the counts behind each criterion.
COUNTS: tuple[tuple[str, str, str], ...] = (
    ("hits", "Hits", "count()"),
    ("hits_uai_valide", "Hits à UAI valide", f"countIf({VALID_UAI})"),
    ("hits_profil_connu", "Hits à PROFIL connu", "countIf(profil IN {profils:Array(String)})"),
    ("hits_service_connu", "Hits à SERVICE connu", "countIf(service IN {services:Array(String)})"),
    ("hits_type_connu", "Hits à TYPE connu", f"countIf({TYPE_KNOWN})"),
    ("hits_outil_conforme", "Hits à TYPE connu dont l'OUTIL suit la règle", f"countIf({TYPE_KNOWN} AND {OUTIL_OK})"),
    ("hits_doublons", "Hits en double", DUPLICATES),
    ("hits_futurs", "Hits datés dans le futur", f"countIf({FUTURE})"),
)
# criterion -> (numerator column, denominator column)
SHARES: dict[c.Criterion, tuple[str, str]] = {
    c.UAI_VALIDE: ("hits_uai_valide", "hits"),
    c.PROFIL_CONNU: ("hits_profil_connu", "hits"),
    c.SERVICE_CONNU: ("hits_service_connu", "hits"),
    c.TYPE_CONNU: ("hits_type_connu", "hits"),
    c.OUTIL_CONFORME: ("hits_outil_conforme", "hits_type_connu"),
    c.DOUBLONS: ("hits_doublons", "hits"),
    c.HORLOGE: ("hits_futurs", "hits"),
}


def share_sql(criterion: c.Criterion) -> str:
    num, den = SHARES[criterion]
    return f"sum({num}) / nullIf(sum({den}), 0)"


def verdict_sql(criterion: c.Criterion) -> str:
    """The report's verdict (criteria.Criterion.verdict) of a selection, its floor included."""
    num, den = SHARES[criterion]
    sign = ">=" if criterion.at_least else "<="
    return (f"multiIf(sum({den}) < {MIN_HITS}, '{c.NON_EVALUABLE}', "
            f"sum({num}) / sum({den}) {sign} {criterion.threshold}, '{c.CONFORME}', '{c.NON_CONFORME}')")


def seen_verdict_sql() -> str:
    """ETABLISSEMENTS_VUS's verdict over rows of marquage_etablissements (a perimeter without an
    establishment of the referential is not judged)."""
    k = c.ETABLISSEMENTS_VUS
    return (f"multiIf(count() = 0, '{c.NON_EVALUABLE}', countIf(hits > 0) / count() >= {k.threshold}, "
            f"'{c.CONFORME}', '{c.NON_CONFORME}')")


def outside_verdict_sql() -> str:
    """HORS_PERIMETRE's verdict over rows of marquage_hors_perimetre (the report's floor included)."""
    k = c.HORS_PERIMETRE
    return (f"multiIf(sum(hits) < {MIN_HITS}, '{c.NON_EVALUABLE}', sumIf(hits, hors_perimetre = 1) / sum(hits) "
            f"<= {k.threshold}, '{c.CONFORME}', '{c.NON_CONFORME}')")


def outside_list_sql(shown: int = 10) -> str:
    """The `shown` UAIs outside the perimeter with most hits, 'UAI (hits)', most first; 'aucun'."""
    pairs = "arrayZip(sumMapIf([uai], [hits], hors_perimetre = 1).1, sumMapIf([uai], [hits], hors_perimetre = 1).2)"
    listed = (f"arrayStringConcat(arrayMap(x -> concat(x.1, ' (', toString(x.2), ')'), "
              f"arraySlice(arraySort(x -> (-toInt64(x.2), x.1), {pairs}), 1, {shown})), ', ')")
    return f"if(countIf(hors_perimetre = 1) = 0, 'aucun', {listed})"


def uai_expected_sql(uai: str) -> str:
    """What an invalid UAI (flagged by the collector) should be, in uai.problem's words and order:
    its format, its département (uai.departement_prefix_ok), its check letter."""
    letter = f"substring('{CHECK_LETTERS}', toUInt32OrZero(substring({uai}, 1, 7)) % 23 + 1, 1)"
    dep = f"toUInt16OrZero(substring({uai}, 1, 3))"
    dep_ok = f"({dep} BETWEEN 1 AND 95 OR {dep} BETWEEN 971 AND 976 OR {dep} BETWEEN 980 AND 989 OR {dep} IN (620, 720))"
    return (f"multiIf({uai} = '', 'UAI non envoyé', NOT match({uai}, '^[0-9]{{7}}[A-Z]$'), "
            f"'7 chiffres puis une lettre attendus', NOT {dep_ok}, "
            f"concat('département « ', substring({uai}, 1, 3), ' » inexistant'), "
            f"concat('lettre de contrôle ', {letter}, ' attendue'))")


EXAMPLES_PER_DEFECT = 20  # the latest non-conforming hits kept per site and defect


def _examples_sql(db: str, recent: str) -> str:
    """The latest non-conforming hits of each site, one row per defect of a hit: what was sent and
    what the tagging plan expects (the report's examples' words: uai.problem, the vocabularies, the
    OUTIL rule); the page's path only, never its query string (it may hold personal data)."""
    uai_expected = uai_expected_sql("uai")

    def shown(column: str) -> str:
        return f"if({column} = '', '(absent)', {column})"

    defects = ", ".join((
        f"(NOT ({VALID_UAI}), 'UAI invalide', {shown('uai')}, {uai_expected})",
        f"(profil NOT IN {_array(vocab.PROFILS)}, 'PROFIL inconnu', {shown('profil')}, "
        f"'{', '.join(vocab.PROFILS)}')",
        f"(service NOT IN {_array(vocab.SERVICES)}, 'SERVICE inconnu', {shown('service')}, "
        "'un des 25 services du plan de marquage')",
        f"(type NOT IN {_array(vocab.TYPES)}, 'TYPE inconnu', {shown('type')}, '{' ou '.join(vocab.TYPES)}')",
        f"({_bound(TYPE_KNOWN)} AND NOT ({OUTIL_OK}), 'OUTIL contraire à la règle', "
        f"concat(type, ' / ', {shown('outil')}), if(type = 'TIERS', 'OUTIL renseigné', 'OUTIL vide'))",
    ))
    return f"""SELECT ts, toDate(ts) AS day, site_id, projet, service, {label_sql('service', SERVICE_LABELS)} AS service_libelle,
  d.2 AS defaut, d.3 AS valeur, d.4 AS attendu,
  path(url) AS page
FROM {db}.hits
ARRAY JOIN arrayFilter(x -> x.1, [{defects}]) AS d
WHERE {recent}
ORDER BY ts DESC
LIMIT {EXAMPLES_PER_DEFECT} BY site_id, defaut"""


def marquage_sql(db: str, ref: str, today: str) -> dict[str, str]:
    """dataset name -> SQL, for dataset_sql.SQL."""
    counts = ",\n  ".join(f"{_bound(sql)} AS {name}" for name, _label, sql in COUNTS)
    recent = f"toDate(ts) >= {today} - {MARQUAGE_DAYS}"
    return {
        "marquage": f"""SELECT toDate(ts) AS day, site_id, projet, service,
  {counts}
FROM {db}.hits
WHERE {recent}
GROUP BY day, site_id, projet, service""",
        # The 25 services for each site that sent hits: a service never seen has hits = 0.
        "marquage_services": f"""SELECT s.site_id AS site_id, s.projet AS projet, v.service AS service,
  toUInt64(ifNull(h.hits, 0)) AS hits
FROM (SELECT site_id, any(projet) AS projet FROM {db}.hits WHERE {recent} GROUP BY site_id) AS s
CROSS JOIN (SELECT arrayJoin({_array(vocab.SERVICES)}) AS service) AS v
LEFT JOIN (SELECT site_id, service, count() AS hits FROM {db}.hits WHERE {recent} GROUP BY site_id, service) AS h
  ON h.site_id = s.site_id AND h.service = v.service""",
        # The establishments of each site's declared perimeter (the tagging denominator of
        # dnma.indicators, as the report's), with their hits of a valid UAI: 0 = never seen.
        "marquage_etablissements": f"""SELECT p.site_id AS site_id, p.projet AS projet, p.uai AS uai,
  dictGetOrDefault({ref}, 'nom', tuple(p.uai), '') AS etablissement, p.degre AS degre,
  dictGetOrDefault({ref}, 'departement', tuple(p.uai), '') AS departement, toUInt64(ifNull(h.hits, 0)) AS hits
FROM ({tagging_sql(db)}) AS p
LEFT JOIN (SELECT site_id, uai, count() AS hits FROM {db}.hits WHERE {recent} AND {VALID_UAI}
           GROUP BY site_id, uai) AS h ON h.site_id = p.site_id AND h.uai = p.uai""",
        # The hits of each site with a declared perimeter, per UAI: hors_perimetre = 1 for a valid UAI
        # of the referential (schools: degre != '', as the checks' referential) that is not among the
        # site's establishments in perimetres_ent, written by the perimeter check's own rule
        # (perimeter.outside). A UAI unknown to the referential is never counted here (the report
        # may count one by its département code alone: the unknown-UAI check's business).
        "marquage_hors_perimetre": f"""SELECT h.site_id AS site_id, h.projet AS projet, h.uai AS uai, h.hits AS hits,
  toUInt8(h.valide AND h.uai IN (SELECT uai FROM {db}.etablissements WHERE degre != '')
          AND (h.site_id, h.uai) NOT IN (SELECT site_id, uai FROM {db}.{PERIMETERS_TABLE} FINAL)) AS hors_perimetre
FROM (SELECT site_id, any(projet) AS projet, uai, count() AS hits, countIf({VALID_UAI}) > 0 AS valide
      FROM {db}.hits WHERE {recent} GROUP BY site_id, uai) AS h
WHERE h.site_id IN (SELECT site_id FROM {db}.{PERIMETERS_TABLE} FINAL)""",
        "marquage_exemples": _examples_sql(db, recent),
    }
