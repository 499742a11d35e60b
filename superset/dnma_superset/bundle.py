"""The six DNMA dashboards as a Superset asset bundle: this spec -> superset/assets/*.yaml.

Run `python superset/build_assets.py` (or `make superset-assets`) and commit the YAML with it:
the YAML is what reviewers read and what `dnma superset provision` imports. UUIDs are derived
from names (uuid5), so regenerating gives the same files; keys are sorted, nothing volatile.
Measures follow spec/INDICATORS.md: "utilisateurs" is always a distinct count over the rows
asked for, never a sum of daily figures: on the rollup-backed datasets it merges the distinct-user
states of the tier read (aggregator/rollups.py), on the per-visit and per-hit ones it is the
uniqExact of the uid hash, else the visitor id.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aggregator.rollups import BY_TABLE, rollup_for

HERE = Path(__file__).resolve().parent.parent
ASSETS = HERE / "assets"
NS = uuid.UUID("6f1c8e4e-3b0e-4b5e-9a57-0d2a3c1e5d00")  # DNMA Superset assets
DB = "dnma"
DATABASE_NAME = "DNMA ClickHouse"
VERSION = "1.0.0"


def uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NS, f"{kind}:{name}"))


DATABASE_UUID = uid("database", DATABASE_NAME)

# --- SQL of the virtual datasets ------------------------------------------------------------
# Dashboards read the visit rollups of aggregator/rollups.py, not one row per visit, except where no
# rollup holds what a chart needs (tools, native/third-party type, one establishment's services, a
# "service" filter on visit charts: dnma.visits). Which tier a query reads is decided when Superset
# renders the dataset's Jinja: the coarsest tier holding every column filtered on, by the native
# filters or by the user's row-level-security perimeter (`current_user_rls_rules()`), as
# rollup_for() picks it. Every branch of a dataset exposes the same columns; those a tier lacks are
# '' there, and that tier is never picked when they are filtered on. Distinct users are states,
# merged by the metric with the tier's function (BY_TABLE[table].users_merge), never added.
USER_KEY = "if(user_hash != 0, user_hash, visitor_id)"
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
assert BY_TABLE[NATIONAL].users == BY_TABLE[TERRITOIRES].users == BY_TABLE[SVC_NATIONAL].users \
    == BY_TABLE[SVC_TERRITOIRES].users

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
    """Distinct users of a visits dataset: the read tier's states merged with its function."""
    if base == DETAIL:
        return f"{BY_TABLE[DETAIL].users_merge}(etats_utilisateurs)"
    return (visit_flags(base) + "{%- if dnma_detail -%}" + BY_TABLE[DETAIL].users_merge + "(etats_utilisateurs)"
            "{%- else -%}" + BY_TABLE[base].users_merge + "(etats_utilisateurs){%- endif -%}")


SERVICE_USERS_METRIC = BY_TABLE[SVC_NATIONAL].users_merge + "(etats_utilisateurs)"

ROLLUP_MEASURES = ("t.visites AS nb_visites, t.utilisateurs AS etats_utilisateurs, t.duree AS duree_s,\n  "
                   "t.pages_vues AS nb_pages_vues, t.actions AS nb_actions, t.rebonds AS nb_rebonds")


def visits_measures(users_state: str) -> str:
    return (f"toUInt64(count()) AS nb_visites, {users_state}(toUInt64({USER_KEY})) AS etats_utilisateurs,\n  "
            "toUInt64(sum(duration)) AS duree_s, toUInt64(sum(pageviews)) AS nb_pages_vues,\n  "
            "toUInt64(sum(actions)) AS nb_actions, toUInt64(sum(is_bounce)) AS nb_rebonds")


# Small lookups on a territory (a few hundred rows), joined by the map and académie charts' dataset.
TERRITORY_JOINS = f"""
LEFT JOIN (SELECT departement, any(departement_iso) AS departement_iso FROM {DB}.etablissements FINAL
           WHERE departement != '' GROUP BY departement) AS di ON di.departement = t.departement
LEFT JOIN (SELECT region, any(region_iso) AS region_iso FROM {DB}.etablissements FINAL
           WHERE region != '' GROUP BY region) AS ri ON ri.region = t.region
LEFT JOIN (SELECT academie, sum(eleves) AS eleves FROM {DB}.etablissements FINAL GROUP BY academie) AS ea
  ON ea.academie = t.academie"""
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


