"""The six DNMA dashboards: their charts row by row, and the native filters of each (every filter
listing its values from a dataset that holds them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dnma_superset.charts import (
    Chart,
    Markdown,
    bars,
    census_legend,
    census_map,
    france_map,
    kpi,
    kpi_text,
    map_legend,
    pie,
    raw_table,
    table,
    trend,
    where,
)
from dnma_superset.datasets import DATASETS
from dnma_superset.identity import uid
from dnma_superset.labels import ACTION_LABELS, DEVICE_LABELS, PROFIL_LABELS, SERVICE_LABELS, labelled
from dnma_superset.marquage_sql import EXAMPLES_PER_DEFECT, MARQUAGE_DAYS, SHARES
from dnma_superset.quality_sql import QUALITY_DAYS


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
    rows: list[list[Chart | Markdown]]
    filters: list[Filter] = field(default_factory=list)
    description: str = ""
    # The dashboard's categorical colour scheme, applied by Superset to every chart it holds: None on
    # dashboards with maps (charts.france_map), which would turn categorical under one.
    color_scheme: str | None = "supersetColors"

    @property
    def uuid(self) -> str:
        return uid("dashboard", self.slug)

    def charts(self) -> list[Chart]:
        return [c for row in self.rows for c in row if isinstance(c, Chart)]


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

# The codes charts show, by their French labels (the filters still list the codes).
PROFIL = labelled("profil", PROFIL_LABELS, "Profil")
SERVICE = labelled("service", SERVICE_LABELS, "Service")
APPAREIL = labelled("device", DEVICE_LABELS, "Appareil")

# The census's headline figures (spec/INDICATORS.md), dataset recensement (its RLS: a perimeter
# user's figures are their territories'): the share of public écoles, collèges and lycées with an
# active ENT (dnma.indicators) and of the pupils of the three levels, with the counts under them
# (a big number cannot print a computed subtitle: the counts and the establishments whose pupil
# count is unknown are in the table below the tiles).
CENSUS_TILES = (("ecoles", "Écoles", "% des écoles publiques avec un ENT actif"),
                ("colleges", "Collèges", "% des collèges publics avec un ENT actif"),
                ("lycees", "Lycées", "% des lycées publics avec un ENT actif"))


def census_headlines(prefix: str) -> list[list[Chart | Markdown]]:
    tiles = []
    for key, niveau, title in CENSUS_TILES:
        tile = kpi(f"{prefix}_part_{key}", title, "recensement", "taux_etablissements_actifs", ".0%",
                   filters=[where(f"niveau = '{niveau}' AND borne = 0")])
        tile.params["subheader"] = "établissements publics actifs / établissements publics (nombres ci-dessous)"
        tiles.append(tile)
    pupils = kpi(f"{prefix}_part_eleves", "% des élèves ayant accès à un ENT actif", "recensement",
                 "taux_eleves_actifs", ".0%", filters=[where("niveau != '' AND borne = 0")])
    pupils.params["subheader"] = ("élèves des écoles, collèges et lycées publics actifs / élèves de ces niveaux, "
                                  "effectifs connus (établissements sans effectif : ci-dessous)")
    counts = table(f"{prefix}_chiffres_recensement", "Recensement : nombres par niveau (établissements publics, "
                   "dernières semaines scolaires)", "recensement", ["niveau"],
                   ["actifs_sur_total", "taux_etablissements_actifs", "eleves_sur_total", "taux_eleves_actifs",
                    "effectifs_inconnus"], width=12, height=30, order_by="taux_etablissements_actifs",
                   filters=[where("niveau != '' AND borne = 0")])
    counts.params.update({"include_search": False, "show_cell_bars": False})
    return [[*tiles, pupils], [counts]]




def rentree() -> list[list[Chart | Markdown]]:
    """Rentrée N vs N−1 (spec/INDICATORS.md; dataset rentree): the last complete school week of this
    school year against the same school week k of the last one (tiles), and the weekly series of
    both, last year's drawn under this year's school weeks."""
    subheader = "dernière semaine scolaire complète, contre la même semaine scolaire de l'an dernier"
    tiles = [kpi("nat_rentree_visites", "Visites : évolution sur un an", "rentree", "evolution_visites", "+.1%"),
             kpi("nat_rentree_utilisateurs", "Utilisateurs : évolution sur un an", "rentree",
                 "evolution_utilisateurs", "+.1%")]
    for tile in tiles:
        tile.params["subheader"] = subheader
    detail = kpi_text("nat_rentree_semaine", "Semaine comparée (semaines scolaires alignées)", "rentree",
                      "comparaison_libelle")
    detail.width = 6
    series = [trend("nat_rentree_serie_visites", "Visites par semaine scolaire : cette année et l'an dernier",
                    "rentree", ["visites_n", "visites_n1"], width=6),
              trend("nat_rentree_serie_utilisateurs",
                    "Utilisateurs par semaine scolaire : cette année et l'an dernier", "rentree",
                    ["utilisateurs_n", "utilisateurs_n1"], width=6)]
    return [[*tiles, detail], series]


def marquage() -> Dashboard:
    """The tagging conformance report of `dnma conformance` for an ENT site's editor (role of level
    "site"): the shares and verdicts of each criterion per site and per service, the 25 services."""
    days = f"{MARQUAGE_DAYS} j"
    per_site = [m for k in SHARES for m in (f"taux_{k.key}", f"verdict_{k.key}")]
    services = table("mar_services_25", f"Les 25 services : hits par service ({days} ; 0 = jamais vu)",
                     "marquage_services", [SERVICE], ["nb_hits"], width=5, height=60)
    services.params["order_desc"] = False  # the services never seen first
    site = labelled("toString(site_id)", {}, "Site")
    perimetre = table("mar_etablissements", f"Établissements du périmètre déclaré : hits ({days} ; 0 = jamais vu)",
                      "marquage_etablissements", [site, "uai", "etablissement", "departement"], ["nb_hits"],
                      width=9, height=50)
    perimetre.params["order_desc"] = False  # the establishments never seen first
    return Dashboard("dnma-marquage", "DNMA — Marquage", [
        [kpi("mar_uai_valide", f"UAI valides ({days})", "marquage", "taux_uai_valide", ".1%"),
         kpi("mar_profil_connu", f"PROFIL connus ({days})", "marquage", "taux_profil_connu", ".1%"),
         kpi("mar_service_connu", f"SERVICE connus ({days})", "marquage", "taux_service_connu", ".1%"),
         kpi("mar_jamais_vus", f"Services jamais vus, par site ({days})", "marquage_services",
             "services_jamais_vus", ",d")],
        [table("mar_sites", f"Conformité au plan de marquage par site ({days} ; verdicts aux seuils du plan)",
               "marquage", [site, "projet"], ["nb_hits", *per_site], width=12,
               height=30)],
        [table("mar_par_service", f"Conformité par service ({days})", "marquage", [SERVICE],
               ["nb_hits", *(f"taux_{k.key}" for k in SHARES if k.key != "service_connu")], width=7, height=60),
         services],
        [kpi("mar_etablissements_vus", f"Établissements du périmètre vus ({days})", "marquage_etablissements",
             "taux_etablissements_vus", ".1%"),
         perimetre],
        # UAIs outside the declared perimeter (the report's rule, through perimetres_ent): one row per
        # site with a declared perimeter, 0 % and "aucun" when none, so the table is never empty.
        [kpi("mar_hors_perimetre", f"Hits à UAI hors périmètre ({days})", "marquage_hors_perimetre",
             "taux_hors_perimetre", ".1%"),
         table("mar_hors_perimetre_sites", f"UAI hors du périmètre déclaré, par site ({days} ; verdict au seuil du plan)",
               "marquage_hors_perimetre", [site, "projet"],
               ["nb_hits", "taux_hors_perimetre", "verdict_hors_perimetre", "uai_hors_perimetre",
                "liste_uai_hors_perimetre"], width=9, height=30)],
        # The report's worst examples, as the latest hits: what was sent, what the plan expects.
        [raw_table("mar_exemples", f"Derniers hits non conformes ({days} ; {EXAMPLES_PER_DEFECT} au plus par site et "
                   "défaut ; chemin de la page, sans paramètres)", "marquage_exemples",
                   ["ts", "site_id", "service_libelle", "defaut", "valeur", "attendu", "page"], "ts")],
        [trend("mar_tendance", "Parts de hits conformes par jour", "marquage",
               ["taux_uai_valide", "taux_profil_connu", "taux_service_connu", "taux_type_connu",
                "taux_outil_conforme"], x="day", grain="P1D", fmt=".1%")],
    ], [Filter("Site", "marquage", "site_id"), Filter("Projet ENT", "marquage", "projet")],
        description="Rapport de conformité du marquage (dnma conformance) : parts de hits conformes et verdicts "
                    "aux seuils du plan de marquage (docs/tagging.md).")


DASHBOARDS: list[Dashboard] = [
    Dashboard("dnma-vue-nationale", "DNMA — Vue nationale", [
        [kpi("nat_visites", "Visites", "visites", "visites"),
         kpi("nat_utilisateurs", "Utilisateurs", "visites", "utilisateurs"),
         kpi("nat_pages_vues", "Pages vues", "visites", "pages_vues"),
         kpi_text("nat_duree", "Durée moyenne par visite", "visites", "duree_moyenne_libelle")],
        *census_headlines("nat"),
        [trend("nat_tendance", "Visites et utilisateurs par semaine", "visites", ["visites", "utilisateurs"])],
        *rentree(),
        [bars("nat_profils", "Visites par profil", "visites", PROFIL, ["visites"]),
         bars("nat_services", "Visites par service", "visites_services", SERVICE, ["visites"]),
         pie("nat_appareils", "Visites par appareil", "visites", APPAREIL)],
    ], NATIONAL_FILTERS),
    Dashboard("dnma-territoires", "DNMA — Territoires", [
        [france_map("ter_carte_dep", "Visites par département", "visites_territoires", "departement", "visites"),
         france_map("ter_carte_reg", "Visites par région", "visites_territoires", "region", "visites")],
        [map_legend("ter_legende_dep", "Visites par département"), map_legend("ter_legende_reg", "Visites par région")],
        [table("ter_academies", "Académies : visites et taux de visite", "visites_territoires",
               ["region", "academie"],
               ["visites", "utilisateurs", "taux_visite"], width=12)],
    ], TERRITORY_FILTERS, color_scheme=None),
    Dashboard("dnma-deploiement", "DNMA — Déploiement", [
        *census_headlines("dep"),
        [france_map("dep_carte", "Part d'établissements publics actifs (dernières semaines scolaires)",
                    "deploiement", "departement", "taux_actifs"),
         table("dep_departements", "Déploiement par département", "deploiement",
               ["academie", "departement"],
               ["etablissements", "etablissements_actifs", "taux_actifs", "classe_deploiement"],
               order_by="taux_actifs")],
        [map_legend("dep_legende", "Part d'établissements actifs")],
        # The deployment census (spec/INDICATORS.md): classes per territory and level, public
        # establishments, each map's legend from its own query, and the moves in a year.
        [census_map("dep_recensement_ecoles", "Recensement : écoles publiques par département", "departement",
                    "Écoles"),
         census_map("dep_recensement_colleges", "Recensement : collèges publics par département", "departement",
                    "Collèges"),
         census_map("dep_recensement_lycees", "Recensement : lycées publics par région académique", "region",
                    "Lycées")],
        [census_legend("dep_legende_ecoles", "Écoles : départements par classe", "Écoles"),
         census_legend("dep_legende_colleges", "Collèges : départements par classe", "Collèges"),
         census_legend("dep_legende_lycees", "Lycées : régions académiques par classe", "Lycées")],
        [table("dep_evolution", "Recensement : changements de classe depuis la même semaine un an plus tôt",
               "recensement", ["niveau", "evolution"], ["territoires"], width=12, height=40,
               filters=[where("borne = 0")])],
        # Over each ENT's declared perimeter (dnma/indicators.py), the same for every user; the ENT
        # by its registry name (nom_projet), the "Projet ENT" filter by its code.
        [table("dep_couverture", "Couverture du marquage par ENT (périmètre déclaré, dernières semaines scolaires)",
               "couverture_ent", ["nom_projet", "degre"],
               ["etablissements", "etablissements_actifs", "couverture_marquage"], order_by="couverture_marquage",
               width=12, height=40)],
    ], [Filter("Degré", "visites", "degre"), Filter("Académie", "visites_territoires", "academie"),
        Filter("Projet ENT", "visites_etablissements", "projet")], color_scheme=None),
    Dashboard("dnma-services-outils", "DNMA — Services et outils", [
        # Exclusive categories: a visit touching both kinds is in "Natif et tiers" only.
        [pie("svc_types", "Visites selon le type des services utilisés (natif seul, tiers seul, les deux)",
             "visites_types", "type_service", width=4),
         # Every tool, ranked: a table pages through all of them where bars would have to cut.
         table("svc_outils", "Visites par outil (tous les outils)", "visites_outils", [labelled("outil", {}, "Outil")],
               ["visites", "utilisateurs"], width=8)],
        [bars("svc_profils", "Usage des services par profil", "visites_services", SERVICE, ["visites"],
              groupby=[PROFIL], width=12)],
    ], [*TERRITORY_FILTERS, Filter("Profil", "visites", "profil")]),
    Dashboard("dnma-etablissement", "DNMA — Établissement", [
        [kpi("eta_visites", "Visites", "visites", "visites"),
         kpi("eta_utilisateurs", "Utilisateurs", "visites", "utilisateurs"),
         kpi("eta_telechargements", "Téléchargements", "evenements", "evenements",
             filters=[where("action = 'download'")]),
         kpi_text("eta_duree", "Durée moyenne par visite", "visites", "duree_moyenne_libelle")],
        [trend("eta_tendance", "Visites et utilisateurs par jour", "visites", ["visites", "utilisateurs"],
               x="day", grain="P1D")],
        [pie("eta_profils", "Profils", "visites", PROFIL),
         bars("eta_services", "Services", "visites_services", SERVICE, ["visites"]),
         pie("eta_appareils", "Appareils", "visites", APPAREIL)],
        [table("eta_evenements", "Événements locaux (téléchargements, engagement)", "evenements",
               [labelled("action", ACTION_LABELS, "Type d'action"), labelled("event_category", {}, "Catégorie"),
                labelled("event_action", {}, "Action")], ["evenements", "utilisateurs"], width=12, height=40)],
    ], [Filter("Établissement (UAI)", "visites_etablissements", "uai", multi=False),
        Filter("Projet ENT", "visites_etablissements", "projet"),
        Filter("Année scolaire", "visites", "annee_scolaire")]),
    Dashboard("dnma-qualite", "DNMA — Qualité des données", [
        [kpi("qua_alertes", "Alertes ouvertes", "alertes_qualite", "alertes_ouvertes"),
         kpi("qua_uai_invalide", f"Taux d'UAI invalides ({QUALITY_DAYS} j)", "qualite_hits", "taux_uai_invalide", ".2%"),
         kpi("qua_uai_inconnu", f"Taux d'UAI inconnus ({QUALITY_DAYS} j)", "qualite_hits", "taux_uai_inconnu", ".2%"),
         kpi_text("qua_delai", f"Délai médian d'ingestion ({QUALITY_DAYS} j)", "qualite_hits",
                  "delai_median_libelle")],
        [raw_table("qua_alertes_ouvertes", "Alertes ouvertes", "alertes_qualite",
                   ["gravite", "libelle_controle", "portee", "scope_value", "message", "first_seen", "last_seen"],
                   "last_seen", width=8, filters=[where("status = 'open'")]),
         raw_table("qua_controles", "État des contrôles", "controles_qualite",
                   ["libelle_controle", "etat", "alertes_ouvertes", "dernier_passage", "erreur"], "libelle_controle",
                   width=4)],
        # No loader-lag chart: ClickHouse keeps no history of it (the ingestion check reads it live
        # and writes an alert only past its threshold; its alerts are in the open-alerts table
        # above), so such a chart was empty on a healthy stack.
        # Refused requests are kept (dnma quarantine list / replay): counts by site and reason, the latest.
        # Their `detail` is the collector's own English wording: the motif (French) stands for it here.
        [table("qua_quarantaine", "Requêtes refusées conservées, par site et motif", "quarantaine",
               ["site_id", "motif"], ["requetes_refusees"], width=5, height=40),
         raw_table("qua_quarantaine_exemples", "Dernières requêtes refusées", "quarantaine",
                   ["received_at", "site_id", "motif", "url"], "received_at", width=7)],
        [raw_table("qua_silence", "Sites silencieux", "alertes_qualite",
                   ["scope_value", "message", "first_seen", "last_seen"], "last_seen", width=12,
                   filters=[where("status = 'open' AND controle = 'silence'")])],
        [trend("qua_taux", "Taux d'UAI invalides et inconnus par jour", "qualite_hits",
               ["taux_uai_invalide", "taux_uai_inconnu"], x="day", grain="P1D", width=6),
         trend("qua_delais", "Délai d'ingestion par jour, en minutes (médian et maximal)", "qualite_hits",
               ["delai_median_min", "delai_max_min"], x="day", grain="P1D", width=6, fmt=",.1f")],
    ], [Filter("Projet ENT", "visites_etablissements", "projet")]),
    marquage(),
]
