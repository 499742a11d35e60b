"""The SQL of the bundle's virtual datasets: which visit rollup (or dnma.visits, dnma.hits) each reads,
picked in Jinja by the filters and the user's perimeter, and the tier-dependent "utilisateurs" metric.

Measures follow spec/INDICATORS.md: "utilisateurs" is always an exact distinct count over the rows
asked for, never a sum of daily figures: on the rollup-backed datasets it merges the groupBitmap
states of the tier read (aggregator/rollups.py), on the per-visit and per-hit ones it is the
uniqExact of the uid hash, else the visitor id (rollups.USER_KEY): the figure the open-data exports
and the reporting API give for the same rows.
"""

from __future__ import annotations

from aggregator.checks.perimetres import NAMES_TABLE as PROJECT_NAMES_TABLE
from aggregator.referentiel import year_sql
from aggregator.rollups import BY_TABLE, USER_KEY, rollup_for
from dnma.indicators import (
    CENSUS_CLASSES,
    CENSUS_COLOR_NAMES,
    CENSUS_LEVELS,
    PERIMETERS_TABLE,
    active_sql,
    census_class_sql,
    census_sql,
    reference_school_year_sql,
    rentree_monday_sql,
    school_year_weeks_sql,
    tagging_sql,
)
from dnma_superset.marquage_sql import marquage_sql
from dnma_superset.quality_sql import quality_sql

DB = "dnma"

# Dashboards read the visit rollups of aggregator/rollups.py, not one row per visit, except where no
# rollup holds what a chart needs (tools, native/third-party type, one establishment's services, a
# "service" filter on visit charts: dnma.visits). Which tier a query reads is decided when Superset
# renders the dataset's Jinja: the coarsest tier holding every column filtered on, by the native
# filters or by the user's row-level-security perimeter (`current_user_rls_rules()`), as
# rollup_for() picks it. Every branch of a dataset exposes the same columns; those a tier lacks are
# '' there, and that tier is never picked when they are filtered on. Distinct users are exact
# groupBitmap states, merged by the metric (BY_TABLE[table].users_merge), never added.
REF = f"'{DB}.etablissements_dict'"
# Today on DNMA's clock (DNMA_NOW), from superset_config's Jinja addon: never ClickHouse's today().
TODAY = "toDate('{{ dnma_today() }}')"


def school_year(day: str = "day") -> str:
    return (f"concat(toString(toYear({day}) - (toMonth({day}) < 8)), '-', "
            f"toString(toYear({day}) - (toMonth({day}) < 8) + 1))")


def period(day: str = "day") -> str:
    """The "année scolaire" filter also prunes partitions inside the dataset (Jinja): ` AND (...)`."""
    return ("{% for y in filter_values('annee_scolaire') %}{{ ' AND (' if loop.first else ' OR ' }}"
            f"{day} BETWEEN makeDate({{{{ y[:4] | int }}}}, 8, 1) AND makeDate({{{{ y[:4] | int + 1 }}}}, 7, 31)"
            "{{ ')' if loop.last }}{% endfor %}")


def _filtered(columns: tuple[str, ...]) -> str:
    return " or ".join(f"filter_values('{c}')" for c in columns)


NATIONAL, TERRITOIRES, DETAIL = "visits_national_daily", "visits_territoires_daily", "visits_daily"
SVC_NATIONAL, SVC_TERRITOIRES = "visits_services_national_daily", "visits_services_daily"
GEO_COLUMNS = ("region", "academie", "departement")
VISIT_FINE = ("uai", "site_id", "projet")  # among visit rollups, only the per-UAI detail has them
SERVICE_FINE = ("uai", "site_id")  # no services rollup has them: dnma.visits
# The tiers as aggregator.rollups.rollup_for picks them (a rollup change breaks the build, not a chart).
assert rollup_for({"degre", "profil", "device"}) == NATIONAL
assert rollup_for({"degre", *GEO_COLUMNS, "profil", "device"}) == TERRITOIRES
assert rollup_for({"degre", *GEO_COLUMNS, *VISIT_FINE, "profil", "device"}) == DETAIL
assert rollup_for({"degre", "profil", "service"}) == SVC_NATIONAL
assert rollup_for({"degre", *GEO_COLUMNS, "projet", "profil", "service"}) == SVC_TERRITOIRES
# One merge function for every tier: the "utilisateurs" metric does not depend on the tier read.
assert BY_TABLE[NATIONAL].users == BY_TABLE[TERRITOIRES].users == BY_TABLE[SVC_NATIONAL].users \
    == BY_TABLE[SVC_TERRITOIRES].users == BY_TABLE[DETAIL].users