def visit_sql(base: str, territories: bool = False) -> str:
    """A visits dataset reading at least tier `base` (NATIONAL, TERRITOIRES or DETAIL); finer ones when
    the filters or the RLS perimeter ask for it, dnma.visits under a service filter."""
    terr_cols = TERRITORY_COLUMNS if territories else NO_TERRITORY_COLUMNS
    joins = TERRITORY_JOINS if territories else ""

    def rollup(table: str, geo: bool, fine: bool) -> str:
        return (f"SELECT {_dimensions(geo, fine, 't.device AS device')},\n  {terr_cols},\n  {ROLLUP_MEASURES}\n"
                f"FROM {DB}.{table} AS t{joins}\nWHERE 1{period('t.day')}")

    from_visits = (
        f"SELECT {_dimensions(True, True, 't.device AS device')},\n  {terr_cols},\n  "
        "{% if dnma_detail %}" + visits_measures(BY_TABLE[DETAIL].users_state) + "{% else %}"
        + visits_measures(BY_TABLE[NATIONAL].users_state) + "{% endif %}\n"
        f"FROM {DB}.visits AS t{joins}\nWHERE 1{period('t.day')}{SERVICE_WHERE}\n"
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


# Raw hits hold the quality columns (flags, reception delay) no rollup keeps: the quality
# dashboard reads the last QUALITY_DAYS days only (an ops view; the checks judge 24 hours).
QUALITY_DAYS = 14

# Datasets without a rollup: per visit (tools, native/third-party type), per hit (local events).
VISIT_ROW = f"""day, toMonday(day) AS debutsemaine, {school_year()} AS annee_scolaire,
  site_id, projet, uai, degre, academie, departement, region, profil, device,
  duration, pageviews, actions, is_bounce, {USER_KEY} AS utilisateur"""
VISIT_ROW_WHERE = "WHERE 1" + period() + "{% if " + SERVICE_FILTER + " %}" + SERVICE_WHERE + "{% endif %}"

SQL = {
    "visites": visit_sql(NATIONAL),
    "visites_territoires": visit_sql(TERRITOIRES, territories=True),
    "visites_etablissements": visit_sql(DETAIL),
    "visites_services": services_sql(),
    "visites_outils": f"SELECT {VISIT_ROW},\n  outil\nFROM {DB}.visits\nARRAY JOIN outils AS outil\n{VISIT_ROW_WHERE}",
    "visites_types": f"SELECT {VISIT_ROW},\n  type_service\nFROM {DB}.visits\n"
    "ARRAY JOIN arrayFilter(t -> t != '', [if(type_natif = 1, 'Natif', ''), if(type_tiers = 1, 'Tiers', '')])"
    f" AS type_service\n{VISIT_ROW_WHERE}",
    # One row per establishment of the referential × ENT project present on its département and
    # degree (projet '' when none): the seed's deployment classes and the per-ENT coverage. Its
    # native filters list their values from the visit datasets (the same, cheaper, shared queries).
    "deploiement": f"""SELECT e.uai AS uai, e.nom AS etablissement, e.degre AS degre, e.region AS region,
  e.academie AS academie, e.departement AS departement, e.departement_iso AS departement_iso,
  e.region_iso AS region_iso, p.projet AS projet,
  toUInt8(a.uai != '') AS actif,
  toUInt8(p.projet != '' AND has(a.projets, p.projet)) AS actif_projet
FROM (SELECT uai, nom, degre, region, academie, departement, departement_iso, region_iso
      FROM {DB}.etablissements FINAL WHERE degre != '') AS e
LEFT JOIN (SELECT DISTINCT departement, degre, projet FROM {DB}.visits_weekly
           WHERE projet != '' AND departement != '') AS p
  ON p.departement = e.departement AND p.degre = e.degre
LEFT JOIN (SELECT uai, groupUniqArray(projet) AS projets FROM {DB}.visits_daily
           WHERE day >= {TODAY} - 30 AND uai != '' GROUP BY uai) AS a
  ON a.uai = e.uai""",
    "evenements": f"""SELECT toDate(ts) AS day, {school_year('toDate(ts)')} AS annee_scolaire, site_id, projet, uai, action,
  dictGetOrDefault({REF}, 'degre', tuple(uai), '') AS degre,
  dictGetOrDefault({REF}, 'academie', tuple(uai), '') AS academie,
  dictGetOrDefault({REF}, 'departement', tuple(uai), '') AS departement,
  dictGetOrDefault({REF}, 'region', tuple(uai), '') AS region,
  profil, service, event_category, event_action, event_name, url,
  {USER_KEY} AS utilisateur
FROM {DB}.hits
WHERE action IN ('event', 'download', 'outlink') AND NOT has(flags, 'invalid_uai')""" + period('toDate(ts)'),
    "qualite_hits": f"""SELECT toDate(ts) AS day, site_id, projet,
  count() AS hits,
  countIf(has(flags, 'invalid_uai')) AS hits_uai_invalide,
  countIf(uai != '' AND NOT has(flags, 'invalid_uai') AND NOT dictHas({REF}, tuple(uai))) AS hits_uai_inconnu,
  countIf(uai != '' AND NOT has(flags, 'invalid_uai')) AS hits_uai_valide,
  quantileExact(0.5)(toInt64(received_at) - toInt64(ts)) AS delai_median_s,
  max(toInt64(received_at) - toInt64(ts)) AS delai_max_s
FROM {DB}.hits
WHERE toDate(ts) >= {TODAY} - {QUALITY_DAYS}
GROUP BY day, site_id, projet""",
    "alertes_qualite": f"""SELECT `check` AS controle, scope_kind, scope_value, `window` AS fenetre, severity,
  status, message, observed, expected, first_seen, last_seen
FROM {DB}.quality_alerts_current""",
    "controles_qualite": f"""SELECT r.controle AS controle, r.dernier_passage AS dernier_passage,
  r.duree_ms AS duree_ms, r.constats AS constats, r.erreur AS erreur,
  a.ouvertes AS alertes_ouvertes,
  multiIf(r.erreur != '', 'erreur', a.ouvertes > 0, 'alerte', 'ok') AS etat
FROM (SELECT `check` AS controle, max(ran_at) AS dernier_passage, argMax(duration_ms, ran_at) AS duree_ms,
             argMax(findings, ran_at) AS constats, argMax(error, ran_at) AS erreur
      FROM {DB}.quality_check_runs GROUP BY `check`) AS r
LEFT JOIN (SELECT `check` AS controle, count() AS ouvertes FROM {DB}.quality_alerts_current
           WHERE status = 'open' GROUP BY `check`) AS a
  ON a.controle = r.controle""",
}

# (column, French label, ClickHouse type, is_dttm)
C = tuple[str, str, str, bool]
DIMENSION_COLUMNS: list[C] = [
    ("day", "Jour", "Date", True),
    ("debutsemaine", "Début de semaine", "Date", True),
    ("annee_scolaire", "Année scolaire", "String", False),
    ("degre", "Degré", "String", False),
    ("region", "Région académique", "String", False),
    ("academie", "Académie", "String", False),
    ("departement", "Département", "String", False),
    ("projet", "Projet ENT", "String", False),
    ("uai", "UAI", "String", False),
    ("site_id", "Site", "UInt32", False),
]
# Rollup-backed visit datasets: measures are per row of a rollup (or of visits grouped alike); the
# distinct-user states (etats_utilisateurs) are only read by the "utilisateurs" metric.
ROLLUP_MEASURE_COLUMNS: list[C] = [
    ("nb_visites", "Visites", "UInt64", False),
    ("duree_s", "Durée totale (s)", "UInt64", False),
    ("nb_pages_vues", "Pages vues", "UInt64", False),
    ("nb_actions", "Actions", "UInt64", False),
    ("nb_rebonds", "Rebonds", "UInt64", False),
]
ROLLUP_VISIT_COLUMNS: list[C] = [
    *DIMENSION_COLUMNS,
    ("etablissement", "Établissement", "String", False),
    ("profil", "Profil", "String", False),
    ("device", "Appareil", "String", False),
    ("departement_iso", "Département (ISO)", "String", False),
    ("region_iso", "Région (ISO)", "String", False),
    ("eleves_academie", "Élèves de l'académie", "UInt64", False),
    *ROLLUP_MEASURE_COLUMNS,
]
ROLLUP_SERVICE_COLUMNS: list[C] = [
    *DIMENSION_COLUMNS, ("profil", "Profil", "String", False), ("service", "Service", "String", False),
    *ROLLUP_MEASURE_COLUMNS,
]
# Per-visit datasets (dnma.visits: no rollup holds tools or the native/third-party type).
VISIT_COLUMNS: list[C] = [
    *DIMENSION_COLUMNS,
    ("profil", "Profil", "String", False),
    ("device", "Appareil", "String", False),
    ("duration", "Durée (s)", "UInt32", False),
    ("pageviews", "Pages vues", "UInt32", False),
    ("actions", "Actions", "UInt32", False),
    ("is_bounce", "Rebond", "UInt8", False),
    ("utilisateur", "Utilisateur (clé)", "UInt64", False),
]
# (metric, French label, SQL, d3 format)
M = tuple[str, str, str, str]
VISIT_METRICS: list[M] = [
    ("visites", "Visites", "count()", ",d"),
    ("utilisateurs", "Utilisateurs", "uniqExact(utilisateur)", ",d"),
    ("pages_vues", "Pages vues", "sum(pageviews)", ",d"),
    ("actions", "Actions", "sum(actions)", ",d"),
    ("duree_moyenne", "Durée moyenne par visite (s)", "avg(duration)", ",.0f"),
    ("taux_rebond", "Taux de rebond", "avg(is_bounce)", ".1%"),
]


def rollup_metrics(users: str) -> list[M]:
    return [
        ("visites", "Visites", "sum(nb_visites)", ",d"),
        ("utilisateurs", "Utilisateurs", users, ",d"),
        ("pages_vues", "Pages vues", "sum(nb_pages_vues)", ",d"),
        ("actions", "Actions", "sum(nb_actions)", ",d"),
        ("duree_moyenne", "Durée moyenne par visite (s)", "sum(duree_s) / nullIf(sum(nb_visites), 0)", ",.0f"),
        ("taux_rebond", "Taux de rebond", "sum(nb_rebonds) / nullIf(sum(nb_visites), 0)", ".1%"),
    ]


@dataclass
class Dataset:
    name: str
    label: str
    columns: list[C]
    metrics: list[M]
    main_dttm: str | None = "day"
    # Row-level security: perimeter level -> SQL clause template ({value} quoted by provision).
    # A level missing here means perimeter users of that level see nothing of this dataset.
    perimeter: dict[str, str] = field(default_factory=dict)

    @property
    def uuid(self) -> str:
        return uid("dataset", self.name)


VISIT_PERIMETER = {
    "region": "region = {value}",
    "academie": "academie = {value}",
    "departement": "departement = {value}",
    "projet": "projet = {value}",
}

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("visites", "Visites (agrégats : national, territoires ou établissements selon les filtres)",
                ROLLUP_VISIT_COLUMNS, rollup_metrics(users_metric(NATIONAL)), perimeter=VISIT_PERIMETER),
        Dataset("visites_territoires", "Visites par territoire (agrégats territoriaux ou établissements)",
                ROLLUP_VISIT_COLUMNS,
                [*rollup_metrics(users_metric(TERRITOIRES)),
                 ("taux_visite", "Taux de visite (visites par élève)",
                  "sum(nb_visites) / nullIf(max(eleves_academie), 0)", ",.4f")],
                perimeter=VISIT_PERIMETER),
        Dataset("visites_etablissements", "Visites par établissement (agrégat par UAI)",
                ROLLUP_VISIT_COLUMNS, rollup_metrics(users_metric(DETAIL)), perimeter=VISIT_PERIMETER),
        Dataset("visites_services", "Visites par service", ROLLUP_SERVICE_COLUMNS,
                rollup_metrics(SERVICE_USERS_METRIC), perimeter=VISIT_PERIMETER),
        Dataset("visites_outils", "Visites par outil", [*VISIT_COLUMNS, ("outil", "Outil", "String", False)],
                VISIT_METRICS, perimeter=VISIT_PERIMETER),
        Dataset("visites_types", "Visites par type de service",
                [*VISIT_COLUMNS, ("type_service", "Type de service", "String", False)],
                VISIT_METRICS, perimeter=VISIT_PERIMETER),
        Dataset(
            "deploiement", "Déploiement (établissements du référentiel)",
            [("uai", "UAI", "String", False), ("etablissement", "Établissement", "String", False),
             ("degre", "Degré", "String", False), ("region", "Région académique", "String", False),
             ("academie", "Académie", "String", False), ("departement", "Département", "String", False),
             ("departement_iso", "Département (ISO)", "String", False), ("region_iso", "Région (ISO)", "String", False),
             ("projet", "Projet ENT", "String", False), ("actif", "Actif sur 30 jours", "UInt8", False),
             ("actif_projet", "Marqué par le projet sur 30 jours", "UInt8", False)],
            [("etablissements", "Établissements du référentiel", "uniqExact(uai)", ",d"),
             ("etablissements_actifs", "Établissements actifs (30 j)", "uniqExactIf(uai, actif = 1)", ",d"),
             ("taux_actifs", "Part d'établissements actifs (30 j)",
              "uniqExactIf(uai, actif = 1) / nullIf(uniqExact(uai), 0)", ".0%"),
             ("classe_deploiement", "Classe de déploiement",
              "multiIf(countIf(projet != '') = 0, 'Aucun projet',"
              " uniqExactIf(uai, actif = 1) >= 0.9 * uniqExact(uai), 'Généralisation massive (≥ 90 %)',"
              " uniqExactIf(uai, actif = 1) >= 0.5 * uniqExact(uai), 'Généralisation partielle (≥ 50 %)',"
              " uniqExactIf(uai, actif = 1) >= 0.2 * uniqExact(uai), 'Déploiement 20–50 %', 'Déploiement < 20 %')",
              ""),
             ("couverture_marquage", "Couverture du marquage (30 j)",
              "uniqExactIf(uai, actif_projet = 1) / nullIf(uniqExact(uai), 0)", ".0%")],
            main_dttm=None, perimeter=VISIT_PERIMETER),
        Dataset(
            "evenements", "Événements locaux (téléchargements, engagement)",
            [("day", "Jour", "Date", True), ("annee_scolaire", "Année scolaire", "String", False),
             ("site_id", "Site", "UInt32", False), ("projet", "Projet ENT", "String", False),
             ("uai", "UAI", "String", False), ("action", "Type d'action", "String", False),
             ("degre", "Degré", "String", False), ("academie", "Académie", "String", False),
             ("departement", "Département", "String", False), ("region", "Région académique", "String", False),
             ("profil", "Profil", "String", False), ("service", "Service", "String", False),
             ("event_category", "Catégorie d'événement", "String", False),
             ("event_action", "Action d'événement", "String", False), ("event_name", "Nom d'événement", "String", False),
             ("url", "URL", "String", False), ("utilisateur", "Utilisateur (clé)", "UInt64", False)],
            [("evenements", "Événements", "count()", ",d"),
             ("utilisateurs", "Utilisateurs", "uniqExact(utilisateur)", ",d")],
            perimeter=VISIT_PERIMETER),
        Dataset(
            "qualite_hits", f"Qualité des hits (UAI, délais), {QUALITY_DAYS} derniers jours",
            [("day", "Jour", "Date", True), ("site_id", "Site", "UInt32", False), ("projet", "Projet ENT", "String", False),
             ("hits", "Hits", "UInt64", False), ("hits_uai_invalide", "Hits à UAI invalide", "UInt64", False),
             ("hits_uai_inconnu", "Hits à UAI inconnu", "UInt64", False),
             ("hits_uai_valide", "Hits à UAI valide", "UInt64", False),
             ("delai_median_s", "Délai médian d'ingestion (s)", "Float64", False),
             ("delai_max_s", "Délai maximal d'ingestion (s)", "Int64", False)],
            [("hits", "Hits", "sum(hits)", ",d"),
             ("taux_uai_invalide", "Taux d'UAI invalides", "sum(hits_uai_invalide) / nullIf(sum(hits), 0)", ".2%"),
             ("taux_uai_inconnu", "Taux d'UAI inconnus du référentiel",
              "sum(hits_uai_inconnu) / nullIf(sum(hits_uai_valide), 0)", ".2%"),
             ("delai_median", "Délai médian d'ingestion (s)", "median(delai_median_s)", ",.0f"),
             ("delai_max", "Délai maximal d'ingestion (s)", "max(delai_max_s)", ",.0f")],
            perimeter={"projet": "projet = {value}"}),
        Dataset(
            "alertes_qualite", "Alertes de qualité",
            [("controle", "Contrôle", "String", False), ("scope_kind", "Portée", "String", False),
             ("scope_value", "Valeur", "String", False), ("fenetre", "Fenêtre", "String", False),
             ("severity", "Gravité", "String", False), ("status", "Statut", "String", False),
             ("message", "Message", "String", False), ("observed", "Observé", "Float64", False),
             ("expected", "Attendu", "Float64", False), ("first_seen", "Première détection", "DateTime", True),
             ("last_seen", "Dernière détection", "DateTime", True)],
            [("alertes", "Alertes", "count()", ",d"),
             ("alertes_ouvertes", "Alertes ouvertes", "countIf(status = 'open')", ",d")],
            main_dttm="last_seen"),
        Dataset(
            "controles_qualite", "État des contrôles",
            [("controle", "Contrôle", "String", False), ("dernier_passage", "Dernier passage", "DateTime", True),
             ("duree_ms", "Durée (ms)", "Float64", False), ("constats", "Constats", "UInt32", False),
             ("erreur", "Erreur", "String", False), ("alertes_ouvertes", "Alertes ouvertes", "UInt64", False),
             ("etat", "État", "String", False)],
            [("controles", "Contrôles", "count()", ",d")],
            main_dttm="dernier_passage"),
    ]
}


