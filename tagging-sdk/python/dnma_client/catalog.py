"""What ENT users do, as weights: profile mixes, services by profile, native vs third-party
tools, devices (User-Agent strings) and hours of the day. Plausible orders of magnitude, not data."""

from __future__ import annotations

# Share of visits by profile. 1D pupils rarely log in themselves, parents do it for them.
PROFILE_MIX: dict[str, dict[str, float]] = {
    "2D": {"ELEVE": 66, "PARENT": 12, "ENSEIGNANT": 11, "ADMIN_VIE_SCOL_TECH": 7,
           "PERSONNEL_COLLECTIVITE": 2, "AUTRE": 2},
    "1D": {"ELEVE": 50, "PARENT": 32, "ENSEIGNANT": 13, "ADMIN_VIE_SCOL_TECH": 3,
           "PERSONNEL_COLLECTIVITE": 1, "AUTRE": 1},
}

# Visits per user per school day: sizes the population so that users come back.
VISITS_PER_USER_DAY: dict[str, float] = {
    "ELEVE": 0.45, "PARENT": 0.3, "ENSEIGNANT": 0.9, "ADMIN_VIE_SCOL_TECH": 1.5,
    "PERSONNEL_COLLECTIVITE": 0.5, "AUTRE": 0.3,
}

SERVICE_WEIGHTS: dict[str, dict[str, float]] = {
    "ELEVE": {
        "accueil": 10, "cahier_textes": 14, "notes": 12, "courrier_electronique": 6,
        "messagerie_instantanee": 3, "stockage_partage": 5, "production_collaborative": 3,
        "documentation_cdi": 3, "parcours_pedagogique": 4, "manuel_numerique": 6,
        "ressource_multimedia": 4, "ressource_accompagnement_entrainement": 5,
        "ressource_reference_dictionnaire": 2, "ressource_documentaire": 2, "ressource_orientation": 2,
        "ressource_production": 1, "gestion_temps": 6, "absences": 1, "gestion_competences": 2,
        "actualites": 2, "visioconference": 1, "services_vie_scolaire": 1,
    },
    "PARENT": {
        "accueil": 10, "notes": 16, "cahier_textes": 10, "absences": 8, "cahier_liaison": 6,
        "courrier_electronique": 8, "actualites": 5, "services_vie_scolaire": 6, "service_collectivite": 4,
        "gestion_temps": 4, "gestion_competences": 3, "ressource_orientation": 1,
    },
    "ENSEIGNANT": {
        "accueil": 8, "cahier_textes": 14, "notes": 12, "absences": 8, "courrier_electronique": 10,
        "stockage_partage": 6, "production_collaborative": 4, "parcours_pedagogique": 4,
        "manuel_numerique": 4, "ressource_multimedia": 3, "gestion_competences": 5,
        "reservation_salles_materiels": 3, "visioconference": 2, "messagerie_instantanee": 2,
        "documentation_cdi": 1, "services_vie_scolaire": 2, "actualites": 2, "gestion_temps": 3,
        "ressource_production": 2, "ressource_documentaire": 1, "cahier_liaison": 1,
    },
    "ADMIN_VIE_SCOL_TECH": {
        "accueil": 6, "absences": 12, "services_vie_scolaire": 12, "courrier_electronique": 8,
        "reservation_salles_materiels": 5, "actualites": 4, "gestion_temps": 5, "notes": 3,
        "cahier_liaison": 2, "service_collectivite": 2,
    },
    "PERSONNEL_COLLECTIVITE": {
        "accueil": 5, "service_collectivite": 12, "courrier_electronique": 6, "actualites": 4,
        "reservation_salles_materiels": 4,
    },
    "AUTRE": {"accueil": 10, "actualites": 6, "courrier_electronique": 4, "documentation_cdi": 2},
}