# Jinja flags rendered before a dataset's SQL, and again before a metric depending on the tier.
# dnma_rls: the user's RLS clauses ("academie = 'Rennes'", "projet = 'ENT_BRETAGNE'"), '' for national.
VISIT_FLAGS = (
    "{%- set dnma_rls = (current_user_rls_rules() or []) | join(' ') -%}\n"
    f"{{%- set dnma_detail = {_filtered(VISIT_FINE)} or 'projet' in dnma_rls -%}}\n"
    f"{{%- set dnma_geo = dnma_detail or {_filtered(GEO_COLUMNS)} or dnma_rls -%}}\n"
)
SERVICE_FLAGS = (
    "{%- set dnma_rls = (current_user_rls_rules() or []) | join(' ') -%}\n"
    f"{{%- set dnma_detail = {_filtered(SERVICE_FINE)} -%}}\n"
    f"{{%- set dnma_geo = dnma_detail or {_filtered((*GEO_COLUMNS, 'projet'))} or dnma_rls -%}}\n"
)
# A visit counts once whatever services it touched: the "service" filter on a visit chart keeps the
# visits that touched one of the chosen services (dnma.visits), and leaves the outer query.
SERVICE_FILTER = "filter_values('service', remove_filter=True)"
SERVICE_WHERE = (" AND arrayExists(s -> s IN {{ filter_values('service', remove_filter=True) | where_in }},"
                 " services)")


def visit_flags(base: str) -> str:
    """VISIT_FLAGS of a dataset reading at least tier `base` (dnma_detail: the per-UAI tier is read)."""
    return VISIT_FLAGS + ("{%- set dnma_detail = true -%}\n" if base == DETAIL else "")


def users_metric(base: str) -> str:
    """Distinct users of a visits dataset: the states merged, exactly, whatever tier the filters pick
    (every visit rollup keeps groupBitmap states; the per-visit branches make them from the keys)."""
    return f"{BY_TABLE[base].users_merge}(etats_utilisateurs)"


def users_metric_if(base: str, condition: str) -> str:
    """users_metric() over the rows meeting `condition` (one year's, one week's)."""
    return f"{BY_TABLE[base].users_merge}If(etats_utilisateurs, {condition})"


SERVICE_USERS_METRIC = BY_TABLE[SVC_NATIONAL].users_merge + "(etats_utilisateurs)"

ROLLUP_MEASURES = ("t.visites AS nb_visites, t.utilisateurs AS etats_utilisateurs, t.duree AS duree_s,\n  "
                   "t.pages_vues AS nb_pages_vues, t.actions AS nb_actions, t.rebonds AS nb_rebonds")


def visits_measures(users_state: str) -> str:
    """The rollup measures from `dnma.visits` rows; users as a groupBitmap state of the 64-bit keys
    themselves (no index needed: exact, merged by the same metric as the rollups' UInt32 states)."""
    return (f"toUInt64(count()) AS nb_visites, {users_state}(toUInt64({USER_KEY})) AS etats_utilisateurs,\n  "
            "toUInt64(sum(duration)) AS duree_s, toUInt64(sum(pageviews)) AS nb_pages_vues,\n  "
            "toUInt64(sum(actions)) AS nb_actions, toUInt64(sum(is_bounce)) AS nb_rebonds")