# --- charts ---------------------------------------------------------------------------------
@dataclass
class Chart:
    key: str  # stable identity (uuid source), unique in the bundle
    title: str
    viz: str
    dataset: str
    params: dict[str, Any]
    width: int = 4
    height: int = 50

    @property
    def uuid(self) -> str:
        return uid("chart", self.key)


NO_TIME_FILTER = []  # type: ignore[var-annotated]


def kpi(key: str, title: str, dataset: str, metric: str, fmt: str = "SMART_NUMBER",
        filters: list[dict[str, Any]] | None = None) -> Chart:
    return Chart(key, title, "big_number_total", dataset, {
        "metric": metric, "adhoc_filters": filters or [], "header_font_size": 0.4, "subheader_font_size": 0.15,
        "y_axis_format": fmt, "subheader": "",
    }, width=3, height=25)


def trend(key: str, title: str, dataset: str, metrics: list[str], x: str = "debutsemaine", grain: str = "P1W",
          width: int = 12) -> Chart:
    return Chart(key, title, "echarts_timeseries_line", dataset, {
        "x_axis": x, "time_grain_sqla": grain, "metrics": metrics, "groupby": [], "adhoc_filters": [],
        "row_limit": 10000, "truncate_metric": True, "show_legend": True, "rich_tooltip": True,
        "x_axis_time_format": "smart_date", "y_axis_format": "SMART_NUMBER", "markerEnabled": True,
        "order_desc": True, "comparison_type": "values", "annotation_layers": [],
    }, width=width)


