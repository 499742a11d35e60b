"""The loader's side of the quarantine (dnma/quarantine.py): storing the quarantine-kind records of
a batch, and the bounds (TTL, a cap per registered site, one cap for unregistered sites together).

Exactly-once like the hits: the quarantine rows of a batch go in with a token derived from the
batch's; a replayed request's hit with `quarantine:<id>` as its token, whatever batch carries it,
so that a replay run twice, or interrupted and run again, stores it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from aggregator.loader_logs import log_event
from dnma import clock, quarantine
from dnma.settings import Settings

_SETTINGS = {"insert_deduplicate": 1}
_TOMBSTONE = ("id", "site_id", "received_at", "version")


def store(client: Any, database: str, blocks: list[bytes], token: str,
          insert_hit: Callable[[bytes, str], None]) -> dict[str, int]:
    """Insert the quarantine-kind records of `blocks` (a batch's, under its `token`): kept requests
    and new reasons as `quarantine` rows, replayed requests' hits through `insert_hit(record,
    token)` then their rows' deletion (a deleted version). Returns the records by kind."""
    rows: list[bytes] = []
    counts = {quarantine.QUARANTINE: 0, quarantine.REPLAYED: 0, quarantine.REQUARANTINED: 0, "stored": 0}
    for block in blocks:
        for line in block.split(b"\n"):
            doc = orjson.loads(line)
            kind = doc.pop("kind", "")
            counts[kind] = counts.get(kind, 0) + 1
            if kind == quarantine.REPLAYED:
                hit = doc.pop("hit", None)
                if hit is not None:
                    insert_hit(orjson.dumps(hit), quarantine.dedup_token(doc["id"]))
                    counts["stored"] += 1
                rows.append(orjson.dumps({k: doc[k] for k in _TOMBSTONE} | {"deleted": 1}))
            elif kind in (quarantine.QUARANTINE, quarantine.REQUARANTINED):
                rows.append(orjson.dumps({k: doc[k] for k in quarantine.COLUMNS if k in doc}))
            else:
                log_event("quarantine_record_unknown", logging.WARNING, kind=str(kind)[:40])
    if rows:
        client.raw_insert(f"{database}.quarantine", insert_block=b"\n".join(rows), fmt="JSONEachRow",
                          settings=_SETTINGS | {"insert_deduplication_token": f"{token}:quarantine"})
    return counts


# --- bounds ----------------------------------------------------------------------------------------


def trim_job(ctx: Any) -> int:
    """`dnma quarantine trim`: the bounds applied now, on the sites registered now."""
    from dnma.sites import SiteRegistry

    registered = (s.id for s in SiteRegistry.load(ctx.settings.resolved_sites_file).all())
    evicted = trim(ctx.client(), ctx.settings, registered)
    ctx.out(f"quarantine trimmed: {evicted['ttl']} past quarantine_keep_days, {evicted['cap']} over the caps\n")
    return 0


def trim(client: Any, settings: Settings, registered: Iterable[int]) -> dict[str, int]:
    """Delete the records past the bounds, oldest first, and count them in quarantine_evictions:
    received more than quarantine_keep_days ago; beyond quarantine_max_records_per_site for a
    registered site; beyond quarantine_max_records_unknown_sites for every other site id together
    (a separate pool: junk sent to unknown ids never evicts a registered site's records)."""
    db = settings.clickhouse_database
    known = sorted(set(registered))
    cutoff = int(clock.time()) - settings.quarantine_keep_days * 86_400
    evicted = {"ttl": 0, "cap": 0}
    _evict(client, db, "ttl", "received_at < toDateTime({cutoff:UInt32})", {"cutoff": cutoff}, evicted)
    over = client.query(
        f"SELECT site_id, count() AS n FROM {db}.quarantine FINAL WHERE has({{known:Array(UInt32)}}, site_id) "
        "GROUP BY site_id HAVING n > {cap:UInt64}",
        parameters={"known": known, "cap": settings.quarantine_max_records_per_site}).result_rows
    for site_id, _ in over:
        _evict_oldest(client, db, "site_id = {site:UInt32}", {"site": int(site_id)},
                      settings.quarantine_max_records_per_site, evicted)
    _evict_oldest(client, db, "NOT has({known:Array(UInt32)}, site_id)", {"known": known},
                  settings.quarantine_max_records_unknown_sites, evicted)
    if any(evicted.values()):
        log_event("quarantine_trimmed", **evicted)
    return evicted


def _evict_oldest(client: Any, db: str, where: str, params: dict[str, Any], keep: int,
                  evicted: dict[str, int]) -> None:
    """Keep the `keep` newest records matching `where`; evict the rest."""
    oldest = client.query(
        f"SELECT id FROM {db}.quarantine FINAL WHERE {where} ORDER BY received_at DESC, id DESC "
        f"LIMIT 1000000000 OFFSET {int(keep)}", parameters=params).result_rows
    if oldest:
        _evict(client, db, "cap", "has({ids:Array(String)}, id)", {"ids": [r[0] for r in oldest]}, evicted)


def _evict(client: Any, db: str, cause: str, where: str, params: dict[str, Any], evicted: dict[str, int]) -> None:
    """Count the live records matching `where` by day, site and reason, then delete every version of them."""
    counted = client.query(
        f"SELECT toDate(received_at), site_id, reason, count() FROM {db}.quarantine FINAL WHERE {where} "
        "GROUP BY 1, 2, 3", parameters=params).result_rows
    if not counted:
        return
    client.insert(f"{db}.quarantine_evictions", [[d, s, r, cause, n] for d, s, r, n in counted],
                  column_names=["day", "site_id", "reason", "cause", "records"])
    client.command(f"DELETE FROM {db}.quarantine WHERE {where}", parameters=params)
    evicted[cause] += sum(int(r[3]) for r in counted)
