"""The collector's side of the quarantine (dnma/quarantine.py): the record a refused request is
kept as, and the replay of such a record through the pipeline's steps (`dnma quarantine replay`).

Kept: the parameters as received minus `token_auth`, `cip` and `uid`; `uid` as its keyed hash; a
few headers (dnma.quarantine.KEPT_HEADERS); and, since the IP is dropped, what the pipeline would
have derived from it at receipt: the exclusions' verdict and the pseudonymous visitor id (its
daily-salted fingerprint cannot be rebuilt later).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from collector import steps
from collector.context import PipelineContext
from collector.hit import AUTH_ONLY, PLUGIN_PARAMS, UA_MAX, UID_MAX, DropReason, Hit
from dnma import quarantine
from dnma.settings import Settings
from dnma.sites import Site


def record(hit: Hit, reason: DropReason, ctx: PipelineContext, *, bulk: bool) -> bytes:
    """The `quarantine` spool record of a request refused with `reason` (no IP, no token, no uid)."""
    params = hit.params
    site_id = hit.site.id if hit.site is not None else steps.parse_int(params.get("idsite")) or 0
    if not 0 < site_id < 2**32:
        site_id = 0
    user_hash, visitor_id, visitor_id_auth = _visitor_ids(hit, ctx, site_id)
    headers = hit.headers
    return quarantine.encode(quarantine.QUARANTINE, {
        "id": os.urandom(8).hex(),
        "version": 0,
        "received_at": int(hit.now),
        "site_id": site_id,
        "reason": reason.value,
        "detail": hit.detail,
        "request": {k: v for k, v in params.items() if k not in quarantine.STRIPPED_PARAMS},
        "headers": {k.decode("latin-1"): headers[k].decode("latin-1") for k in quarantine.KEPT_HEADERS if k in headers},
        "user_hash": user_hash,
        "visitor_id": visitor_id,
        "visitor_id_auth": visitor_id_auth,
        "ip_excluded": int(_ip_excluded(hit.site, hit.ip, ctx)),
        "bulk": int(bulk),
    })


def _visitor_ids(hit: Hit, ctx: PipelineContext, site_id: int) -> tuple[int, int, int]:
    """(user_hash, visitor id, visitor id had the request been authenticated), as the `privacy`
    step computes them: the last differs only by a `cip` the fingerprint would use instead of the
    request's address."""
    p = hit.params
    uid = (p.get("uid") or "").strip()[:UID_MAX]
    if uid:
        user_hash = ctx.pseudo.user_hash(uid)
        return user_hash, user_hash, 0
    for raw in (p.get("cid"), (p.get("_id") or "")[:16]):
        if raw and len(raw) == 16 and not raw.strip("0123456789abcdefABCDEF"):
            return 0, int(raw, 16), 0
    uac, _ = ctx.user_agent((p.get("ua") or hit.header(b"user-agent"))[:UA_MAX])
    plugins = "".join([p.get(k, "0")[:1] for k in PLUGIN_PARAMS])
    lang = (p.get("lang") or hit.header(b"accept-language"))[:64]

    def fingerprint(ip: str) -> int:
        return ctx.pseudo.fingerprint(site_id=site_id, ip=ip, os=uac.os, browser=uac.browser_name,
                                      browser_version=uac.browser_version, plugins=plugins, lang=lang, now=hit.now)

    cip = (p.get("cip") or "").strip()
    return 0, fingerprint(hit.ip), fingerprint(cip) if cip else 0


def _ip_excluded(site: Site | None, ip: str, ctx: PipelineContext) -> bool:
    """The site's excluded-IP verdict on the request's address (False for an unregistered site:
    it has no exclusions to judge by)."""
    if site is None or not site.excluded_ips or not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in ctx.excluded_networks(site))