def bars(key: str, title: str, dataset: str, x: str, metrics: list[str], groupby: list[str] | None = None,
         width: int = 4, limit: int = 30) -> Chart:
    return Chart(key, title, "echarts_timeseries_bar", dataset, {
        "x_axis": x, "metrics": metrics, "groupby": groupby or [], "adhoc_filters": [], "row_limit": limit,
        "orientation": "horizontal", "x_axis_sort": metrics[0], "x_axis_sort_asc": True,
        "x_axis_sort_series": "sum", "x_axis_sort_series_ascending": False,
        "show_legend": bool(groupby), "stack": "Stack" if groupby else None, "y_axis_format": "SMART_NUMBER",
        "truncate_metric": True, "order_desc": True, "annotation_layers": [], "rich_tooltip": True,
        "show_value": not groupby,
    }, width=width)


def pie(key: str, title: str, dataset: str, groupby: str, metric: str = "visites", width: int = 4) -> Chart:
    return Chart(key, title, "pie", dataset, {
        "groupby": [groupby], "metric": metric, "adhoc_filters": [], "row_limit": 100, "sort_by_metric": True,
        "show_labels": True, "label_type": "key_percent", "number_format": "SMART_NUMBER", "show_legend": True,
        "legendOrientation": "top", "innerRadius": 30, "donut": True, "outerRadius": 70, "labels_outside": True,
    }, width=width)


