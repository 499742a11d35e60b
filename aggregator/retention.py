"""How long raw hits are kept: the TTL of `hits` and `hits_fingerprints`, from `hits_ttl_months`.
Set after migrating (loader start, `dnma migrate`), outside the migrations, which never change."""

from __future__ import annotations

import re
from typing import Any

from aggregator.ddl import Renderer

# Date32, not `ts + INTERVAL n MONTH`: a DateTime wraps after 2106, so a century's TTL (test
# stacks keep their hits that long) made a 2026 hit expire in 1990, at the next merge.
EXPRESSIONS = {"hits": "toDate32(ts) + toIntervalMonth({months})",
               "hits_fingerprints": "toDate32(hour) + toIntervalMonth({months})"}  # as long as the hits

_TTL = re.compile(r" TTL (.+?)(?: SETTINGS |$)")


def wanted_ttl(table: str, months: int) -> str:
    """The TTL expression of `table`, as ClickHouse prints it back in system.tables."""
    if months < 1:
        raise ValueError(f"hits_ttl_months must be at least 1, not {months}")
    return EXPRESSIONS[table].format(months=months)


def current_ttl(client: Any, r: Renderer, table: str) -> str:
    """The table's TTL as system.tables shows it ('' when it has none)."""
    database, name = r.local_name(table).split(".", 1)
    engine_full = client.command(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        parameters={"db": database, "name": name})
    found = _TTL.search(str(engine_full))
    return found.group(1) if found else ""


def apply_retention(client: Any, r: Renderer, months: int) -> list[str]:
    """Give `hits` and `hits_fingerprints` the TTL of `months`; returns the tables altered (only
    those whose TTL differed). Existing parts are not rewritten (materialize_ttl_after_modify=0):
    merges apply the new TTL as they go."""
    altered = []
    for table in EXPRESSIONS:
        wanted = wanted_ttl(table, months)
        if current_ttl(client, r, table) == wanted:
            continue
        client.command(f"ALTER TABLE {r.local_name(table)}{r.on_cluster} MODIFY TTL {wanted}",
                       settings={"materialize_ttl_after_modify": 0})
        altered.append(table)
    return altered
