"""Superset configuration for DNMA: one machine, no internet, French, row-level security on.

Read by Superset through SUPERSET_CONFIG_PATH (set by `dnma up` and the tests). Everything that
changes between installs comes from the environment: SUPERSET_SECRET_KEY (required),
SUPERSET_HOME (metadata, cache; default <repo>/var/superset).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cachelib.file import FileSystemCache
from sqlalchemy import event
from sqlalchemy.engine import Engine
from superset.utils.log import DBEventLogger

_REPO = Path(__file__).resolve().parent.parent
SUPERSET_HOME = Path(os.environ.get("SUPERSET_HOME", _REPO / "var" / "superset"))
SUPERSET_HOME.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]  # no default: a guessable key signs sessions
SQLALCHEMY_DATABASE_URI = f"sqlite:///{SUPERSET_HOME / 'superset.db'}?check_same_thread=false"


# Every dashboard request writes an event-log row: with SQLite's default rollback journal each
# commit fsyncs and locks the whole file, serialising the gunicorn workers' chart requests. WAL
# lets readers run during a write and commits without a full fsync (synchronous=NORMAL).
@event.listens_for(Engine, "connect")
def _sqlite_wal(dbapi_connection: object, _record: object) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


DATA_DIR = str(SUPERSET_HOME)

# --- French for every user: one language, so no picker (a session switched to English would show
# the catalogue's English strings); numbers and dates in d3's French locale (fr-FR).
BABEL_DEFAULT_LOCALE = "fr"
LANGUAGES = {"fr": {"flag": "fr", "name": "Français"}}
D3_FORMAT = {"decimal": ",", "thousands": "\u202f", "grouping": [3], "currency": ["", "\u00a0€"]}
D3_TIME_FORMAT = {
    "dateTime": "%A %e %B %Y à %X",
    "date": "%d/%m/%Y",
    "time": "%H:%M:%S",
    "periods": ["AM", "PM"],
    "days": ["dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"],
    "shortDays": ["dim.", "lun.", "mar.", "mer.", "jeu.", "ven.", "sam."],
    "months": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
               "novembre", "décembre"],
    "shortMonths": ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
                    "déc."],
}
DEFAULT_TIME_FILTER = "No filter"

# --- nothing phones home; maps are the bundled country_map GeoJSON (no Mapbox key)
MAPBOX_API_KEY = ""
SCARF_ANALYTICS = False
FEATURE_FLAGS = {
    "DASHBOARD_NATIVE_FILTERS": True,
    "DASHBOARD_CROSS_FILTERS": True,
    "ENABLE_TEMPLATE_PROCESSING": True,  # virtual datasets read native filter values (services)
    "ALERT_REPORTS": False,
    "EMBEDDED_SUPERSET": False,
    "THUMBNAILS": False,
    "PLAYWRIGHT_REPORTS_AND_THUMBNAILS": False,
    "ENABLE_DASHBOARD_SCREENSHOT_ENDPOINTS": False,
}


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    """A DNMA module by its path: Superset's venv has no DNMA installed, and the modules loaded
    here need only the standard library."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CLOCK = _load("dnma_clock", _REPO / "dnma" / "clock.py")
_CLOCK.configure(os.environ.get("DNMA_NOW", ""))
_EVENT_LOG = _load("dnma_event_log", _REPO / "superset" / "dnma_superset" / "event_log.py")


def _dnma_today() -> str:
    """Today in Paris on DNMA's clock, for the datasets' SQL (`{{ dnma_today() }}`)."""
    return _CLOCK.today().isoformat()


_INDICATORS = _load("dnma_indicators", _REPO / "dnma" / "indicators.py")


