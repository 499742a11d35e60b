"""The DNMA vocabulary of TAGGING.md: services, profiles, types, device classes.

One place for every controlled value, used by the collector, the checks and the exports.
"""

from __future__ import annotations

SERVICES: tuple[str, ...] = (
    "accueil",
    "actualites",
    "cahier_textes",
    "cahier_liaison",
    "courrier_electronique",
    "messagerie_instantanee",
    "visioconference",
    "stockage_partage",
    "production_collaborative",
    "documentation_cdi",
    "parcours_pedagogique",
    "reservation_salles_materiels",
    "service_collectivite",
    "services_vie_scolaire",
    "gestion_temps",
    "absences",
    "gestion_competences",
    "notes",
    "manuel_numerique",
    "ressource_multimedia",
    "ressource_orientation",
    "ressource_production",
    "ressource_accompagnement_entrainement",
    "ressource_reference_dictionnaire",
    "ressource_documentaire",
)

PROFILS: tuple[str, ...] = (
    "ELEVE",
    "ENSEIGNANT",
    "PARENT",
    "ADMIN_VIE_SCOL_TECH",
    "PERSONNEL_COLLECTIVITE",
    "AUTRE",
)

TYPES: tuple[str, ...] = ("NATIF", "TIERS")

DEVICES: tuple[str, ...] = ("ordinateur", "smartphone", "tablette", "autreappareil")
OSES: tuple[str, ...] = ("android", "windows", "ios", "macos", "chromeos", "linux", "autreos")
BROWSERS: tuple[str, ...] = (
    "chromemobile",
    "safari",
    "chrome",
    "firefox",
    "edge",
    "samsungbrowser",
    "opera",
    "huaweibrowser",
    "miuibrowser",
    "autrenavigateur",
)

# French labels of the codes, for what people read (dashboards); the codes stay in the data.
PROFIL_LABELS: dict[str, str] = {
    "ELEVE": "Élève",
    "ENSEIGNANT": "Enseignant",
    "PARENT": "Parent",
    "ADMIN_VIE_SCOL_TECH": "Personnel administratif, de vie scolaire ou technique",
    "PERSONNEL_COLLECTIVITE": "Personnel de collectivité",
    "AUTRE": "Autre profil",
}
SERVICE_LABELS: dict[str, str] = {
    "accueil": "Accueil",
    "actualites": "Actualités",
    "cahier_textes": "Cahier de textes",
    "cahier_liaison": "Cahier de liaison",
    "courrier_electronique": "Courrier électronique",
    "messagerie_instantanee": "Messagerie instantanée",
    "visioconference": "Visioconférence",
    "stockage_partage": "Stockage et partage",
    "production_collaborative": "Production collaborative",
    "documentation_cdi": "Documentation (CDI)",
    "parcours_pedagogique": "Parcours pédagogique",
    "reservation_salles_materiels": "Réservation de salles et de matériels",
    "service_collectivite": "Service de la collectivité",
    "services_vie_scolaire": "Services de vie scolaire",
    "gestion_temps": "Gestion du temps",
    "absences": "Absences",
    "gestion_competences": "Gestion des compétences",
    "notes": "Notes",
    "manuel_numerique": "Manuel numérique",
    "ressource_multimedia": "Ressource multimédia",
    "ressource_orientation": "Ressource d'orientation",
    "ressource_production": "Ressource de production",
    "ressource_accompagnement_entrainement": "Ressource d'accompagnement et d'entraînement",
    "ressource_reference_dictionnaire": "Ressource de référence (dictionnaire)",
    "ressource_documentaire": "Ressource documentaire",
}
DEVICE_LABELS: dict[str, str] = {"ordinateur": "Ordinateur", "smartphone": "Smartphone", "tablette": "Tablette",
                                 "autreappareil": "Autre appareil"}
ACTION_LABELS: dict[str, str] = {"pageview": "Page vue", "event": "Événement", "download": "Téléchargement",
                                 "outlink": "Lien sortant", "search": "Recherche", "content": "Contenu",
                                 "ping": "Signal de présence", "goal": "Objectif"}
# What a dashboard shows for an empty value.
NOT_GIVEN = "Non renseigné"
# The DNMA properties and the default Matomo custom-dimension slots that carry them.
PROPERTIES: tuple[str, ...] = (
    "uai",
    "service",
    "type",
    "outil",
    "profil",
    "projet",
    "exploitant",
    "plateforme",
)
DEFAULT_DIMENSION_MAPPING: dict[int, str] = {i + 1: p for i, p in enumerate(PROPERTIES)}

# Hit actions, as stored in hits.action.
ACTIONS: tuple[str, ...] = ("pageview", "event", "download", "outlink", "search", "content", "ping", "goal")
# Actions that count as "actions" of a visit (INDICATORS.md / TRACKING.md).
COUNTED_ACTIONS: tuple[str, ...] = ("pageview", "download", "outlink", "search", "event")


def normalise_service(value: str) -> str:
    """Services travel upper case in the tag and are stored lower case, as in the open data."""
    return value.strip().lower()


def normalise_upper(value: str) -> str:
    """PROFIL, TYPE, OUTIL: trimmed, upper case."""
    return value.strip().upper()


# Every code has its label.
assert set(PROFIL_LABELS) == set(PROFILS) and set(SERVICE_LABELS) == set(SERVICES) \
    and set(DEVICE_LABELS) == set(DEVICES) and set(ACTION_LABELS) == set(ACTIONS)