def table(key: str, title: str, dataset: str, groupby: list[str], metrics: list[str], width: int = 6,
          height: int = 50, order_by: str | None = None, filters: list[dict[str, Any]] | None = None) -> Chart:
    return Chart(key, title, "table", dataset, {
        "query_mode": "aggregate", "groupby": groupby, "metrics": metrics, "all_columns": [],
        "percent_metrics": [], "adhoc_filters": filters or [], "row_limit": 1000, "order_desc": True,
        "timeseries_limit_metric": order_by or metrics[0], "server_pagination": False, "include_search": True,
        "table_timestamp_format": "smart_date", "show_cell_bars": True, "color_pn": True,
    }, width=width, height=height)


def raw_table(key: str, title: str, dataset: str, columns: list[str], order: str, width: int = 12,
              filters: list[dict[str, Any]] | None = None) -> Chart:
    return Chart(key, title, "table", dataset, {
        "query_mode": "raw", "all_columns": columns, "groupby": [], "metrics": [], "percent_metrics": [],
        "order_by_cols": [json.dumps([order, False])], "adhoc_filters": filters or [], "row_limit": 1000,
        "server_pagination": False, "include_search": True, "table_timestamp_format": "%Y-%m-%d %H:%M",
    }, width=width)


def france_map(key: str, title: str, dataset: str, level: str, metric: str, width: int = 6) -> Chart:
    country, entity = ("france", "departement_iso") if level == "departement" else ("france_regions", "region_iso")
    return Chart(key, title, "country_map", dataset, {
        "select_country": country, "entity": entity, "metric": metric, "adhoc_filters": [],
        "linear_color_scheme": "superset_seq_1", "number_format": "SMART_NUMBER", "row_limit": 1000,
    }, width=width, height=80)


