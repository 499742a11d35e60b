"""The bundle's datasets: for each, its columns and French labels, its metrics, its main time
column and its row-level-security perimeter; their SQL is dataset_sql's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aggregator.conformance.criteria import ETABLISSEMENTS_VUS, HORS_PERIMETRE
from dnma.indicators import CENSUS_CLASSES
from dnma_superset.dataset_sql import (
    DETAIL,
    NATIONAL,
    SERVICE_USERS_METRIC,
    TERRITOIRES,
    users_metric,
    users_metric_if,
)
from dnma_superset.identity import uid
from dnma_superset.labels import duration_sql
from dnma_superset.marquage_sql import (
    COUNTS,
    MARQUAGE_DAYS,
    SHARES,
    outside_list_sql,
    outside_verdict_sql,
    seen_verdict_sql,
    share_sql,
    verdict_sql,
)
from dnma_superset.quality_sql import DELAY_MEDIAN_MS, QUALITY_DAYS, QUALITY_PERIMETER

# (column, French label, ClickHouse type, is_dttm)
DatasetColumn = tuple[str, str, str, bool]
DIMENSION_COLUMNS: list[DatasetColumn] = [
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
ROLLUP_MEASURE_COLUMNS: list[DatasetColumn] = [
    ("nb_visites", "Visites", "UInt64", False),
    ("duree_s", "Durée totale (s)", "UInt64", False),
    ("nb_pages_vues", "Pages vues", "UInt64", False),
    ("nb_actions", "Actions", "UInt64", False),
    ("nb_rebonds", "Rebonds", "UInt64", False),
]
ROLLUP_VISIT_COLUMNS: list[DatasetColumn] = [
    *DIMENSION_COLUMNS,
    ("etablissement", "Établissement", "String", False),
    ("profil", "Profil", "String", False),
    ("device", "Appareil", "String", False),
    ("departement_iso", "Département (ISO)", "String", False),
    ("region_iso", "Région (ISO)", "String", False),
    ("eleves_academie", "Élèves de l'académie", "UInt64", False),
    *ROLLUP_MEASURE_COLUMNS,
]
ROLLUP_SERVICE_COLUMNS: list[DatasetColumn] = [
    *DIMENSION_COLUMNS, ("profil", "Profil", "String", False), ("service", "Service", "String", False),
    *ROLLUP_MEASURE_COLUMNS,
]
# Per-visit datasets (dnma.visits: no rollup holds tools or the native/third-party type).
VISIT_COLUMNS: list[DatasetColumn] = [
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
DatasetMetric = tuple[str, str, str, str]
VISIT_METRICS: list[DatasetMetric] = [
    ("visites", "Visites", "count()", ",d"),
    ("utilisateurs", "Utilisateurs", "uniqExact(utilisateur)", ",d"),
    ("pages_vues", "Pages vues", "sum(pageviews)", ",d"),
    ("actions", "Actions", "sum(actions)", ",d"),
    ("duree_moyenne", "Durée moyenne par visite (s)", "avg(duration)", ",.0f"),
    # The same in French words ("3 min 19 s"), for the headline tiles (charts.kpi_text).
    ("duree_moyenne_libelle", "Durée moyenne par visite", duration_sql("avg(duration)"), ""),
    ("taux_rebond", "Taux de rebond", "avg(is_bounce)", ".1%"),
]


def rollup_metrics(users: str) -> list[DatasetMetric]:
    return [
        ("visites", "Visites", "sum(nb_visites)", ",d"),
        ("utilisateurs", "Utilisateurs", users, ",d"),
        ("pages_vues", "Pages vues", "sum(nb_pages_vues)", ",d"),
        ("actions", "Actions", "sum(nb_actions)", ",d"),
        ("duree_moyenne", "Durée moyenne par visite (s)", "sum(duree_s) / nullIf(sum(nb_visites), 0)", ",.0f"),
        ("duree_moyenne_libelle", "Durée moyenne par visite",
         duration_sql("sum(duree_s) / nullIf(sum(nb_visites), 0)"), ""),
        ("taux_rebond", "Taux de rebond", "sum(nb_rebonds) / nullIf(sum(nb_visites), 0)", ".1%"),
    ]


@dataclass
class Dataset:
    name: str
    label: str
    columns: list[DatasetColumn]
    metrics: list[DatasetMetric]
    main_dttm: str | None = "day"
    # Row-level security: perimeter level -> SQL clause template ({value} quoted by provision).
    # A level missing here means perimeter users of that level see nothing of this dataset.
    perimeter: dict[str, str] = field(default_factory=dict)

    @property
    def uuid(self) -> str:
        return uid("dataset", self.name)


# The deployment classes without activity (classe_deploiement): the census's first class.
CLASSE_AUCUN = CENSUS_CLASSES[0]
CLASSE_NON_MESURE = "Non mesuré (ENT déclaré, aucun trafic)"

VISIT_PERIMETER = {
    "region": "region = {value}",
    "academie": "academie = {value}",
    "departement": "departement = {value}",
    "projet": "projet = {value}",
}

# The census (dataset recensement) is per territory: a perimeter user sees the territories that
# hold part of their perimeter (a département user, their région's lycées as the census counts them),
# and always the bounds rows (no data: the maps' scale and the legends' five classes).
CENSUS_PERIMETER = {
    "region": "(has(regions, {value}) OR borne = 1)",
    "academie": "(has(academies, {value}) OR borne = 1)",
    "departement": "(has(departements, {value}) OR borne = 1)",
    "projet": "(has(projets, {value}) OR borne = 1)",
}


def _fr_int(sql: str) -> str:
    """An integer as French text: groups of three digits split by a no-break space (1 234)."""
    return (f"replaceAll(trimLeft(reverse(replaceRegexpAll(reverse(toString({sql})), '(\\\\d{{3}})', '\\\\1 '))),"
            " ' ', '\u00a0')")


# The census's headline figures (Déploiement, Vue nationale): shares of public establishments
# active and of their pupils (effectifs known) with the counts behind them, and how many
# establishments have no known pupil count (left out of the pupil share, never estimated).
CENSUS_HEADLINE_METRICS: list[tuple[str, str, str, str]] = [
    ("taux_etablissements_actifs", "Part des établissements publics avec un ENT actif",
     "sum(etablissements_actifs) / nullIf(sum(etablissements), 0)", ".0%"),
    ("taux_eleves_actifs", "Part des élèves ayant accès à un ENT actif (effectifs connus)",
     "sum(eleves_actifs) / nullIf(sum(eleves), 0)", ".0%"),
    ("etablissements_publics", "Établissements publics", "sum(etablissements)", ",d"),
    ("actifs_sur_total", "Établissements publics actifs / total",
     f"concat({_fr_int('sum(etablissements_actifs)')}, ' / ', {_fr_int('sum(etablissements)')}, ' ',"
     " lowerUTF8(any(niveau)))", ""),
    ("eleves_sur_total", "Élèves ayant accès / élèves (effectifs connus)",
     f"concat({_fr_int('sum(eleves_actifs)')}, ' / ', {_fr_int('sum(eleves)')}, ' élèves')", ""),
    ("effectifs_inconnus", "Effectifs inconnus",
     "if(sum(sans_effectif) = 0, 'Effectifs connus pour tous les établissements',"
     f" concat('Effectifs inconnus pour ', {_fr_int('sum(sans_effectif)')}, ' établissement',"
     " if(sum(sans_effectif) > 1, 's', ''), ' (dont ', "
     f"{_fr_int('sum(sans_effectif_actifs)')}, ' actif', if(sum(sans_effectif_actifs) > 1, 's', ''),"
     " ') : non comptés dans la part des élèves'))", ""),
]


# An ENT's tagging coverage is over its whole declared perimeter, whoever looks: a territorial user
# sees every ENT whose perimeter reaches their territory, with all of that perimeter.
# Rentrée N vs N−1 (dataset rentree, dnma_superset.dataset_sql.RENTREE_SQL): rang 0 = school year
# N, 1 = N−1, both on N's school weeks; the tiles compare the last complete school week of N
# (semaine_reference) with the same school week k of N−1.
_N, _N1 = "rang = 0", "rang = 1"
_REF = "semaine_scolaire = semaine_reference"
_VISITS_N, _VISITS_N1 = f"sumIf(nb_visites, {_N} AND {_REF})", f"sumIf(nb_visites, {_N1} AND {_REF})"
_USERS_N, _USERS_N1 = users_metric_if(NATIONAL, f"{_N} AND {_REF}"), users_metric_if(NATIONAL, f"{_N1} AND {_REF}")


def _fr_date(sql: str) -> str:
    return f"formatDateTime({sql}, '%d/%m/%Y')"


RENTREE_METRICS: list[DatasetMetric] = [
    ("visites_n", "Visites, cette année scolaire", f"sumIf(nb_visites, {_N})", ",d"),
    ("visites_n1", "Visites, l'an dernier (même semaine scolaire)", f"sumIf(nb_visites, {_N1})", ",d"),
    ("utilisateurs_n", "Utilisateurs, cette année scolaire", users_metric_if(NATIONAL, _N), ",d"),
    ("utilisateurs_n1", "Utilisateurs, l'an dernier (même semaine scolaire)", users_metric_if(NATIONAL, _N1), ",d"),
    ("evolution_visites", "Évolution des visites sur un an (même semaine scolaire)",
     f"{_VISITS_N} / nullIf({_VISITS_N1}, 0) - 1", "+.1%"),
    ("evolution_utilisateurs", "Évolution des utilisateurs sur un an (même semaine scolaire)",
     f"{_USERS_N} / nullIf({_USERS_N1}, 0) - 1", "+.1%"),
    ("comparaison_libelle", "Semaine comparée",
     f"if(countIf({_N} AND {_REF}) = 0, 'Aucune semaine scolaire complète mesurée cette année',"
     f" concat('Semaine scolaire ', toString(any(semaine_reference)), ' de ', any(annee_scolaire), ' (du ',"
     f" {_fr_date(f'anyIf(semaine_civile, {_N} AND {_REF})')}, ') : ', {_fr_int(_VISITS_N)}, ' visites, ',"
     f" {_fr_int(_USERS_N)}, ' utilisateurs ; l''an dernier, même semaine scolaire ',"
     f" if(countIf({_N1} AND {_REF}) = 0, ': aucune mesure', concat('(du ',"
     f" {_fr_date(f'anyIf(semaine_civile, {_N1} AND {_REF})')}, ') : ', {_fr_int(_VISITS_N1)}, ' visites, ',"
     f" {_fr_int(_USERS_N1)}, ' utilisateurs'))))", ""),
]
RENTREE_COLUMNS: list[DatasetColumn] = [
    ("day", "Jour", "Date", True),
    ("debutsemaine", "Semaine scolaire (début, année N)", "Date", True),
    ("semaine_civile", "Début de la semaine", "Date", False),
    ("rang", "Année (0 = N, 1 = N−1)", "UInt8", False),
    ("semaine_scolaire", "Semaine scolaire (n° depuis la rentrée)", "UInt32", False),
    ("semaine_reference", "Dernière semaine scolaire complète de N", "UInt32", False),
    ("annee_scolaire", "Année scolaire N", "String", False),
    *[c for c in DIMENSION_COLUMNS if c[0] not in ("day", "debutsemaine", "annee_scolaire")],
    ("profil", "Profil", "String", False),
    ("device", "Appareil", "String", False),
    ("nb_visites", "Visites", "UInt64", False),
]


ENT_PERIMETER = {
    "region": "has(regions_perimetre, {value})",
    "academie": "has(academies_perimetre, {value})",
    "departement": "has(departements_perimetre, {value})",
    "projet": "projet = {value}",
}

# Where a quality row belongs (dnma_superset.quality_sql), beside its "projet": rows concerning
# everyone, or the territories they are about.
QUALITY_PERIMETER_COLUMNS: list[DatasetColumn] = [
    ("commun", "Concerne tous les périmètres", "UInt8", False),
    ("site_concerne", "Site concerné (0 : aucun en particulier)", "UInt32", False),
    ("departements_perimetre", "Départements concernés", "Array(String)", False),
    ("academies_perimetre", "Académies concernées", "Array(String)", False),
    ("regions_perimetre", "Régions académiques concernées", "Array(String)", False),
]

# The Marquage dashboard is an ENT editor's: a site's role (level "site") sees its site's rows, an
# ENT's its project's; territorial perimeters see none (the tagging is the ENT's, not the territory's).
MARQUAGE_PERIMETER = {"site": "site_id = {value}", "projet": "projet = {value}"}
# No metric is named after a column: ClickHouse would read `hits` inside another metric as the alias
# `sum(hits) AS hits` (ILLEGAL_AGGREGATION).
MARQUAGE_METRICS: list[DatasetMetric] = [
    ("nb_hits", "Hits", "sum(hits)", ",d"),
    *((f"taux_{k.key}", k.label, share_sql(k), ".1%") for k in SHARES),
    *((f"verdict_{k.key}", f"Verdict : {k.label} ({k.threshold_text()})", verdict_sql(k), "") for k in SHARES),
]

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
        Dataset("rentree", "Rentrée : semaines scolaires de l'année N et de l'année N−1 (visites)",
                RENTREE_COLUMNS, RENTREE_METRICS, main_dttm="debutsemaine", perimeter=VISIT_PERIMETER),
        Dataset(
            "deploiement", "Déploiement (établissements du référentiel)",
            [("uai", "UAI", "String", False), ("etablissement", "Établissement", "String", False),
             ("degre", "Degré", "String", False), ("region", "Région académique", "String", False),
             ("academie", "Académie", "String", False), ("departement", "Département", "String", False),
             ("departement_iso", "Département (ISO)", "String", False), ("region_iso", "Région (ISO)", "String", False),
             ("projet", "Projet ENT", "String", False),
             ("actif", "Actif (dernières semaines scolaires)", "UInt8", False),
             ("actif_projet", "Actif par ce projet (dernières semaines scolaires)", "UInt8", False)],
            [("etablissements", "Établissements publics du référentiel", "uniqExact(uai)", ",d"),
             ("etablissements_actifs", "Établissements publics actifs", "uniqExactIf(uai, actif = 1)", ",d"),
             ("taux_actifs", "Part d'établissements publics actifs",
              "uniqExactIf(uai, actif = 1) / nullIf(uniqExact(uai), 0)", ".0%"),
             # None of the territory's establishments is active: when no ENT of the sites registry
             # declares it either, nothing tells "no ENT project" from "an ENT we do not measure";
             # when one does, that ENT is not measured (registered, no traffic). Shown in the table.
             ("classe_deploiement", "Classe de déploiement",
              f"multiIf(countIf(actif = 1) = 0 AND countIf(projet != '') = 0, '{CLASSE_AUCUN}',"
              f" countIf(actif = 1) = 0, '{CLASSE_NON_MESURE}',"
              f" uniqExactIf(uai, actif = 1) >= 0.9 * uniqExact(uai), '{CENSUS_CLASSES[4]}',"
              f" uniqExactIf(uai, actif = 1) >= 0.5 * uniqExact(uai), '{CENSUS_CLASSES[3]}',"
              f" uniqExactIf(uai, actif = 1) >= 0.2 * uniqExact(uai), '{CENSUS_CLASSES[2]}', '{CENSUS_CLASSES[1]}')",
              ""),
             ("couverture_marquage", "Couverture du marquage",
              "uniqExactIf(uai, actif_projet = 1) / nullIf(uniqExact(uai), 0)", ".0%")],
            main_dttm=None, perimeter=VISIT_PERIMETER),
        Dataset(
            "recensement", "Recensement du déploiement (établissements publics, par territoire)",
            [("niveau", "Niveau", "String", False), ("territoire", "Territoire", "String", False),
             ("territoire_iso", "Territoire (ISO)", "String", False),
             ("etablissements", "Établissements publics", "UInt64", False),
             ("etablissements_actifs", "Établissements publics actifs", "UInt64", False),
             ("classe_indice", "Classe (0 = aucun projet … 4 = ≥ 90 %)", "UInt8", False),
             ("classe", "Classe de déploiement", "String", False),
             ("couleur", "Couleur sur la carte", "String", False),
             ("evolution", "Évolution depuis la même semaine un an plus tôt", "String", False),
             ("departements", "Départements", "Array(String)", False),
             ("academies", "Académies", "Array(String)", False),
             ("regions", "Régions académiques", "Array(String)", False),
             ("projets", "Projets ENT déclarant le territoire", "Array(String)", False),
             ("borne", "Ligne de bornes (sans données)", "UInt8", False),
             ("eleves", "Élèves (effectifs connus)", "UInt64", False),
             ("eleves_actifs", "Élèves des établissements actifs (effectifs connus)", "UInt64", False),
             ("sans_effectif", "Établissements sans effectif connu", "UInt64", False),
             ("sans_effectif_actifs", "Établissements actifs sans effectif connu", "UInt64", False)],
            [("territoires", "Nombre de territoires",
              "countIf(borne = 0)", ",d"),
             ("classe_carte", "Classe (0 = aucun projet … 4 = ≥ 90 %)", "max(classe_indice)", ",d"),
             *CENSUS_HEADLINE_METRICS],
            main_dttm=None, perimeter=CENSUS_PERIMETER),
        Dataset(
            "couverture_ent", "Couverture du marquage par ENT (périmètre déclaré)",
            [("projet", "Projet ENT (code)", "String", False), ("nom_projet", "Projet ENT", "String", False),
             ("degre", "Degré", "String", False), ("uai", "UAI", "String", False), ("etablissement", "Établissement", "String", False),
             ("actif_projet", "Actif par ce projet (dernières semaines scolaires)", "UInt8", False),
             ("departements_perimetre", "Départements du périmètre", "Array(String)", False),
             ("academies_perimetre", "Académies du périmètre", "Array(String)", False),
             ("regions_perimetre", "Régions académiques du périmètre", "Array(String)", False)],
            [("etablissements", "Établissements du périmètre déclaré", "uniqExact(uai)", ",d"),
             ("etablissements_actifs", "Établissements actifs par le projet", "uniqExactIf(uai, actif_projet = 1)",
              ",d"),
             ("couverture_marquage", "Couverture du marquage",
              "uniqExactIf(uai, actif_projet = 1) / nullIf(uniqExact(uai), 0)", ".0%")],
            main_dttm=None, perimeter=ENT_PERIMETER),
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
             ("delai_s", "Délai de réception (s, à la minute au-delà d'une minute)", "Int64", False),
             ("delai_max_s", "Délai maximal d'ingestion (s)", "Int64", False), *QUALITY_PERIMETER_COLUMNS],
            [("hits", "Hits", "sum(hits)", ",d"),
             ("taux_uai_invalide", "Taux d'UAI invalides", "sum(hits_uai_invalide) / nullIf(sum(hits), 0)", ".2%"),
             ("taux_uai_inconnu", "Taux d'UAI inconnus du référentiel",
              "sum(hits_uai_inconnu) / nullIf(sum(hits_uai_valide), 0)", ".2%"),
             # In milliseconds, for Superset's DURATION format ("2h 13m"): the median of the hits
             # themselves, weighted by the hits of each delay row (never a median of medians).
             ("delai_median", "Délai médian d'ingestion", DELAY_MEDIAN_MS, "DURATION"),
             ("delai_max", "Délai maximal d'ingestion", "1000 * max(delai_max_s)", "DURATION"),
             # As shown: the median in French words (tile), both in minutes (daily line; Superset's
             # DURATION format writes English units, "8d 8h 16m").
             ("delai_median_libelle", "Délai médian d'ingestion", duration_sql(f"({DELAY_MEDIAN_MS}) / 1000"), ""),
             ("delai_median_min", "Délai médian d'ingestion (min)", f"({DELAY_MEDIAN_MS}) / 60000", ",.1f"),
             ("delai_max_min", "Délai maximal d'ingestion (min)", "max(delai_max_s) / 60", ",.1f")],
            perimeter=QUALITY_PERIMETER),
        Dataset(
            "alertes_qualite", "Alertes de qualité",
            [("controle", "Code du contrôle", "String", False), ("libelle_controle", "Contrôle", "String", False),
             ("scope_kind", "Code de portée", "String", False), ("portee", "Portée", "String", False),
             ("scope_value", "Valeur", "String", False), ("fenetre", "Fenêtre", "String", False),
             ("severity", "Code de gravité", "String", False), ("gravite", "Gravité", "String", False),
             ("status", "Code de statut", "String", False), ("statut", "Statut", "String", False),
             ("message", "Message", "String", False), ("observed", "Observé", "Float64", False),
             ("expected", "Attendu", "Float64", False), ("first_seen", "Première détection", "DateTime", True),
             ("last_seen", "Dernière détection", "DateTime", True), ("projet", "Projet ENT", "String", False),
             *QUALITY_PERIMETER_COLUMNS],
            [("alertes", "Alertes", "count()", ",d"),
             ("alertes_ouvertes", "Alertes ouvertes", "countIf(status = 'open')", ",d")],
            main_dttm="last_seen", perimeter=QUALITY_PERIMETER),
        Dataset(
            "quarantaine", "Requêtes refusées conservées (quarantaine)",
            [("id", "Identifiant", "String", False), ("received_at", "Reçue le", "DateTime", True),
             ("day", "Jour de réception", "Date", True), ("site_id", "Site", "UInt32", False),
             ("reason", "Code du motif", "String", False), ("motif", "Motif du refus", "String", False),
             ("detail", "Détail", "String", False), ("url", "URL de la page", "String", False),
             ("bulk", "Requête groupée (bulk)", "UInt8", False), ("projet", "Projet ENT", "String", False),
             *QUALITY_PERIMETER_COLUMNS],
            [("requetes_refusees", "Requêtes refusées", "count()", ",d")],
            main_dttm="received_at", perimeter=QUALITY_PERIMETER),
        Dataset(
            "controles_qualite", "État des contrôles",
            [("controle", "Code du contrôle", "String", False), ("libelle_controle", "Contrôle", "String", False),
             ("dernier_passage", "Dernier passage", "DateTime", True),
             ("duree_ms", "Durée (ms)", "Float64", False), ("constats", "Constats", "UInt32", False),
             ("erreur", "Erreur", "String", False),
             ("alertes_ouvertes", "Alertes ouvertes (du périmètre)", "UInt64", False),
             ("etat", "État", "String", False), ("projet", "Projet ENT", "String", False),
             *QUALITY_PERIMETER_COLUMNS],
            [("controles", "Contrôles", "count()", ",d")],
            main_dttm="dernier_passage", perimeter=QUALITY_PERIMETER),
        Dataset(
            "marquage", f"Conformité du marquage (plan de marquage), {MARQUAGE_DAYS} derniers jours",
            [("day", "Jour", "Date", True), ("site_id", "Site", "UInt32", False),
             ("projet", "Projet ENT", "String", False), ("service", "Service", "String", False),
             *((name, label, "UInt64", False) for name, label, _sql in COUNTS)],
            MARQUAGE_METRICS, perimeter=MARQUAGE_PERIMETER),
        Dataset(
            "marquage_services", f"Les 25 services par site, {MARQUAGE_DAYS} derniers jours (0 : jamais vu)",
            [("site_id", "Site", "UInt32", False), ("projet", "Projet ENT", "String", False),
             ("service", "Service", "String", False), ("hits", "Hits", "UInt64", False)],
            [("nb_hits", "Hits", "sum(hits)", ",d"),
             ("services_jamais_vus", "Services jamais vus (par site)", "countIf(hits = 0)", ",d")],
            main_dttm=None, perimeter=MARQUAGE_PERIMETER),
        Dataset(
            "marquage_etablissements",
            f"Établissements du périmètre déclaré de chaque site, hits des {MARQUAGE_DAYS} derniers jours (0 : jamais vu)",
            [("site_id", "Site", "UInt32", False), ("projet", "Projet ENT", "String", False),
             ("uai", "UAI", "String", False), ("etablissement", "Établissement", "String", False),
             ("degre", "Degré", "String", False), ("departement", "Département", "String", False),
             ("hits", "Hits", "UInt64", False)],
            [("nb_hits", "Hits", "sum(hits)", ",d"),
             ("nb_etablissements", "Établissements du périmètre", "count()", ",d"),
             ("etablissements_vus", "Établissements du périmètre vus", "countIf(hits > 0)", ",d"),
             ("taux_etablissements_vus", ETABLISSEMENTS_VUS.label, "countIf(hits > 0) / nullIf(count(), 0)", ".1%"),
             ("verdict_etablissements_vus", f"Verdict : {ETABLISSEMENTS_VUS.label} ({ETABLISSEMENTS_VUS.threshold_text()})",
              seen_verdict_sql(), "")],
            main_dttm=None, perimeter=MARQUAGE_PERIMETER),
        Dataset(
            "marquage_hors_perimetre",
            f"Hits par UAI des sites à périmètre déclaré, {MARQUAGE_DAYS} derniers jours (1 : UAI hors périmètre)",
            [("site_id", "Site", "UInt32", False), ("projet", "Projet ENT", "String", False),
             ("uai", "UAI", "String", False), ("hits", "Hits", "UInt64", False),
             ("hors_perimetre", "UAI hors du périmètre déclaré", "UInt8", False)],
            [("nb_hits", "Hits", "sum(hits)", ",d"),
             ("hits_hors_perimetre", "Hits à UAI hors périmètre", "sumIf(hits, hors_perimetre = 1)", ",d"),
             ("uai_hors_perimetre", "UAI hors périmètre", "countIf(hors_perimetre = 1)", ",d"),
             ("taux_hors_perimetre", HORS_PERIMETRE.label,
              "sumIf(hits, hors_perimetre = 1) / nullIf(sum(hits), 0)", ".1%"),
             ("verdict_hors_perimetre", f"Verdict : {HORS_PERIMETRE.label} ({HORS_PERIMETRE.threshold_text()})",
              outside_verdict_sql(), ""),
             ("liste_uai_hors_perimetre", "UAI hors périmètre (hits), les 10 premiers", outside_list_sql(), "")],
            main_dttm=None, perimeter=MARQUAGE_PERIMETER),
        Dataset(
            "marquage_exemples",
            f"Derniers hits non conformes au plan de marquage ({MARQUAGE_DAYS} derniers jours, par site et défaut)",
            [("ts", "Date du hit", "DateTime", True), ("day", "Jour", "Date", True),
             ("site_id", "Site", "UInt32", False), ("projet", "Projet ENT", "String", False),
             ("service", "Code du service", "String", False), ("service_libelle", "Service", "String", False),
             ("defaut", "Défaut", "String", False),
             ("valeur", "Valeur envoyée", "String", False), ("attendu", "Attendu", "String", False),
             ("page", "Page (chemin, sans paramètres)", "String", False)],
            [("nb_hits", "Hits", "count()", ",d")],
            main_dttm="ts", perimeter=MARQUAGE_PERIMETER),
    ]
}