# --- replay ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A quarantined request run through the pipeline again: stored (`hit` is its record),
    excluded (a drop that is not a refusal: nothing to store, nothing left to keep), or refused."""

    reason: DropReason | None
    detail: str = ""
    hit: bytes = b""

    @property
    def refused(self) -> bool:
        return self.reason is not None and self.reason.invalid


def replay(row: Mapping[str, Any], ctx: PipelineContext, super_user_token: str = "") -> Outcome:
    """Run the steps on a quarantined request as received at its receipt time (the `cdt` 24 h rule
    judged then). Without the super user's token the request is unauthenticated and the fields
    only a token allows (collector.hit.AUTH_ONLY) are left out; with it, they are kept and judged."""
    params = dict(row["request"])
    if not super_user_token:
        for name in AUTH_ONLY:
            params.pop(name, None)
    headers = {k.encode("latin-1"): v.encode("latin-1") for k, v in dict(row["headers"]).items()}
    received_at = row["received_at"]
    now = received_at.timestamp() if isinstance(received_at, datetime) else float(received_at)
    hit = Hit(params, "", headers, super_user_token, now)
    for name, step in steps.STEPS:
        if name == "privacy":
            reason = _replayed_privacy(hit, row)
        else:
            reason = step(hit, ctx)
            if reason is None and name == "exclude" and row.get("ip_excluded"):
                reason = DropReason.EXCLUDED_IP  # judged at receipt, on the address not kept
        if reason is not None:
            return Outcome(reason, hit.detail)
    return Outcome(None, hit=hit.record)


def _replayed_privacy(hit: Hit, row: Mapping[str, Any]) -> DropReason | None:
    """The `privacy` step's result, as computed at receipt (the IP is gone)."""
    hit.user_hash = int(row.get("user_hash") or 0)
    auth_id = int(row.get("visitor_id_auth") or 0)
    hit.visitor_id = auth_id if hit.authenticated and auth_id else int(row.get("visitor_id") or 0)
    hit.ip = ""
    return None


def replay_context(settings: Settings) -> PipelineContext:
    """A pipeline context as a collector worker's, on the sites and tokens as registered now."""
    from collector.metrics import Tally
    from collector.privacy import Pseudonymiser
    from collector.useragent import UAClassifier
    from dnma.access import Access

    access = Access(settings)
    tally = Tally(steps.STEP_NAMES)  # counted nowhere: a replay is not traffic
    return PipelineContext(sites=access.sites, access=access, honour_dnt_default=settings.honour_dnt_default,
                           ua=UAClassifier(settings.ua_cache_size, tally), pseudo=Pseudonymiser(settings.uid_secret),
                           tally=tally)


def replay_records(rows: Sequence[Mapping[str, Any]], ctx: PipelineContext, super_user_token: str,
                   version: int) -> tuple[list[bytes], dict[str, int]]:
    """The spool records a replay writes for `rows` (`replayed`: stored once under the record's own
    deduplication token, or excluded; `requarantined`: a new reason, as row version `version`; a
    request refused for the same reason as before is left as it is), and the outcomes counted:
    stored, excluded, refused (and by reason)."""
    out: list[bytes] = []
    counts: dict[str, int] = {"stored": 0, "excluded": 0, "refused": 0}
    for row in rows:
        outcome = replay(row, ctx, super_user_token)
        received_at = row["received_at"]
        ts = int(received_at.timestamp()) if isinstance(received_at, datetime) else int(received_at)
        key = {"id": row["id"], "site_id": int(row["site_id"]), "received_at": ts, "version": version}
        if outcome.refused:
            assert outcome.reason is not None
            counts["refused"] += 1
            counts[f"refused:{outcome.reason.value}"] = counts.get(f"refused:{outcome.reason.value}", 0) + 1
            if outcome.reason.value == row["reason"] and outcome.detail == row.get("detail", ""):
                continue
            kept = {c: row[c] for c in quarantine.COLUMNS if c in row and c not in key}
            kept["request"], kept["headers"] = dict(row["request"]), dict(row["headers"])
            out.append(quarantine.encode(quarantine.REQUARANTINED, {
                **kept, **key, "deleted": 0, "reason": outcome.reason.value, "detail": outcome.detail}))
        else:
            counts["stored" if outcome.reason is None else "excluded"] += 1
            hit = orjson.Fragment(outcome.hit) if outcome.reason is None else None
            out.append(quarantine.encode(quarantine.REPLAYED, {**key, "hit": hit}))
    return out, counts
