"""The pipeline's steps, in order (STEPS, the one list of them): small functions over one `Hit`
that enrich it, flag it, or drop it with a typed `DropReason`; collector/pipeline.py folds them.

Hot path: no regex; per-request work (decoded headers, token checks, masked IP) memoised in
`Hit.shared`; per-site and per-value normalisations remembered in the `PipelineContext`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Any

import orjson

from collector.context import PipelineContext, record_fragment
from collector.hit import (
    ACTION_KEYS,
    AUTH_ONLY,
    AUTH_ONLY_KEYS,
    CAMPAIGN_PARAMS,
    DAY_S,
    DIMENSION_MAX,
    PERF_KEYS,
    PERF_PARAMS,
    PLUGIN_PARAMS,
    SHORT_MAX,
    TITLE_MAX,
    TWENTY_YEARS_S,
    UA_MAX,
    UID_MAX,
    URL_MAX,
    VALIDATED_KEYS,
    DropReason,
    Hit,
)
from collector.privacy import mask_ip
from collector.protocol import parse_qs_into
from dnma import vocab

Step = Callable[[Hit, PipelineContext], DropReason | None]

_HEX = "0123456789abcdefABCDEF"


def _is_hex16(value: str) -> bool:
    return len(value) == 16 and not value.strip(_HEX)


_CDT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


# --- helpers -------------------------------------------------------------------------------------


def parse_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        f = float(value.strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _parse_cdt(raw: str) -> float | None:
    """Unix seconds or a UTC date-time string; None when unreadable (the hit keeps `now`)."""
    raw = raw.strip()
    f = _float(raw)
    if f is not None:
        return f
    from datetime import UTC, datetime

    for fmt in _CDT_FORMATS:
        try:
            return datetime.strptime(raw[:19], fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _clean(value: str | None, limit: int) -> str:
    return value.strip()[:limit] if value else ""


# --- the steps, in order -------------------------------------------------------------------------


def parse_site(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    raw = hit.params.get("idsite")
    if raw:
        site = ctx.site_for(raw)
        if site is not None:
            hit.site = site
            return None
    if raw is None or not raw.strip():
        hit.detail = "idsite is missing"
        return DropReason.MISSING_SITE
    site_id = parse_int(raw)
    if site_id is None or site_id <= 0:
        hit.detail = "idsite must be an integer > 0"
        return DropReason.INVALID_SITE
    site = ctx.sites.get(site_id)
    if site is None:
        hit.detail = f"idsite {site_id} is not a registered site"
        return DropReason.UNKNOWN_SITE
    ctx.remember_site(raw, site)
    hit.site = site
    return None


def authenticate(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    token = hit.token
    site = hit.site
    assert site is not None
    if token:
        key = (site.id, token)
        ok = hit.shared.get(key)  # checked once per request (a bulk request's items share it)
        if ok is None:
            grant = ctx.access.grant(token)  # one SHA-256 and a dict lookup of it
            ok = hit.shared[key] = grant is not None and grant.may_write(site.id)
        hit.authenticated = ok
    params = hit.params
    if not hit.authenticated and hit.has_special_keys and not params.keys().isdisjoint(AUTH_ONLY_KEYS):
        for name in AUTH_ONLY:
            if params.get(name):
                hit.detail = f"{name} requires a valid token_auth"
                return DropReason.AUTH_REQUIRED
    raw_cdt = params.get("cdt")
    if raw_cdt:
        cdt = _parse_cdt(raw_cdt)
        if cdt is not None and cdt <= hit.now and hit.now - cdt <= TWENTY_YEARS_S:
            if hit.now - cdt > DAY_S and not hit.authenticated:
                hit.detail = "cdt older than 24 hours requires a valid token_auth"
                return DropReason.CDT_TOO_OLD
            hit.ts = int(cdt)
        # future, > 20 years old or unreadable: the hit is dated now
    return None


def validate(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    p = hit.params
    if not hit.has_special_keys or p.keys().isdisjoint(VALIDATED_KEYS):  # nothing to refuse: only `_id` to read
        vid = p.get("_id")
        if vid and _is_hex16(vid[:16]):
            hit.id_hex = vid[:16]
        return None
    cid = p.get("cid")
    if cid:
        if not _is_hex16(cid):
            hit.detail = "cid must be exactly 16 hexadecimal characters"
            return DropReason.INVALID_CID
        hit.cid = cid
    vid = p.get("_id")
    if vid and _is_hex16(vid[:16]):  # longer: truncated; not hex: ignored
        hit.id_hex = vid[:16]
    e_c, e_a = p.get("e_c"), p.get("e_a")
    if e_c or e_a:
        if not (e_c and e_c.strip()) or not (e_a and e_a.strip()):
            hit.detail = "an event needs a non-blank e_c and e_a"
            return DropReason.INVALID_EVENT
    c_n = p.get("c_n")
    if c_n is not None and c_n and not c_n.strip():
        hit.detail = "c_n must not be blank"
        return DropReason.INVALID_CONTENT
    if not p.keys().isdisjoint(PERF_KEYS):
        for name in PERF_PARAMS:
            n = parse_int(p.get(name))
            if n is not None and n < 0:
                hit.detail = f"{name} must be >= 0"
                return DropReason.INVALID_PERFORMANCE
    return None


def check_rec(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    return None if hit.params.get("rec") == "1" else DropReason.NOT_RECORDED


def parse_user_agent(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    ua = (hit.params.get("ua") or hit.header(b"user-agent"))[:UA_MAX]
    hit.user_agent = ua
    hit.uac, hit.uac_fragment = ctx.user_agent(ua)  # the classifier counts its misses in the tally
    return None


def exclude(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    site = hit.site
    assert site is not None
    if hit.uac.is_bot and hit.params.get("bots") != "1":
        return DropReason.BOT
    if site.excluded_ips and hit.ip:
        try:
            addr = ipaddress.ip_address(hit.ip)
        except ValueError:
            addr = None
        if addr is not None and any(addr in net for net in ctx.excluded_networks(site)):
            return DropReason.EXCLUDED_IP
    if site.excluded_user_agents and site.ua_excluded(hit.user_agent):
        return DropReason.EXCLUDED_USER_AGENT
    headers = hit.headers
    if b"dnt" in headers and headers[b"dnt"] == b"1" and (site.honour_dnt or ctx.honour_dnt_default):
        hit.tk = True
        return DropReason.DO_NOT_TRACK
    if b"x-purpose" in headers or b"purpose" in headers or b"sec-purpose" in headers:
        purpose = (headers.get(b"x-purpose") or headers.get(b"purpose") or b"").lower()
        if (
            purpose.startswith((b"preview", b"prefetch"))
            or b"prefetch" in headers.get(b"sec-purpose", b"").lower()
        ):
            return DropReason.PREVIEW
    return None


def classify_action(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    hit.action = action_for(hit.params) if hit.has_special_keys else "pageview"
    return None


def action_for(p: dict[str, str]) -> str:
    """The action a (validated) hit's parameters describe, by TRACKING.md's priority."""
    if p.keys().isdisjoint(ACTION_KEYS):
        return "pageview"
    if p.get("ping") == "1":
        return "ping"
    if p.get("download"):
        return "download"
    if p.get("link"):
        return "outlink"
    if p.get("e_c"):  # validated: an event has both e_c and e_a
        return "event"
    if p.get("c_n"):
        return "content"
    if p.get("search"):
        return "search"
    if (parse_int(p.get("idgoal")) or 0) > 0:
        return "goal"
    if p.get("ca") == "1":
        # "not a page view" and none of the above: it only keeps the visit alive, like a ping
        return "ping"
    return "pageview"


def privacy(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    p = hit.params
    if hit.authenticated:
        cip = p.get("cip")
        if cip:
            hit.ip = cip.strip()
    uid = p.get("uid")
    if uid:
        uid = uid.strip()[:UID_MAX]
    if uid:
        hit.user_hash = ctx.pseudo.user_hash(uid)
        hit.visitor_id = hit.user_hash
    elif hit.cid:
        hit.visitor_id = int(hit.cid, 16)
    elif hit.id_hex:
        hit.visitor_id = int(hit.id_hex, 16)
    else:
        site = hit.site
        assert site is not None
        plugins = "".join([p.get(k, "0")[:1] for k in PLUGIN_PARAMS])
        lang = (p.get("lang") or hit.header(b"accept-language"))[:64]
        hit.visitor_id = ctx.pseudo.fingerprint(
            site_id=site.id,
            ip=hit.ip,
            os=hit.uac.os,
            browser=hit.uac.browser_name,
            browser_version=hit.uac.browser_version,
            plugins=plugins,
            lang=lang,
            now=hit.now,
        )
    # From here on only the masked address exists, should a later step want one.
    ip = hit.ip
    key = ("mask", ip)
    masked = hit.shared.get(key)
    if masked is None:
        masked = hit.shared[key] = mask_ip(ip)
    hit.ip = masked
    return None


def _legacy_cvars(raw: str) -> list[tuple[str, str]]:
    """`{"1":["name","value"],...}`, read leniently: anything malformed is skipped."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    items = doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else ()
    out = []
    for item in list(items)[:50]:
        if isinstance(item, list) and len(item) >= 2 and isinstance(item[0], str):
            out.append((item[0].strip()[:DIMENSION_MAX], str(item[1]).strip()[:DIMENSION_MAX]))
    return out