def where(sql: str) -> dict[str, Any]:
    return {"clause": "WHERE", "expressionType": "SQL", "sqlExpression": sql, "subject": None, "operator": None,
            "comparator": None, "filterOptionName": f"filter_{uuid.uuid5(NS, sql).hex[:12]}", "isExtra": False,
            "isNew": False}


@dataclass
class Filter:
    name: str
    dataset: str
    column: str
    multi: bool = True
    time: bool = False

    def config(self, dashboard: str) -> dict[str, Any]:
        fid = "NATIVE_FILTER-" + uid("filter", f"{dashboard}:{self.column}")[:12]
        return {
            "id": fid, "name": self.name, "type": "NATIVE_FILTER", "description": "",
            "filterType": "filter_select",
            "targets": [{"datasetUuid": DATASETS[self.dataset].uuid, "column": {"name": self.column}}],
            "controlValues": {"enableEmptyFilter": False, "defaultToFirstItem": False, "multiSelect": self.multi,
                              "searchAllOptions": False, "inverseSelection": False, "sortAscending": True},
            "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
            "cascadeParentIds": [], "scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "tabsInScope": [],
        }


@dataclass
class Dashboard:
    slug: str
    title: str
    rows: list[list[Chart]]
    filters: list[Filter] = field(default_factory=list)
    description: str = ""

    @property
    def uuid(self) -> str:
        return uid("dashboard", self.slug)

    def charts(self) -> list[Chart]:
        return [c for row in self.rows for c in row]


# Each filter lists its values from the smallest dataset holding them (it applies by column name to
# every chart in scope whose dataset has the column).
TERRITORY_FILTERS = [
    Filter("Année scolaire", "visites", "annee_scolaire"),
    Filter("Degré", "visites", "degre"),
    Filter("Académie", "visites_territoires", "academie"),
    Filter("Département", "visites_territoires", "departement"),
    Filter("Projet ENT", "visites_etablissements", "projet"),
]
NATIONAL_FILTERS = [
    *TERRITORY_FILTERS,
    Filter("Profil", "visites", "profil"),
    Filter("Service", "visites_services", "service"),
]