# 1D has no marks software and no orientation; the liaison notebook and skills booklet dominate.
SERVICE_FACTOR_1D: dict[str, float] = {
    "notes": 0.1, "cahier_liaison": 4, "gestion_competences": 2, "ressource_orientation": 0,
    "documentation_cdi": 0.2, "absences": 0.5, "gestion_temps": 0.3,
}

# Per service: (OUTIL, weight); "" means the ENT's native service (TYPE=NATIF).
TOOLS_2D: dict[str, list[tuple[str, float]]] = {
    "notes": [("PRONOTE", 70), ("", 30)],
    "cahier_textes": [("PRONOTE", 50), ("", 50)],
    "absences": [("PRONOTE", 60), ("", 40)],
    "gestion_temps": [("PRONOTE", 50), ("", 50)],
    "gestion_competences": [("PRONOTE", 30), ("", 70)],
    "manuel_numerique": [("LELIVRESCOLAIRE", 40), ("BORDAS", 30), ("HACHETTE_EDUCATION", 30)],
    "ressource_multimedia": [("EDUTHEQUE", 40), ("LUMNI", 40), ("", 20)],
    "ressource_accompagnement_entrainement": [("LABOMEP", 50), ("QUIZINIERE", 30), ("", 20)],
    "ressource_reference_dictionnaire": [("UNIVERSALIS", 60), ("LE_ROBERT", 40)],
    "ressource_documentaire": [("ESIDOC", 60), ("EUROPRESSE", 40)],
    "documentation_cdi": [("ESIDOC", 70), ("", 30)],
    "ressource_orientation": [("FOLIOS", 50), ("ONISEP", 50)],
    "ressource_production": [("LA_DIGITALE", 50), ("", 50)],
    "visioconference": [("BBB", 60), ("", 40)],
    "parcours_pedagogique": [("MOODLE", 50), ("", 50)],
}
TOOLS_1D: dict[str, list[tuple[str, float]]] = {
    "manuel_numerique": [("LELIVRESCOLAIRE", 50), ("", 50)],
    "ressource_multimedia": [("EDUTHEQUE", 30), ("LUMNI", 50), ("", 20)],
    "ressource_accompagnement_entrainement": [("LALILO", 60), ("LABOMEP", 20), ("", 20)],
    "ressource_reference_dictionnaire": [("LE_ROBERT", 100)],
    "ressource_documentaire": [("", 100)],
    "visioconference": [("BBB", 50), ("", 50)],
}