# Small lookups on a territory (a few hundred rows), joined by the map and académie charts' dataset.
# The pupils of an académie (taux de visite) are those of the day's school year in the referential
# kept per year, or of the loaded year nearest to it (aggregator.referentiel.year_sql): comparing
# two school years compares each with its own pupil counts. ISO codes do not change with the year.
TERRITORY_JOINS = f"""
LEFT JOIN (SELECT departement, any(departement_iso) AS departement_iso FROM {DB}.etablissements FINAL
           WHERE departement != '' GROUP BY departement) AS di ON di.departement = t.departement
LEFT JOIN (SELECT region, any(region_iso) AS region_iso FROM {DB}.etablissements FINAL
           WHERE region != '' GROUP BY region) AS ri ON ri.region = t.region
LEFT JOIN (SELECT annee, academie, sum(eleves) AS eleves FROM {DB}.etablissements_annees FINAL
           GROUP BY annee, academie) AS ea
  ON ea.academie = t.academie AND ea.annee = {year_sql(DB, 't.day')}"""
TERRITORY_COLUMNS = "di.departement_iso AS departement_iso, ri.region_iso AS region_iso, ea.eleves AS eleves_academie"
NO_TERRITORY_COLUMNS = "'' AS departement_iso, '' AS region_iso, toUInt64(0) AS eleves_academie"


def _period_columns() -> list[str]:
    """The period columns and the degree every visit and service dataset starts with."""
    return ["t.day AS day", "toMonday(t.day) AS debutsemaine", f"{school_year('t.day')} AS annee_scolaire",
            "t.degre AS degre"]


def _dimensions(geo: bool, fine: bool, extra: str) -> str:
    cols = _period_columns()
    cols += [f"t.{c} AS {c}" if geo else f"'' AS {c}" for c in GEO_COLUMNS]
    if fine:
        cols += ["t.projet AS projet", "t.uai AS uai", "t.site_id AS site_id",
                 f"dictGetOrDefault({REF}, 'nom', tuple(t.uai), '') AS etablissement"]
    else:
        cols += ["'' AS projet", "'' AS uai", "toUInt32(0) AS site_id", "'' AS etablissement"]
    cols += ["t.profil AS profil", extra]
    return ",\n  ".join(cols)


def visit_sql(base: str, territories: bool = False, days: str = "") -> str:
    """A visits dataset reading at least tier `base` (NATIONAL, TERRITOIRES or DETAIL); finer ones when
    the filters or the RLS perimeter ask for it, dnma.visits under a service filter. `days`: a
    condition on t.day in place of the "année scolaire" filter's."""
    terr_cols = TERRITORY_COLUMNS if territories else NO_TERRITORY_COLUMNS
    joins = TERRITORY_JOINS if territories else ""
    when = f" AND {days}" if days else period('t.day')

    def rollup(table: str, geo: bool, fine: bool) -> str:
        return (f"SELECT {_dimensions(geo, fine, 't.device AS device')},\n  {terr_cols},\n  {ROLLUP_MEASURES}\n"
                f"FROM {DB}.{table} AS t{joins}\nWHERE 1{when}")

    from_visits = (
        f"SELECT {_dimensions(True, True, 't.device AS device')},\n  {terr_cols},\n  "
        + visits_measures(BY_TABLE[DETAIL].users_state) + "\n"
        f"FROM {DB}.visits AS t{joins}\nWHERE 1{when}{SERVICE_WHERE}\n"
        "GROUP BY day, degre, region, academie, departement, projet, uai, site_id, profil, device"
        + (", departement_iso, region_iso, eleves_academie" if territories else "")
    )
    levels = [(DETAIL, "dnma_detail", True, True), (TERRITOIRES, "dnma_geo", True, False),
              (NATIONAL, "", False, False)]
    levels = levels[:[lv[0] for lv in levels].index(base) + 1]
    out = visit_flags(base) + "{%- if " + SERVICE_FILTER + " %}\n" + from_visits + "\n"
    for table, flag, geo, fine in levels:
        head = "{%- elif " + flag + " %}\n" if flag and table != base else "{%- else %}\n"
        out += head + rollup(table, geo, fine) + "\n"
    return out + "{%- endif %}"


