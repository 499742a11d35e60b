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
