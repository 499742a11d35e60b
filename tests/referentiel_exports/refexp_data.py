"""Shared by the referential/export tests and regen_golden.py: a chDB with the referential loaded
from the real open data, the `dnma.visits` contract table, and hand-made visits."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The repository's copy of the open-data extracts (deploy/referentiel, with their source and licence):
# the tests run in a clone with no ../shared beside it.
REFERENTIEL_DIR = REPO / "deploy" / "referentiel"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

ANNUAIRE_35 = REFERENTIEL_DIR / "annuaire-education-35-2023.csv"
ANNUAIRE_94 = REFERENTIEL_DIR / "annuaire-education-94-ecoles-2026.csv"
COLLEGES = REFERENTIEL_DIR / "geolocalisation-colleges-france.csv"
EFFECTIFS_1D = REFERENTIEL_DIR / "effectifs-ecoles-35.csv"
EFFECTIFS_2D = REFERENTIEL_DIR / "effectifs-second-degre-35.csv"
ALL_FILES = [ANNUAIRE_35, ANNUAIRE_94, COLLEGES, EFFECTIFS_1D, EFFECTIFS_2D]

# The fixed contract of the sessionizer's table (used only when m0003_visits is not there).
VISITS_DDL = """CREATE TABLE IF NOT EXISTS dnma.visits (
  visit_id UInt64, site_id UInt32, day Date, start DateTime('Europe/Paris'), end DateTime('Europe/Paris'),
  duration UInt32, actions UInt32, pageviews UInt32, is_bounce UInt8, visitor_id UInt64, user_hash UInt64,
  uai LowCardinality(String), profil LowCardinality(String), device LowCardinality(String),
  os LowCardinality(String), browser LowCardinality(String),
  services Array(LowCardinality(String)), outils Array(LowCardinality(String)),
  type_natif UInt8, type_tiers UInt8, projet LowCardinality(String), degre LowCardinality(String),
  academie LowCardinality(String), departement LowCardinality(String), region LowCardinality(String),
  nature LowCardinality(String), secteur LowCardinality(String)
) ENGINE = MergeTree ORDER BY (site_id, day, visit_id)"""

DEBUT = date(2024, 1, 8)  # a Monday
FIN = date(2024, 1, 21)  # the Sunday two weeks later
ECOLE_35 = "0350122T"  # annuaire 35 (2023 schema)
ECOLE_94 = "0940176F"  # annuaire 94 (2026 schema)
COLLEGE_2A = "6200011T"  # Corsica, only in the collèges file
INCONNU = "0949999H"  # valid check letter, in no file


def _visit(
    n: int,
    day: date,
    uai: str,
    *,
    profil: str = "ELEVE",
    device: str = "ordinateur",
    os: str = "windows",
    browser: str = "chrome",
    services: tuple[str, ...] = ("accueil",),
    duration: int = 60,
    user_hash: int = 0,
    visitor_id: int | None = None,
) -> dict[str, Any]:
    start = datetime.combine(day, datetime.min.time()) + timedelta(hours=8, minutes=n)
    return {
        "visit_id": n,
        "site_id": 1,
        "day": day,
        "start": start,
        "end": start + timedelta(seconds=duration),
        "duration": duration,
        "actions": 2,
        "pageviews": 2,
        "is_bounce": 0,
        "visitor_id": visitor_id if visitor_id is not None else 1000 + n,
        "user_hash": user_hash,
        "uai": uai,
        "profil": profil,
        "device": device,
        "os": os,
        "browser": browser,
        "services": list(services),
        "outils": [],
        "type_natif": 1,
        "type_tiers": 0,
        "projet": "ENT_DEMO",
        "degre": "",
        "academie": "",
        "departement": "",
        "region": "",
        "nature": "",
        "secteur": "",
    }


def visits() -> list[dict[str, Any]]:
    """Two weeks, four UAIs, repeated users, a visit over 24 h, and visits the export must skip."""
    d = DEBUT
    return [
        # week 1, école 35: one pupil twice (same uid), a parent on a phone, a teacher on a tablet
        _visit(1, d, ECOLE_35, services=("accueil", "cahier_textes"), duration=125, user_hash=11),
        _visit(2, d + timedelta(days=2), ECOLE_35, services=("notes",), duration=3600, user_hash=11),
        _visit(
            3,
            d + timedelta(days=3),
            ECOLE_35,
            profil="PARENT",
            device="smartphone",
            os="android",
            browser="chromemobile",
            services=("notes", "absences"),
            duration=42,
            user_hash=22,
        ),
        _visit(
            4,
            d + timedelta(days=6),
            ECOLE_35,
            profil="ENSEIGNANT",
            device="tablette",
            os="ios",
            browser="safari",
            services=("cahier_textes", "visioconference"),
            duration=90_000,
            user_hash=33,
        ),
        # no uid: counted by visitor id (two visits, one visitor)
        _visit(5, d + timedelta(days=1), ECOLE_35, profil="", services=(), duration=5, visitor_id=77),
        _visit(6, d + timedelta(days=4), ECOLE_35, profil="", services=(), duration=7, visitor_id=77),
        # week 2 (Monday), école 35 again
        _visit(
            7,
            d + timedelta(days=7),
            ECOLE_35,
            profil="ADMIN_VIE_SCOL_TECH",
            device="autreappareil",
            os="linux",
            browser="firefox",
            services=("services_vie_scolaire",),
            duration=600,
            user_hash=44,
        ),
        # école 94, collège 2A, unknown UAI
        _visit(
            8,
            d + timedelta(days=8),
            ECOLE_94,
            profil="ELEVE",
            device="smartphone",
            os="ios",
            browser="safari",
            services=("ressource_multimedia",),
            duration=300,
            user_hash=55,
        ),
        _visit(
            9,
            d,
            COLLEGE_2A,
            profil="ENSEIGNANT",
            os="macos",
            browser="edge",
            services=("courrier_electronique",),
            duration=1234,
            user_hash=66,
        ),
        _visit(
            10,
            d + timedelta(days=13),
            INCONNU,
            profil="PARENT",
            os="chromeos",
            browser="samsungbrowser",
            services=("accueil",),
            duration=61,
            user_hash=77,
        ),
        # skipped: no UAI; outside the period (the Sunday before, the Monday after)
        _visit(11, d, "", duration=9, user_hash=88),
        _visit(12, d - timedelta(days=1), ECOLE_35, duration=9, user_hash=99),
        _visit(13, FIN + timedelta(days=1), ECOLE_35, duration=9, user_hash=99),
    ]


def setup_database(client: Any, tmp: Path, files: list[Path] | None = None) -> Any:
    """Create the schema (m0002 + visits), load the referential, insert the visits; the settings."""
    from aggregator.migrate import renderer
    from aggregator.migrations import m0002_etablissements, m0011_etablissements_annees
    from aggregator.referentiel import load_files
    from dnma.settings import Settings

    settings = Settings(data_dir=tmp, clickhouse_dsn=f"chdb://{tmp / 'ch'}")
    r = renderer(settings)
    client.command(r.create_database())
    # Only our migration: the other migrations are other people's work in progress.
    for stmt in [*m0002_etablissements.up(r), *m0011_etablissements_annees.up(r)]:
        client.command(stmt)
    try:  # the sessionizer's own table when it is there: proves the exports read its real schema
        from aggregator.migrations import m0003_visits
    except ImportError:
        client.command(VISITS_DDL)
    else:
        for stmt in m0003_visits.up(r):
            client.command(stmt)
    load_files(client, settings, files if files is not None else [ANNUAIRE_35, ANNUAIRE_94, COLLEGES])
    rows = visits()
    names = list(rows[0])
    client.insert("dnma.visits", [[v[k] for k in names] for v in rows], column_names=names)
    return settings


def export_texts(client: Any) -> dict[str, str]:
    """Every dataset exported over [DEBUT, FIN], as CSV text."""
    import io

    from aggregator.exports import DATASETS, write

    out = {}
    for name, dataset in DATASETS.items():
        buf = io.StringIO()
        write(client, dataset, DEBUT, FIN, buf)
        out[name] = buf.getvalue()
    return out