def services_sql() -> str:
    """Visits per service: the services rollups, or dnma.visits for one establishment (or site)."""
    def rollup(table: str, geo: bool) -> str:
        cols = [*_period_columns(), *[f"t.{c} AS {c}" if geo else f"'' AS {c}" for c in (*GEO_COLUMNS, "projet")],
                "'' AS uai", "toUInt32(0) AS site_id", "t.profil AS profil", "t.service AS service"]
        return (f"SELECT {', '.join(cols)},\n  {ROLLUP_MEASURES}\nFROM {DB}.{table} AS t\n"
                f"WHERE 1{period('t.day')}")

    cols = [*_period_columns(), *[f"t.{c} AS {c}" for c in (*GEO_COLUMNS, "projet", "uai", "site_id", "profil")],
            "service"]
    from_visits = (f"SELECT {', '.join(cols)},\n  {visits_measures(BY_TABLE[SVC_NATIONAL].users_state)}\n"
                   f"FROM {DB}.visits AS t ARRAY JOIN t.services AS service\nWHERE 1{period('t.day')}\n"
                   "GROUP BY day, degre, region, academie, departement, projet, uai, site_id, profil, service")
    return (SERVICE_FLAGS + "{%- if dnma_detail %}\n" + from_visits + "\n{%- elif dnma_geo %}\n"
            + rollup(SVC_TERRITOIRES, True) + "\n{%- else %}\n" + rollup(SVC_NATIONAL, False) + "\n{%- endif %}")


# "Active" establishments (dnma.indicators), on DNMA's clock and with N from the settings
# (superset_config's `dnma_active_weeks()`, settings.active_school_weeks).
ACTIVE = active_sql(DB, TODAY, "{{ dnma_active_weeks() }}")
# The census reads activity through one ENT when the user's perimeter or the "Projet ENT" filter is one.
DEPLOYMENT_FLAGS = ("{%- set dnma_by_projet = filter_values('projet') or "
                    "'projet' in (current_user_rls_rules() or []) | join(' ') -%}\n")

# The same week a year earlier: 52 weeks back, the same weekday (school weeks line up, dates do not).
YEAR_AGO = f"({TODAY} - 364)"
ACTIVE_YEAR_AGO = active_sql(DB, YEAR_AGO, "{{ dnma_active_weeks() }}")


def _sql_array(values: tuple[str, ...]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in values) + "]"