def _dnma_active_weeks() -> int:
    """N of "active = at least one visit in the last N school weeks" (settings.active_school_weeks,
    passed by `dnma up`), for the coverage datasets' SQL (`{{ dnma_active_weeks() }}`)."""
    raw = os.environ.get("DNMA_ACTIVE_SCHOOL_WEEKS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else int(_INDICATORS.ACTIVE_SCHOOL_WEEKS)


JINJA_CONTEXT_ADDONS = {"dnma_today": _dnma_today, "dnma_active_weeks": _dnma_active_weeks}
PREVENT_UNSAFE_DB_CONNECTIONS = False  # the embedded endpoint lives on 127.0.0.1
# The 6.1 frontend always renders Scarf's telemetry pixel and links Google Fonts: a strict CSP
# (same origin only) keeps the browser from calling out. No HTTPS redirect: a proxy terminates TLS.
TALISMAN_ENABLED = True
_SELF = ["'self'"]
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": _SELF,
        "default-src": _SELF,
        "img-src": [*_SELF, "blob:", "data:"],
        "worker-src": [*_SELF, "blob:"],
        "connect-src": _SELF,
        "object-src": "'none'",
        "style-src": [*_SELF, "'unsafe-inline'"],
        "script-src": [*_SELF, "'strict-dynamic'"],
        "font-src": [*_SELF, "data:"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
TALISMAN_DEV_CONFIG = TALISMAN_CONFIG
# The maps' legends (Markdown, dnma_superset.charts.map_legend) draw their colour gradient with an
# inline style, which Superset's HTML sanitizer removes by default: style and class are allowed on
# div, nothing else (inline styles are already allowed by the CSP above; no script, no URL).
HTML_SANITIZATION_SCHEMA_EXTENSIONS = {"attributes": {"div": ["style", "className"]}}
# The deployment census's fixed five-colour ordinal palette (dnma/indicators.py), as a sequential
# scheme the census maps (dnma_superset.charts.census_map) name: class index i is colour i.
EXTRA_SEQUENTIAL_COLOR_SCHEMES = [{
    "id": _INDICATORS.CENSUS_SCHEME, "label": "DNMA — classes du recensement", "description": "",
    "isDiverging": False, "colors": list(_INDICATORS.CENSUS_COLORS),
}]

# --- one machine: file cache, shared by the gunicorn workers
_CACHE_DIR = str(SUPERSET_HOME / "cache")


def _cache(prefix: str, timeout: int) -> dict[str, object]:
    return {
        "CACHE_TYPE": "FileSystemCache",
        "CACHE_DIR": f"{_CACHE_DIR}/{prefix}",
        "CACHE_DEFAULT_TIMEOUT": timeout,
        "CACHE_THRESHOLD": 2000,
        "CACHE_KEY_PREFIX": f"dnma_{prefix}_",
    }


CACHE_CONFIG = _cache("meta", 3600)
DATA_CACHE_CONFIG = _cache("data", 300)  # the loader refreshes visits every 30 s; 5 min is fresh enough
FILTER_STATE_CACHE_CONFIG = _cache("filter_state", 86400)
EXPLORE_FORM_DATA_CACHE_CONFIG = _cache("explore", 86400)
RESULTS_BACKEND = FileSystemCache(str(SUPERSET_HOME / "results"), threshold=500, default_timeout=3600)
GLOBAL_ASYNC_QUERIES = False

# --- security: RLS is built in; the REST API manages roles, users and RLS rules (provisioning)
FAB_ADD_SECURITY_API = True
ROW_LEVEL_SECURITY = True
PUBLIC_ROLE_LIKE = None  # the anonymous "Public" role stays empty: nothing without login
# The assets import is a multipart POST with a JWT; CSRF stays on for browser forms and the API
# client sends X-CSRFToken (from /api/v1/security/csrf_token/ with the session cookie).
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None
WTF_CSRF_EXEMPT_LIST = [
    "superset.views.core.log",
    "superset.views.core.explore_json",
    "superset.charts.data.api.data",
    "superset.dashboards.api.cache_dashboard_screenshot",
]

# --- small machine
SQLLAB_TIMEOUT = 60
SUPERSET_WEBSERVER_TIMEOUT = 90
ROW_LIMIT = 10000
SQL_MAX_ROW = 10000
SUPERSET_LOG_VIEW = False
LOG_LEVEL = os.environ.get("SUPERSET_LOG_LEVEL", "WARNING")


# --- per-request overhead: every chart request (cached or not) renders its virtual dataset to
# compute the cache key, and Superset then asks the database for its default schema, which for
# ClickHouse opens a new client (NullPool): two HTTP round trips to the endpoint and ~30 % of the
# request's CPU. The URI names the database, which is the default schema: read it from there.
def FLASK_APP_MUTATOR(app: object) -> None:  # noqa: N802 - Superset's name
    from sqlalchemy.engine.url import make_url
    from superset.db_engine_specs.clickhouse import ClickHouseConnectEngineSpec

    def _default_schema(cls: type, database: object, catalog: str | None) -> str | None:
        return make_url(database.sqlalchemy_uri).database or None  # type: ignore[attr-defined]

    ClickHouseConnectEngineSpec.get_default_schema = classmethod(_default_schema)  # type: ignore[method-assign,assignment]


class _EventLogger(DBEventLogger):
    """The action log without the two rows (and SQLite commits) every chart request writes
    (`ChartDataRestApi.data`, `.json_dumps`): dashboard views and the browser's per-chart load and
    render events (/superset/log/) are still recorded. A record holds every form field and JSON
    body of the request (the assets import's `passwords`, a user's password…): secrets are
    scrubbed before it is written (dnma_superset/event_log.py)."""

    def log(self, user_id, action, *args, **kwargs):  # type: ignore[no-untyped-def]
        if action.startswith("ChartDataRestApi."):
            return
        for key in ("records", "curated_payload", "curated_form_data"):
            if kwargs.get(key):
                kwargs[key] = _EVENT_LOG.scrub(kwargs[key])
        if isinstance(kwargs.get("referrer"), str):
            kwargs["referrer"] = _EVENT_LOG.scrub(kwargs["referrer"])
        super().log(user_id, action, *args, **kwargs)


EVENT_LOGGER = _EventLogger()