DASHBOARDS: list[Dashboard] = [
    Dashboard("dnma-vue-nationale", "DNMA — Vue nationale", [
        [kpi("nat_visites", "Visites", "visites", "visites"),
         kpi("nat_utilisateurs", "Utilisateurs", "visites", "utilisateurs"),
         kpi("nat_pages_vues", "Pages vues", "visites", "pages_vues"),
         kpi("nat_duree", "Durée moyenne par visite (s)", "visites", "duree_moyenne", ",.0f")],
        [trend("nat_tendance", "Visites et utilisateurs par semaine", "visites", ["visites", "utilisateurs"])],
        [bars("nat_profils", "Visites par profil", "visites", "profil", ["visites"]),
         bars("nat_services", "Visites par service", "visites_services", "service", ["visites"]),
         pie("nat_appareils", "Visites par appareil", "visites", "device")],
    ], NATIONAL_FILTERS),
    Dashboard("dnma-territoires", "DNMA — Territoires", [
        [france_map("ter_carte_dep", "Visites par département", "visites_territoires", "departement", "visites"),
         france_map("ter_carte_reg", "Visites par région", "visites_territoires", "region", "visites")],
        [table("ter_academies", "Académies : visites et taux de visite", "visites_territoires",
               ["region", "academie"],
               ["visites", "utilisateurs", "taux_visite"], width=12)],
    ], TERRITORY_FILTERS),
    Dashboard("dnma-deploiement", "DNMA — Déploiement", [
        [france_map("dep_carte", "Part d'établissements actifs sur 30 jours", "deploiement", "departement",
                    "taux_actifs"),
         table("dep_departements", "Déploiement par département", "deploiement",
               ["academie", "departement"],
               ["etablissements", "etablissements_actifs", "taux_actifs", "classe_deploiement"],
               order_by="taux_actifs")],
        [table("dep_couverture", "Couverture du marquage par ENT (30 jours)", "deploiement", ["projet", "degre"],
               ["etablissements", "couverture_marquage"], order_by="couverture_marquage", width=12, height=40,
               filters=[where("projet != ''")])],
    ], [Filter("Degré", "visites", "degre"), Filter("Académie", "visites_territoires", "academie"),
        Filter("Projet ENT", "visites_etablissements", "projet")]),
    Dashboard("dnma-services-outils", "DNMA — Services et outils", [
        [pie("svc_types", "Services natifs et tiers", "visites_types", "type_service", width=4),
         bars("svc_outils", "Outils les plus utilisés", "visites_outils", "outil", ["visites"], width=8, limit=15)],
        [bars("svc_profils", "Usage des services par profil", "visites_services", "service", ["visites"],
              groupby=["profil"], width=12)],
    ], [*TERRITORY_FILTERS, Filter("Profil", "visites", "profil")]),
    Dashboard("dnma-etablissement", "DNMA — Établissement", [
        [kpi("eta_visites", "Visites", "visites", "visites"),
         kpi("eta_utilisateurs", "Utilisateurs", "visites", "utilisateurs"),
         kpi("eta_telechargements", "Téléchargements", "evenements", "evenements",
             filters=[where("action = 'download'")]),
         kpi("eta_duree", "Durée moyenne par visite (s)", "visites", "duree_moyenne", ",.0f")],
        [trend("eta_tendance", "Visites et utilisateurs par jour", "visites", ["visites", "utilisateurs"],
               x="day", grain="P1D")],
        [pie("eta_profils", "Profils", "visites", "profil"),
         bars("eta_services", "Services", "visites_services", "service", ["visites"]),
         pie("eta_appareils", "Appareils", "visites", "device")],
        [table("eta_evenements", "Événements locaux (téléchargements, engagement)", "evenements",
               ["action", "event_category", "event_action"], ["evenements", "utilisateurs"], width=12, height=40)],
    ], [Filter("Établissement (UAI)", "visites_etablissements", "uai", multi=False),
        Filter("Projet ENT", "visites_etablissements", "projet"),
        Filter("Année scolaire", "visites", "annee_scolaire")]),
    Dashboard("dnma-qualite", "DNMA — Qualité des données", [
        [kpi("qua_alertes", "Alertes ouvertes", "alertes_qualite", "alertes_ouvertes"),
         kpi("qua_uai_invalide", f"Taux d'UAI invalides ({QUALITY_DAYS} j)", "qualite_hits", "taux_uai_invalide", ".2%"),
         kpi("qua_uai_inconnu", f"Taux d'UAI inconnus ({QUALITY_DAYS} j)", "qualite_hits", "taux_uai_inconnu", ".2%"),
         kpi("qua_delai", f"Délai médian d'ingestion ({QUALITY_DAYS} j, s)", "qualite_hits", "delai_median", ",.0f")],
        [raw_table("qua_alertes_ouvertes", "Alertes ouvertes", "alertes_qualite",
                   ["severity", "controle", "scope_kind", "scope_value", "message", "first_seen", "last_seen"],
                   "last_seen", width=8, filters=[where("status = 'open'")]),
         raw_table("qua_controles", "État des contrôles", "controles_qualite",
                   ["controle", "etat", "alertes_ouvertes", "dernier_passage", "erreur"], "controle", width=4)],
        [raw_table("qua_silence", "Sites silencieux", "alertes_qualite",
                   ["scope_value", "message", "first_seen", "last_seen"], "last_seen", width=6,
                   filters=[where("status = 'open' AND controle = 'silence'")]),
         raw_table("qua_ingestion", "Ingestion : retard du loader et requêtes refusées", "alertes_qualite",
                   ["scope_value", "severity", "observed", "expected", "message", "last_seen"], "last_seen", width=6,
                   filters=[where("controle = 'ingestion'")])],
        [trend("qua_taux", "Taux d'UAI invalides et inconnus par jour", "qualite_hits",
               ["taux_uai_invalide", "taux_uai_inconnu"], x="day", grain="P1D", width=6),
         trend("qua_delais", "Délai d'ingestion par jour", "qualite_hits", ["delai_median", "delai_max"],
               x="day", grain="P1D", width=6)],
    ], [Filter("Projet ENT", "visites_etablissements", "projet")]),
]


# --- query contexts (what /api/v1/chart/<id>/data/ runs; datasource id filled in at import) ---
def _metric_list(params: dict[str, Any]) -> list[Any]:
    if "metrics" in params:
        return list(params["metrics"])
    return [params["metric"]] if "metric" in params else []


def query_context(chart: Chart) -> dict[str, Any]:
    """The query the chart's viz plugin builds, as the frontend would save it."""
    p = chart.params
    q: dict[str, Any] = {
        "filters": [], "extras": {"having": "", "where": ""}, "applied_time_extras": {}, "columns": [],
        "metrics": _metric_list(p), "orderby": [], "annotation_layers": [], "row_limit": p.get("row_limit", 1000),
        "series_limit": 0, "order_desc": True, "url_params": {}, "custom_params": {}, "custom_form_data": {},
    }
    wheres = [f["sqlExpression"] for f in p.get("adhoc_filters", []) if f.get("expressionType") == "SQL"]
    if wheres:
        q["extras"]["where"] = " AND ".join(f"({w})" for w in wheres)
    viz = chart.viz
    if viz in ("echarts_timeseries_line", "echarts_timeseries_bar"):
        x = p["x_axis"]
        if "time_grain_sqla" in p:
            q["columns"] = [{"timeGrain": p["time_grain_sqla"], "columnType": "BASE_AXIS", "sqlExpression": x,
                             "label": x, "expressionType": "SQL"}, *p["groupby"]]
            q["orderby"] = [[x, True]]
        else:
            q["columns"] = [x, *p["groupby"]]
            q["orderby"] = [[q["metrics"][0], False]]
        q["series_columns"] = list(p["groupby"])
    elif viz == "pie":
        q["columns"] = list(p["groupby"])
        q["orderby"] = [[p["metric"], False]]
    elif viz == "country_map":
        q["columns"] = [p["entity"]]
    elif viz == "table" and p["query_mode"] == "raw":
        q["columns"] = list(p["all_columns"])
        q["metrics"] = []
        q["orderby"] = [json.loads(o) for o in p["order_by_cols"]]
    elif viz == "table":
        q["columns"] = list(p["groupby"])
        q["orderby"] = [[p["timeseries_limit_metric"], False]]
    return {
        "datasource": {"id": 0, "type": "table"}, "force": False, "queries": [q],
        "form_data": {**p, "viz_type": viz}, "result_format": "json", "result_type": "full",
    }