# The deployment census (spec/INDICATORS.md, dnma.indicators): one row per census level (écoles,
# collèges by département; lycées by région académique) and territory, its public establishments,
# the active ones (through any ENT) now and the same week a year earlier, their classes and the
# move between them (evolution). The territories' départements, académies, régions and declaring
# ENTs are arrays for row-level security. Five bounds rows per level (borne = 1, one per class, on
# codes no map draws) hold every class index: country_map spreads its scale over the extent of its
# rows, so with them index i is always the palette's colour i, and each legend lists the five
# classes, counting territories with countIf(borne = 0). Charts on the census keep borne = 0 rows
# except the maps and legends. Pupils (the referential's effectifs, dnma.indicators.census_sql):
# eleves of the establishments whose count is known, eleves_actifs of the active ones among them;
# sans_effectif (sans_effectif_actifs) counts the (active) establishments whose count is unknown,
# never estimated. Summed over (uai, eleves) pairs: the join on declaring ENTs repeats an
# establishment once per ENT.
_CENSUS_CLASS = census_class_sql("t.etablissements_actifs", "t.etablissements")
_CENSUS_CLASS_YEAR_AGO = census_class_sql("t.actifs_an_passe", "t.etablissements")
CENSUS_NO_YEAR_AGO = "Aucune mesure la même semaine un an plus tôt : pas de comparaison"
CENSUS_SQL = f"""SELECT t.niveau AS niveau, t.territoire AS territoire, t.territoire_iso AS territoire_iso,
  t.etablissements AS etablissements, t.etablissements_actifs AS etablissements_actifs,
  t.eleves AS eleves, t.eleves_actifs AS eleves_actifs, t.sans_effectif AS sans_effectif,
  t.sans_effectif_actifs AS sans_effectif_actifs,
  {_CENSUS_CLASS} AS classe_indice,
  {_sql_array(CENSUS_CLASSES)}[classe_indice + 1] AS classe,
  {_sql_array(CENSUS_COLOR_NAMES)}[classe_indice + 1] AS couleur,
  multiIf(NOT m.mesure, concat('{CENSUS_NO_YEAR_AGO} (semaine du ', formatDateTime(toMonday({YEAR_AGO}), '%d/%m/%Y'), ')'),
          {_CENSUS_CLASS_YEAR_AGO} = classe_indice, concat('Inchangée : « ', classe, ' »'),
          concat(if(classe_indice > {_CENSUS_CLASS_YEAR_AGO}, 'Progression', 'Recul'), ' de « ',
                 {_sql_array(CENSUS_CLASSES)}[{_CENSUS_CLASS_YEAR_AGO} + 1], ' » à « ', classe, ' »')) AS evolution,
  t.departements AS departements, t.academies AS academies, t.regions AS regions, t.projets AS projets,
  toUInt8(0) AS borne
FROM (SELECT e.niveau AS niveau, if(e.niveau = 'Lycées', e.region, e.departement) AS territoire,
             any(if(e.niveau = 'Lycées', e.region_iso, e.departement_iso)) AS territoire_iso,
             uniqExact(e.uai) AS etablissements, uniqExactIf(e.uai, a.uai != '') AS etablissements_actifs,
             uniqExactIf(e.uai, b.uai != '') AS actifs_an_passe,
             toUInt64(arraySum(p -> p.2, groupUniqArray((e.uai, e.eleves)))) AS eleves,
             toUInt64(arraySum(p -> p.2, groupUniqArrayIf((e.uai, e.eleves), a.uai != ''))) AS eleves_actifs,
             uniqExactIf(e.uai, e.eleves = 0) AS sans_effectif,
             uniqExactIf(e.uai, e.eleves = 0 AND a.uai != '') AS sans_effectif_actifs,
             groupUniqArray(e.departement) AS departements, groupUniqArray(e.academie) AS academies,
             groupUniqArray(e.region) AS regions, groupUniqArrayIf(p.projet, p.projet != '') AS projets
      FROM ({census_sql(DB)}) AS e
      LEFT JOIN (SELECT DISTINCT projet, uai FROM ({tagging_sql(DB)})) AS p ON p.uai = e.uai
      LEFT JOIN ({ACTIVE}) AS a ON a.uai = e.uai
      LEFT JOIN ({ACTIVE_YEAR_AGO}) AS b ON b.uai = e.uai
      WHERE e.niveau != ''
      GROUP BY niveau, territoire) AS t
CROSS JOIN (SELECT count() > 0 AS mesure FROM ({ACTIVE_YEAR_AGO})) AS m
UNION ALL
SELECT niveau, '', concat('ZZ-', toString(i)), toUInt64(0), toUInt64(0),
  toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt8(i),
  {_sql_array(CENSUS_CLASSES)}[i + 1], {_sql_array(CENSUS_COLOR_NAMES)}[i + 1], '',
  CAST([] AS Array(String)), CAST([] AS Array(String)), CAST([] AS Array(String)), CAST([] AS Array(String)),
  toUInt8(1)
FROM (SELECT arrayJoin({_sql_array(CENSUS_LEVELS)}) AS niveau, arrayJoin(range(5)) AS i)"""

# Rentrée N vs N−1 (spec/INDICATORS.md, dnma.indicators): the visit rows of school year N and N−1,
# each day placed in its school week k, counted from its own year's rentrée (not by calendar date),
# so that week k of N and week k of N−1 compare. N: the "année scolaire" filter's latest year (the
# filter is taken off the outer query: it would drop N−1's rows), else reference_school_year() on
# DNMA's clock (the last school year until the running one's first week is complete). debutsemaine
# is week k's Monday in N for both years (N−1's line drawn under N's weeks), semaine_civile the
# row's own Monday. N's running week is left out (complete weeks only); semaine_reference: the last
# complete school week of N, the tiles' week. Each year's rows keep the territory and degree they
# were built with: each year against its own year's referential. The tier (national, territories,
# per UAI) is picked as for the other visit datasets (filters, RLS).
RENTREE_FLAGS = "{%- set dnma_annees = filter_values('annee_scolaire', remove_filter=True) -%}\n"
RENTREE_YEAR = ("{% if dnma_annees %}toUInt16({{ (dnma_annees | max)[:4] | int }}){% else %}"
                f"toUInt16({reference_school_year_sql(TODAY)}){{% endif %}}")