# (key, User-Agent). Versions are those of spring 2024; the collector classifies them.
USER_AGENTS: dict[str, str] = {
    "win_chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/124.0.0.0 Safari/537.36",
    "win_edge": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "win_firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "win_opera": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
    "mac_safari": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                  "Version/17.4.1 Safari/605.1.15",
    "linux_firefox": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "chromebook": "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/124.0.0.0 Safari/537.36",
    "android_chrome": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/124.0.0.0 Mobile Safari/537.36",
    "android_samsung": "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "android_miui": "Mozilla/5.0 (Linux; U; Android 13; fr-fr; Redmi Note 12 Build/TKQ1.221114.001) "
                    "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile "
                    "Safari/537.36 XiaoMi/MiuiBrowser/14.8.0-gn",
    "android_huawei": "Mozilla/5.0 (Linux; Android 10; ELS-NX9; HMSCore 6.13.0.302) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.5.302 Mobile Safari/537.36",
    "iphone_safari": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
                     "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "ipad_safari": "Mozilla/5.0 (iPad; CPU OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                   "Version/16.6 Mobile/15E148 Safari/604.1",
    "android_tablet": "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/124.0.0.0 Safari/537.36",
}

# Screen resolution sent with each UA family (`res`).
SCREENS: dict[str, str] = {
    "win_chrome": "1920x1080", "win_edge": "1920x1080", "win_firefox": "1366x768", "win_opera": "1920x1080",
    "mac_safari": "1440x900", "linux_firefox": "1920x1080", "chromebook": "1366x768",
    "android_chrome": "412x915", "android_samsung": "384x854", "android_miui": "393x873",
    "android_huawei": "360x780", "iphone_safari": "390x844", "ipad_safari": "810x1080",
    "android_tablet": "800x1340",
}

DEVICE_MIX: dict[str, dict[str, float]] = {
    "ELEVE": {"android_chrome": 24, "android_samsung": 8, "android_miui": 3, "android_huawei": 2,
              "iphone_safari": 20, "win_chrome": 18, "win_edge": 4, "win_firefox": 4, "chromebook": 6,
              "ipad_safari": 5, "android_tablet": 3, "linux_firefox": 2, "win_opera": 1},
    "PARENT": {"android_chrome": 26, "android_samsung": 10, "android_miui": 3, "android_huawei": 2,
               "iphone_safari": 28, "win_chrome": 14, "win_edge": 5, "win_firefox": 3, "mac_safari": 4,
               "ipad_safari": 4, "android_tablet": 1},
    "ENSEIGNANT": {"win_chrome": 30, "win_firefox": 14, "win_edge": 10, "mac_safari": 8, "linux_firefox": 5,
                   "iphone_safari": 12, "android_chrome": 10, "ipad_safari": 6, "chromebook": 3,
                   "android_samsung": 2},
    "ADMIN_VIE_SCOL_TECH": {"win_chrome": 45, "win_edge": 20, "win_firefox": 20, "linux_firefox": 5,
                            "iphone_safari": 5, "android_chrome": 5},
    "PERSONNEL_COLLECTIVITE": {"win_chrome": 40, "win_edge": 30, "win_firefox": 10, "android_chrome": 10,
                               "iphone_safari": 10},
    "AUTRE": {"win_chrome": 40, "android_chrome": 25, "iphone_safari": 25, "mac_safari": 10},
}

# Hours 0..23, Paris time. Pupils and parents peak before school and for the evening homework;
# staff follow office hours.
_H_ELEVE = [.2, .1, .05, .05, .05, .1, .8, 4, 3, 2, 2, 2, 3, 2.5, 2.5, 2.5, 3, 5, 6, 7, 6.5, 4, 2, .8]
_H_PARENT = [.2, .1, .05, .05, .05, .2, 1.5, 4, 2.5, 1.5, 1.5, 1.5, 3, 2.5, 1.5, 1.5, 2, 3.5, 5, 6, 6.5, 5, 3, 1]
_H_ENSEIGNANT = [.2, .05, .02, .02, .05, .3, 2, 5, 4, 3, 3, 3, 4, 3, 3, 3, 3, 4, 4.5, 4, 4.5, 4, 2.5, .8]
_H_STAFF = [0, 0, 0, 0, 0, .05, .5, 4, 6, 6, 6, 5, 3, 5, 6, 6, 5, 3, 1, .5, .2, .1, 0, 0]
_H_OFF = [.3, .1, .05, .05, .05, .1, .3, 1, 2, 3, 3.5, 3.5, 3, 3, 3.5, 4, 4, 4, 4.5, 5, 5, 4, 2, .8]
HOURS_SCHOOL_DAY: dict[str, list[float]] = {
    "ELEVE": _H_ELEVE, "PARENT": _H_PARENT, "ENSEIGNANT": _H_ENSEIGNANT, "ADMIN_VIE_SCOL_TECH": _H_STAFF,
    "PERSONNEL_COLLECTIVITE": _H_STAFF, "AUTRE": _H_PARENT,
}
HOURS_DAY_OFF: list[float] = _H_OFF

# Local events ("indicateurs personnalisables"): (category, action) pairs by service family.
EVENTS: list[tuple[str, str]] = [
    ("ressource", "consultation"), ("ressource", "lecture_video"), ("engagement", "clic"),
    ("engagement", "partage"), ("document", "ouverture"), ("messagerie", "envoi"),
]