# --- YAML rendering --------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=True, allow_unicode=True, width=110, default_flow_style=False)


def database_yaml(uri: str = "clickhousedb://dnma_reader:XXXXXXXXXX@127.0.0.1:8123/dnma") -> dict[str, Any]:
    return {
        "database_name": DATABASE_NAME, "sqlalchemy_uri": uri, "uuid": DATABASE_UUID, "version": VERSION,
        "allow_ctas": False, "allow_cvas": False, "allow_dml": False, "allow_file_upload": False,
        "allow_run_async": False, "cache_timeout": None, "expose_in_sqllab": True,
        "extra": {"allows_virtual_table_explore": True, "metadata_params": {}, "engine_params": {},
                  "schemas_allowed_for_file_upload": []},
    }


def dataset_yaml(d: Dataset) -> dict[str, Any]:
    return {
        "table_name": d.name, "schema": DB, "catalog": None, "sql": SQL[d.name], "uuid": d.uuid,
        "database_uuid": DATABASE_UUID, "version": VERSION, "description": d.label,
        "main_dttm_col": d.main_dttm, "default_endpoint": None, "offset": 0, "cache_timeout": None,
        "filter_select_enabled": True, "fetch_values_predicate": None, "normalize_columns": False,
        "always_filter_main_dttm": False, "extra": {"dnma_perimeter": d.perimeter},
        "template_params": None,
        "columns": [
            {"column_name": name, "verbose_name": label, "type": ch_type, "is_dttm": is_dttm, "is_active": True,
             "groupby": True, "filterable": True, "expression": None, "description": None,
             "python_date_format": None, "advanced_data_type": None, "extra": None}
            for name, label, ch_type, is_dttm in d.columns
        ],
        "metrics": [
            {"metric_name": name, "verbose_name": label, "metric_type": None, "expression": sql,
             "description": None, "d3format": fmt or None, "warning_text": None, "extra": None, "currency": None}
            for name, label, sql, fmt in d.metrics
        ],
    }


def chart_yaml(c: Chart) -> dict[str, Any]:
    params = {**c.params, "viz_type": c.viz}
    return {
        "slice_name": c.title, "viz_type": c.viz, "uuid": c.uuid, "dataset_uuid": DATASETS[c.dataset].uuid,
        "version": VERSION, "params": params, "query_context": json.dumps(query_context(c), sort_keys=True,
                                                                          ensure_ascii=False),
        "cache_timeout": None, "description": None, "certified_by": None, "certification_details": None,
    }


def dashboard_yaml(d: Dashboard, chart_ids: dict[str, int]) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": d.title}},
    }
    for i, row in enumerate(d.rows):
        row_id = f"ROW-{d.slug}-{i}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for c in row:
            cid = f"CHART-{c.key}"
            position[row_id]["children"].append(cid)
            position[cid] = {"type": "CHART", "id": cid, "children": [], "parents": ["ROOT_ID", "GRID_ID", row_id],
                             "meta": {"width": c.width, "height": c.height, "chartId": chart_ids[c.key],
                                      "uuid": c.uuid, "sliceName": c.title}}
    return {
        "dashboard_title": d.title, "slug": d.slug, "uuid": d.uuid, "version": VERSION, "published": True,
        "description": d.description or None, "css": "", "certified_by": None, "certification_details": None,
        "position": position,
        "metadata": {
            "native_filter_configuration": [f.config(d.slug) for f in d.filters],
            "color_scheme": "supersetColors", "refresh_frequency": 0, "cross_filters_enabled": False,
            "timed_refresh_immune_slices": [], "expanded_slices": {}, "default_filters": "{}",
            "chart_configuration": {}, "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"],
                                                                                 "excluded": []}},
            "shared_label_colors": [], "label_colors": {}, "color_scheme_domain": [],
        },
    }


def _file(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def render() -> dict[str, str]:
    """Relative path -> YAML text of the whole bundle (without metadata.yaml: added at import)."""
    files = {f"databases/{_file(DATABASE_NAME)}.yaml": dump(database_yaml())}
    for d in DATASETS.values():
        files[f"datasets/{_file(DATABASE_NAME)}/{d.name}.yaml"] = dump(dataset_yaml(d))
    chart_ids: dict[str, int] = {}
    for dash in DASHBOARDS:
        for c in dash.charts():
            if c.key in chart_ids:
                raise ValueError(f"chart key {c.key} used twice")
            chart_ids[c.key] = len(chart_ids) + 1
            files[f"charts/{c.key}.yaml"] = dump(chart_yaml(c))
        files[f"dashboards/{dash.slug}.yaml"] = dump(dashboard_yaml(dash, chart_ids))
    return files


def write(target: Path = ASSETS) -> list[str]:
    files = render()
    for old in target.rglob("*.yaml") if target.exists() else []:
        if str(old.relative_to(target)) not in files:
            old.unlink()
    changed = []
    for rel, text in sorted(files.items()):
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(rel)
    return changed


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        stale = [rel for rel, text in render().items()
                 if not (ASSETS / rel).exists() or (ASSETS / rel).read_text(encoding="utf-8") != text]
        print("\n".join(stale) or "superset/assets is up to date")
        return 1 if stale else 0
    for rel in write():
        print("wrote", rel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