RENTREE_DAYS = (f"t.day >= {rentree_monday_sql(RENTREE_YEAR + ' - 1')} "
                f"AND t.day < {rentree_monday_sql(RENTREE_YEAR + ' + 1')}")
# The inner chain's whitespace control dropped: the outer query wraps it.
_RENTREE_VISITS = visit_sql(NATIONAL, days=RENTREE_DAYS).replace("{%-", "{%").replace("-%}", "%}")
RENTREE_SQL = RENTREE_FLAGS + f"""SELECT v.day AS day, toMonday(v.day) AS semaine_civile,
  toUInt8(v.day < {rentree_monday_sql('c.annee_n')}) AS rang,
  toUInt32(if(rang = 0, indexOf(c.semaines_n, semaine_civile), indexOf(c.semaines_n1, semaine_civile)))
    AS semaine_scolaire,
  c.semaines_n[semaine_scolaire] AS debutsemaine,
  concat(toString(c.annee_n), '-', toString(c.annee_n + 1)) AS annee_scolaire,
  c.semaine_reference AS semaine_reference,
  v.degre AS degre, v.region AS region, v.academie AS academie, v.departement AS departement,
  v.projet AS projet, v.uai AS uai, v.site_id AS site_id, v.profil AS profil, v.device AS device,
  v.nb_visites AS nb_visites, v.etats_utilisateurs AS etats_utilisateurs
FROM (
{_RENTREE_VISITS}
) AS v
CROSS JOIN (SELECT {RENTREE_YEAR} AS annee_n, {school_year_weeks_sql('annee_n')} AS semaines_n,
                   {school_year_weeks_sql('annee_n - 1')} AS semaines_n1,
                   toUInt32(length(arrayFilter(m -> m + 7 <= {TODAY}, semaines_n))) AS semaine_reference) AS c
WHERE semaine_scolaire BETWEEN 1 AND length(c.semaines_n) AND (rang = 1 OR semaine_civile + 7 <= {TODAY})"""

# Datasets without a rollup: per visit (tools, native/third-party type), per hit (local events).
VISIT_ROW = f"""day, toMonday(day) AS debutsemaine, {school_year()} AS annee_scolaire,
  site_id, projet, uai, degre, academie, departement, region, profil, device,
  duration, pageviews, actions, is_bounce, {USER_KEY} AS utilisateur"""
VISIT_ROW_WHERE = "WHERE 1" + period() + "{% if " + SERVICE_FILTER + " %}" + SERVICE_WHERE + "{% endif %}"

# The native/third-party category of a visit (exclusive: each visit in exactly one).
TYPE_CATEGORIES = ("Natif seul", "Tiers seul", "Natif et tiers", "Type non renseigné")
TYPE_CATEGORY = ("multiIf(type_natif = 1 AND type_tiers = 1, 'Natif et tiers', type_natif = 1, 'Natif seul', "
                 "type_tiers = 1, 'Tiers seul', 'Type non renseigné')")

