"""How long each growing table keeps its rows: ClickHouse TTLs from the settings (hits_ttl_months,
visits_ttl_months, rollups_ttl_months, quality_alerts_ttl_months). Set after migrating (loader
start, `dnma migrate`), outside the migrations, which never change."""

from __future__ import annotations

import re
from typing import Any

from aggregator.ddl import Renderer
from dnma.settings import Settings

# Date32, not `ts + INTERVAL n MONTH`: a DateTime wraps after 2106, so a century's TTL (test
# stacks keep their hits that long) made a 2026 hit expire in 1990, at the next merge.
# table -> (which retention, the date the months count from)
TABLES: dict[str, tuple[str, str]] = {
    "hits": ("hits", "ts"),
    "hits_fingerprints": ("hits", "hour"),  # as long as the hits
    "visits": ("visits", "day"),
    "visits_fingerprints": ("visits", "day"),  # as long as the visits they describe
    "hits_daily": ("rollups", "day"),
    "hits_hourly": ("rollups", "hour"),
    "visits_daily": ("rollups", "day"),
    "visits_weekly": ("rollups", "debutsemaine"),
    "visits_territoires_daily": ("rollups", "day"),
    "visits_national_daily": ("rollups", "day"),
    "visits_services_daily": ("rollups", "day"),
    "visits_services_national_daily": ("rollups", "day"),
    # Every version of an alert has a last_seen no later than the newest one's (a resolved version
    # keeps the last open one's): they expire together, an older "open" version never resurfaces.
    "quality_alerts": ("quality_alerts", "last_seen"),
}
HITS_TABLES = ("hits", "hits_fingerprints")

_TTL = re.compile(r" TTL (.+?)(?: SETTINGS |$)")


def retention_months(settings: Settings) -> dict[str, int]:
    """Months kept per retention (0: for ever). Visits never expire before the hits they are
    rebuilt from (an expired day would be rebuilt while its hits last), rollups never before the
    visits they are refreshed from."""
    hits = settings.hits_ttl_months
    visits = max(settings.visits_ttl_months, hits)
    rollups = settings.rollups_ttl_months and max(settings.rollups_ttl_months, visits)
    return {"hits": hits, "visits": visits, "rollups": rollups, "quality_alerts": settings.quality_alerts_ttl_months}


def wanted_ttl(table: str, months: int) -> str:
    """The TTL expression of `table`, as ClickHouse prints it back in system.tables ('' for none)."""
    if table in HITS_TABLES and months < 1:
        raise ValueError(f"hits_ttl_months must be at least 1, not {months}")
    if months <= 0:
        return ""
    return f"toDate32({TABLES[table][1]}) + toIntervalMonth({months})"


def current_ttl(client: Any, r: Renderer, table: str) -> str:
    """The table's TTL as system.tables shows it ('' when it has none)."""
    database, name = r.local_name(table).split(".", 1)
    engine_full = client.command(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        parameters={"db": database, "name": name})
    found = _TTL.search(str(engine_full))
    return found.group(1) if found else ""


def apply_retention(client: Any, r: Renderer, retention: Settings | int) -> list[str]:
    """Give every table of TABLES the TTL its retention setting asks for (an int: the hits' months,
    for `hits` and `hits_fingerprints` alone); returns the tables altered (only those whose TTL
    differed). Existing parts are not rewritten (materialize_ttl_after_modify=0): merges apply the
    new TTL as they go."""
    if isinstance(retention, int):
        months = {table: retention for table in HITS_TABLES}
    else:
        per_kind = retention_months(retention)
        months = {table: per_kind[kind] for table, (kind, _column) in TABLES.items()}
    altered = []
    for table, n in months.items():
        wanted = wanted_ttl(table, n)
        if current_ttl(client, r, table) == wanted:
            continue
        if wanted:
            client.command(f"ALTER TABLE {r.local_name(table)}{r.on_cluster} MODIFY TTL {wanted}",
                           settings={"materialize_ttl_after_modify": 0})
        else:
            client.command(f"ALTER TABLE {r.local_name(table)}{r.on_cluster} REMOVE TTL")
        altered.append(table)
    return altered
