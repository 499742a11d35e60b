"""The quarantine of refused tracking requests: the spool record kinds it travels as (collector ->
spool -> loader -> `quarantine` table), the reasons whose site is unknown, and the listing query.

Spool records are JSON lines; a hit's starts `{"ts":`. A quarantine-kind record starts
`{"kind":"`, and a spool block only ever holds records of one append, so a block's first bytes
tell its kind (`is_kind_block`): the loader splits a batch without reading the hits' records.

- `quarantine`: a refused request as kept (`dnma quarantine list`): no IP, `uid` as its hash,
  no `token_auth` (collector/quarantine.py builds it).
- `replayed`: a quarantined request that passes now: the hit record to store under the insert
  deduplication token `quarantine:<id>`, and the quarantine row it resolves.
- `requarantined`: a quarantined request that still fails, with its new reason (a newer version
  of its row: `quarantine` is a ReplacingMergeTree on (site_id, id)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

KIND_PREFIX = b'{"kind":"'
QUARANTINE = "quarantine"
REPLAYED = "replayed"
REQUARANTINED = "requarantined"

# Reasons that leave the request without a registered site: their records share the unknown
# sites' cap, whatever `idsite` they claim, until that id is registered.
SITELESS_REASONS = frozenset({"missing_site", "invalid_site", "unknown_site"})
# What a kept request never holds: the IP (`cip`), the token, the raw uid (hashed in `user_hash`).
STRIPPED_PARAMS = frozenset({"token_auth", "cip", "uid"})
# The request headers a replay needs (User-Agent, language, referrer, DNT and prefetch verdicts);
# no cookie, no authorization, no forwarding address.
KEPT_HEADERS = (b"user-agent", b"accept-language", b"referer", b"dnt", b"x-purpose", b"purpose", b"sec-purpose")

# The `quarantine` table's columns a record sets (aggregator/migrations/m0018_quarantine.py).
COLUMNS = ("id", "version", "deleted", "received_at", "site_id", "reason", "detail", "request", "headers",
           "user_hash", "visitor_id", "visitor_id_auth", "ip_excluded", "bulk")


def is_kind_block(block: bytes) -> bool:
    return block.startswith(KIND_PREFIX)


def dedup_token(record_id: str) -> str:
    """The insert deduplication token of the hit a quarantined record becomes: the same however
    often, and in whatever batches, it is replayed."""
    return f"quarantine:{record_id}"


def encode(kind: str, fields: dict[str, Any]) -> bytes:
    """One spool record of `kind` (its first key, which is_kind_block reads)."""
    return orjson.dumps({"kind": kind, **fields})


@dataclass(frozen=True)
class Filter:
    """What `dnma quarantine list` and the Reporting API select: a site, a reason, or all."""

    site_id: int | None = None
    reason: str | None = None
    site_ids: tuple[int, ...] | None = None  # the sites a token may view (None: every one, unknown included)

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses = ["1"]
        params: dict[str, Any] = {}
        if self.site_id is not None:
            clauses.append("site_id = {site:UInt32}")
            params["site"] = self.site_id
        if self.reason:
            clauses.append("reason = {reason:String}")
            params["reason"] = self.reason
        if self.site_ids is not None:
            clauses.append("has({sites:Array(UInt32)}, site_id)")
            params["sites"] = list(self.site_ids)
        return " AND ".join(clauses), params


def listing(client: Any, database: str, flt: Filter, samples: int = 20) -> dict[str, Any]:
    """Counts by site and reason (with the first and last receipt), the latest `samples` records,
    and the records evicted by the bounds (TTL and caps), by site and reason."""
    where, params = flt.where()
    counts = client.query(
        f"SELECT site_id, reason, count(), min(received_at), max(received_at) FROM {database}.quarantine FINAL "
        f"WHERE {where} GROUP BY site_id, reason ORDER BY site_id, reason", parameters=params).result_rows
    rows = client.query(
        f"SELECT id, received_at, site_id, reason, detail, request, headers, bulk FROM {database}.quarantine FINAL "
        f"WHERE {where} ORDER BY received_at DESC, id DESC LIMIT {int(samples)}", parameters=params).result_rows
    evicted = client.query(
        f"SELECT site_id, reason, cause, sum(records) FROM {database}.quarantine_evictions "
        f"WHERE {where} GROUP BY site_id, reason, cause ORDER BY site_id, reason, cause", parameters=params).result_rows
    return {
        "counts": [{"site_id": int(s), "reason": r, "records": int(n), "first": _iso(a), "last": _iso(b)}
                   for s, r, n, a, b in counts],
        "samples": [{"id": i, "received_at": _iso(t), "site_id": int(s), "reason": r, "detail": d,
                     "request": dict(req), "headers": dict(h), "bulk": bool(b)}
                    for i, t, s, r, d, req, h, b in rows],
        "evicted": [{"site_id": int(s), "reason": r, "cause": c, "records": int(n)} for s, r, c, n in evicted],
    }


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