SQL = {
    "visites": visit_sql(NATIONAL),
    "visites_territoires": visit_sql(TERRITOIRES, territories=True),
    "visites_etablissements": visit_sql(DETAIL),
    "visites_services": services_sql(),
    "visites_outils": f"SELECT {VISIT_ROW},\n  outil\nFROM {DB}.visits\nARRAY JOIN outils AS outil\n{VISIT_ROW_WHERE}",
    # One row per visit, in exactly one of the exclusive categories: a visit may touch native and
    # third-party services both, and a pie of overlapping slices would count it twice.
    "visites_types": f"SELECT {VISIT_ROW},\n  {TYPE_CATEGORY} AS type_service\nFROM {DB}.visits\n{VISIT_ROW_WHERE}",
    # The deployment census (dnma.indicators): one row per public establishment × ENT whose declared
    # perimeter holds it (projet '' when none). "actif": at least one visit in the last N school
    # weeks, through any ENT; through the ENT itself when the user's perimeter or the filter is an
    # ENT (an ENT is never credited with establishments active only through another one). Its
    # native filters list their values from the visit datasets (the same, cheaper, shared queries).
    "deploiement": DEPLOYMENT_FLAGS + f"""SELECT e.uai AS uai, e.nom AS etablissement, e.degre AS degre, e.region AS region,
  e.academie AS academie, e.departement AS departement, e.departement_iso AS departement_iso,
  e.region_iso AS region_iso, p.projet AS projet,
  {{% if dnma_by_projet %}}toUInt8(p.projet != '' AND has(a.projets, p.projet)){{% else %}}toUInt8(a.uai != ''){{% endif %}} AS actif,
  toUInt8(p.projet != '' AND has(a.projets, p.projet)) AS actif_projet
FROM ({census_sql(DB)}) AS e
LEFT JOIN (SELECT DISTINCT projet, uai FROM ({tagging_sql(DB)})) AS p ON p.uai = e.uai
LEFT JOIN ({ACTIVE}) AS a ON a.uai = e.uai""",
    "recensement": CENSUS_SQL,
    # Tagging coverage (dnma.indicators): one row per ENT × establishment of its declared perimeter
    # (any sector), active through that ENT or not. The perimeter columns hold the territories the
    # ENT's perimeter spans: a territorial user sees the whole declared perimeter of every ENT
    # working on their territory, the same coverage the national user sees.
    # nom_projet: the project's name from the registry (projets_ent, the code when it has none),
    # the column charts show; filters and RLS keep the code (projet).
    "couverture_ent": f"""SELECT p.projet AS projet, if(n.nom != '', n.nom, p.projet) AS nom_projet,
  p.degre AS degre, p.uai AS uai,
  dictGetOrDefault({REF}, 'nom', tuple(p.uai), '') AS etablissement,
  toUInt8(has(a.projets, p.projet)) AS actif_projet,
  t.departements AS departements_perimetre, t.academies AS academies_perimetre, t.regions AS regions_perimetre
FROM (SELECT DISTINCT projet, uai, degre FROM ({tagging_sql(DB)})) AS p
LEFT JOIN ({ACTIVE}) AS a ON a.uai = p.uai
LEFT JOIN (SELECT projet, groupUniqArray(departement) AS departements, groupUniqArray(academie) AS academies,
                  groupUniqArray(region) AS regions
           FROM {DB}.{PERIMETERS_TABLE} FINAL GROUP BY projet) AS t ON t.projet = p.projet
LEFT JOIN (SELECT projet, any(nom) AS nom FROM {DB}.{PROJECT_NAMES_TABLE} FINAL GROUP BY projet) AS n
  ON n.projet = p.projet""",
    "evenements": f"""SELECT toDate(ts) AS day, {school_year('toDate(ts)')} AS annee_scolaire, site_id, projet, uai, action,
  dictGetOrDefault({REF}, 'degre', tuple(uai), '') AS degre,
  dictGetOrDefault({REF}, 'academie', tuple(uai), '') AS academie,
  dictGetOrDefault({REF}, 'departement', tuple(uai), '') AS departement,
  dictGetOrDefault({REF}, 'region', tuple(uai), '') AS region,
  profil, service, event_category, event_action, event_name, url,
  {USER_KEY} AS utilisateur
FROM {DB}.hits
WHERE action IN ('event', 'download', 'outlink') AND NOT has(flags, 'invalid_uai')""" + period('toDate(ts)'),
    "rentree": RENTREE_SQL,
    **quality_sql(DB, REF, TODAY),
    **marquage_sql(DB, REF, TODAY),
}