PROPS_CACHE_VALUE_MAX = 64  # longer property values are not worth remembering


def dnma_properties(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    """The DNMA properties (mapped `dimensionN`, legacy custom variables), normalised, with
    their quality flags; free dimensions. The properties and flags only depend on the site and
    the raw values of its mapped dimensions (when no custom variable is sent): remembered per
    (site, values), since a page's hits keep sending the same ones."""
    site = hit.site
    assert site is not None
    params = hit.params
    slots = ctx.slots(site)
    legacy = "_cvar" in params or "cvar" in params
    key: tuple[Any, ...] | None = None
    if not legacy:
        key = (site.id, *map(params.get, slots))
        found = ctx.known_properties(key)
        if found is not None:
            cached_props, cached_flags, cached_mapped, hit.props_fragment = found
            hit.props = cached_props  # shared: read only from here on
            if cached_flags:
                hit.flags.extend(cached_flags)
            if " ".join(params).count("dimension") > cached_mapped:
                _free_dimensions(hit, slots)
            return None
    props = hit.props
    mapped = 0
    for k, prop in slots.items():
        value = params.get(k)
        if value is not None:
            props[prop] = value.strip()[:DIMENSION_MAX]
            mapped += 1
    # Free custom dimensions: only scan the keys when there are more than the mapped ones.
    if " ".join(params).count("dimension") > mapped:
        _free_dimensions(hit, slots)
    if legacy:
        _legacy_properties(hit)
    flags = hit.flags
    n_flags = len(flags)
    uai, flag = ctx.uai(site, props.get("uai"))
    props["uai"] = uai
    if flag:
        flags.append(flag)
    service, flag = ctx.service(props.get("service"))
    props["service"] = service
    if flag:
        flags.append(flag)
    upper = ctx.upper
    # Only on a cache miss of (site, raw values): a plain loop costs nothing here.
    for prop, allowed in (("type", _TYPES), ("profil", _PROFILS)):
        value = props.get(prop)
        value = upper(value) if value else ""
        props[prop] = value
        if not value:
            flags.append("missing_" + prop)
        elif value not in allowed:
            flags.append("unknown_" + prop)
    outil = props.get("outil")
    props["outil"] = upper(outil) if outil else ""
    # Fixed in the site's registration wins over what the page sends.
    props["projet"] = (site.projet or props.get("projet", ""))[:DIMENSION_MAX]
    props["exploitant"] = (site.exploitant or props.get("exploitant", ""))[:DIMENSION_MAX]
    props["plateforme"] = (site.plateforme or props.get("plateforme", ""))[:DIMENSION_MAX]
    # The record's columns these properties set, for build_row.
    hit.props_fragment = fragment = record_fragment({k: props[k] for k in _PROPERTY_COLUMNS})
    if key is not None and all(v is None or len(v) <= PROPS_CACHE_VALUE_MAX for v in key[1:]):
        ctx.remember_properties(key, (dict(props), tuple(flags[n_flags:]), mapped, fragment))
    return None


def _free_dimensions(hit: Hit, slots: dict[str, str]) -> None:
    dimensions = hit.dimensions
    for key, value in hit.params.items():
        if key.startswith("dimension") and key not in slots and key[9:].isdigit():
            dimensions[key] = value.strip()[:DIMENSION_MAX]


def _legacy_properties(hit: Hit) -> None:
    """Custom variables named like a DNMA property fill it when no dimension did; others are kept
    as free dimensions `cvar_<name>`."""
    for name in ("_cvar", "cvar"):
        raw = hit.params.get(name)
        if raw:
            for cv_name, cv_value in _legacy_cvars(raw):
                prop = cv_name.lower()
                if prop in vocab.PROPERTIES:
                    hit.props.setdefault(prop, cv_value)
                elif cv_name:
                    hit.dimensions.setdefault("cvar_" + prop, cv_value)


_TYPES = frozenset(vocab.TYPES)
_PROFILS = frozenset(vocab.PROFILS)


def _campaign(p: dict[str, str], url: str) -> str:
    name = p.get("_rcn")
    if not name and "?" in url and ("campaign" in url or "_cpn" in url):
        query: dict[str, str] = {}
        parse_qs_into(query, url.partition("?")[2].partition("#")[0])
        for key in CAMPAIGN_PARAMS:
            if query.get(key):
                name = query[key]
                break
    return _clean(name, SHORT_MAX).lower()


def build_row(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    p = hit.params
    site = hit.site
    assert site is not None
    action = hit.action
    page_url = p.get("url", "")
    url = page_url
    if action == "download":
        url = p["download"]
    elif action == "outlink":
        url = p["link"]
    referrer = p.get("urlref", "")
    if not page_url and not referrer:
        referrer = hit.header(b"referer")
    # Only the columns this hit sets: a missing key is the column's default for ClickHouse
    # (dnma/hits.py): a typical page view is about a third smaller in the spool, and cheaper for
    # ClickHouse to parse, for the same stored row (bench/README.md). The columns of the DNMA
    # properties and of the UA classes come as JSON fragments made once per distinct value
    # (dnma_properties, PipelineContext.user_agent).
    row: dict[str, Any] = {"ts": hit.ts, "received_at": int(hit.now), "site_id": site.id, "action": action,
                           "visitor_id": hit.visitor_id}
    if url:
        row["url"] = url[:URL_MAX]
    title = p.get("action_name")
    if title:
        row["title"] = title[:TITLE_MAX]
    if referrer:
        row["referrer"] = referrer[:URL_MAX]
    if "_rcn" in p or "campaign" in page_url or "_cpn" in page_url:
        campaign = _campaign(p, page_url)
        if campaign:
            row["campaign"] = campaign
    if hit.user_hash:
        row["user_hash"] = hit.user_hash
    if p.get("new_visit") == "1":
        row["new_visit"] = 1
    pv_id = p.get("pv_id")
    if pv_id:
        row["pv_id"] = pv_id[:6]
    if hit.dimensions:
        row["dimensions"] = hit.dimensions
    if hit.flags:
        row["flags"] = hit.flags
    if action == "event":
        row["event_category"] = _clean(p.get("e_c"), SHORT_MAX)
        row["event_action"] = _clean(p.get("e_a"), SHORT_MAX)
        row["event_name"] = _clean(p.get("e_n"), TITLE_MAX)
        row["event_value"] = _float(p.get("e_v"))
    if "search" in p:
        row["search_keyword"] = _clean(p.get("search"), TITLE_MAX)
        row["search_category"] = _clean(p.get("search_cat"), SHORT_MAX)
        count = parse_int(p.get("search_count"))
        row["search_count"] = count if count is not None and 0 <= count < 2**32 else None
    if "idgoal" in p:
        row["goal_id"] = _goal(p["idgoal"])
    if "revenue" in p:
        row["revenue"] = _float(p["revenue"])
    # A new bytes of its exact size: orjson's own buffer is ≥ 4 KiB (≈16 KiB for a row), and a
    # 1,000-item bulk request holds its records while it waits for the fsync (≈0.4 MiB, not ≈16).
    hit.record = b"".join((memoryview(orjson.dumps(row))[:-1], hit.props_fragment, hit.uac_fragment, b"}"))
    return None


# The hits columns of the DNMA properties, as dnma_properties leaves them: checked against their
# rules and vocabularies, the free ones cut to DIMENSION_MAX.
_PROPERTY_COLUMNS = ("uai", "service", "type", "outil", "profil", "projet", "exploitant", "plateforme")


def _goal(raw: str | None) -> int:
    n = parse_int(raw)
    return n if n is not None and 0 < n < 2**32 else 0


STEPS: list[tuple[str, Step]] = [
    ("parse_site", parse_site),
    ("authenticate", authenticate),
    ("validate", validate),
    ("check_rec", check_rec),
    ("parse_user_agent", parse_user_agent),
    ("exclude", exclude),
    ("classify_action", classify_action),
    ("privacy", privacy),
    ("dnma_properties", dnma_properties),
    ("build_row", build_row),
]
STEP_NAMES = [name for name, _ in STEPS]
