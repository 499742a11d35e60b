"""The per-hit pipeline: an ordered list of small named steps folded over one `Hit`.

A step enriches the hit, adds quality flags, or drops it with a typed `DropReason` (invalid → 400,
excluded → 200 and nothing stored). Every step is timed and counted (`Tally`): `run` folds the
steps over one hit and times each step of it; `run_batch` (bulk requests) folds them step by step
over a batch of hits — each hit still meets the steps in order and stops at its first drop — and
times each step once for the whole batch, so `step_seconds / step_calls` stays the mean cost of a
step per hit while the clock is read twice per step per batch instead of twice per step per hit.

Hot path: no regex, per-request work (decoded headers, token checks, masked IP) memoised in
`Hit.shared` (one dict per HTTP request, shared by a bulk request's items), per-site and
per-value normalisations cached in the `Context` (bounded dicts).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from collector.metrics import Tally
from collector.privacy import Pseudonymiser, mask_ip
from collector.protocol import bytes_to_str, parse_qs_into
from collector.useragent import UNKNOWN, UAClasses, UAClassifier
from dnma import uai as uai_rules
from dnma import vocab
from dnma.access import Access
from dnma.sites import Site, SiteRegistry


class DropReason(StrEnum):
    # invalid: refused with 400 and a reason
    MISSING_SITE = "missing_site"
    INVALID_SITE = "invalid_site"
    UNKNOWN_SITE = "unknown_site"
    AUTH_REQUIRED = "auth_required"
    CDT_TOO_OLD = "cdt_too_old"
    INVALID_CID = "invalid_cid"
    INVALID_EVENT = "invalid_event"
    INVALID_CONTENT = "invalid_content"
    INVALID_PERFORMANCE = "invalid_performance"
    # excluded: answered like a recorded hit, not stored
    NOT_RECORDED = "rec_not_1"
    BOT = "bot"
    EXCLUDED_IP = "excluded_ip"
    EXCLUDED_USER_AGENT = "excluded_user_agent"
    DO_NOT_TRACK = "do_not_track"
    PREVIEW = "preview"

    @property
    def invalid(self) -> bool:
        return self in INVALID_REASONS


INVALID_REASONS = frozenset(
    {
        DropReason.MISSING_SITE,
        DropReason.INVALID_SITE,
        DropReason.UNKNOWN_SITE,
        DropReason.AUTH_REQUIRED,
        DropReason.CDT_TOO_OLD,
        DropReason.INVALID_CID,
        DropReason.INVALID_EVENT,
        DropReason.INVALID_CONTENT,
        DropReason.INVALID_PERFORMANCE,
    }
)

# Field limits (characters) of TRACKING.md and of our columns.
URL_MAX = 1024
TITLE_MAX = 1024
DIMENSION_MAX = 250
UID_MAX = 200
SHORT_MAX = 250  # event category/action, search category, campaign
UA_MAX = 1024  # longer User-Agents are cut before parsing: bounds the cache and the regex work
TWENTY_YEARS_S = 20 * 365 * 86_400
DAY_S = 86_400

AUTH_ONLY = ("cip", "country", "region", "city", "lat", "long")
PERF_PARAMS = ("pf_net", "pf_srv", "pf_tfr", "pf_dm1", "pf_dm2", "pf_onl")
PLUGIN_PARAMS = ("fla", "java", "qt", "realp", "pdf", "wma", "ag", "cookie")
CAMPAIGN_PARAMS = (
    "mtm_campaign",
    "matomo_campaign",
    "pk_campaign",
    "piwik_campaign",
    "utm_campaign",
    "mtm_cpn",
    "pk_cpn",
)
AUTH_ONLY_KEYS = frozenset(AUTH_ONLY)
PERF_KEYS = frozenset(PERF_PARAMS)
VALIDATED_KEYS = frozenset({"cid", "e_c", "e_a", "c_n", *PERF_PARAMS})  # what validate can refuse
# Keys that make a hit something else than a page view (see classify_action).
ACTION_KEYS = frozenset({"ping", "download", "link", "e_c", "c_n", "search", "idgoal", "ca"})
# Any of these keys and a step must look closer (Hit.special): a plain page view has none of them,
# and one lookup of its keys in this set spares the three steps their own.
SPECIAL_KEYS = AUTH_ONLY_KEYS | VALIDATED_KEYS | ACTION_KEYS
_HEX = "0123456789abcdefABCDEF"
_CACHE_MAX = 4096  # per-value normalisation caches: cleared when full


def _is_hex16(value: str) -> bool:
    return len(value) == 16 and not value.strip(_HEX)


_CDT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


@dataclass
class Context:
    """Per-worker state the steps read: sites, secrets, caches. Built once at startup."""

    sites: SiteRegistry
    access: Access
    honour_dnt_default: bool
    ua: UAClassifier
    pseudo: Pseudonymiser
    tally: Tally
    _networks: dict[int, list[Any]] = field(default_factory=dict)
    _slots: dict[int, dict[str, str]] = field(default_factory=dict)
    _uai_flags: dict[tuple[int, str], str] = field(default_factory=dict)
    _site_by_raw: dict[str, Site] = field(default_factory=dict)
    _uai_by_raw: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    _service: dict[str, tuple[str, str]] = field(default_factory=dict)
    _upper: dict[str, str] = field(default_factory=dict)
    _props: dict[tuple[Any, ...], tuple[dict[str, str], tuple[str, ...], int, bytes]] = field(default_factory=dict)
    _uac: dict[str, tuple[UAClasses, bytes]] = field(default_factory=dict)

    def excluded_networks(self, site: Site) -> list[Any]:
        found = self._networks.get(site.id)
        if found is None:
            found = []
            for spec in site.excluded_ips:
                try:
                    found.append(ipaddress.ip_network(spec, strict=False))
                except ValueError:
                    continue
            self._networks[site.id] = found
        return found

    def uai_flag(self, site: Site, uai: str) -> str:
        """The quality flag of a normalised UAI for this site ('' when fine), cached."""
        key = (site.id, uai)
        found = self._uai_flags.get(key)
        if found is None:
            status = uai_rules.status(uai)
            if status is uai_rules.UaiStatus.MISSING:
                found = "missing_uai"
            elif status is not uai_rules.UaiStatus.VALID:
                found = "invalid_uai"
            elif (
                site.perimeter.departements
                and uai_rules.departement_code(uai) not in site.perimeter.departements
            ):
                found = "outside_perimeter"
            else:
                found = ""
            if len(self._uai_flags) >= 100_000:  # about all the establishments of France
                self._uai_flags.clear()
            self._uai_flags[key] = found
        return found

    def uai(self, site: Site, raw: str | None) -> tuple[str, str]:
        """A page's UAI value → (normalised UAI, its quality flag or ''), cached per site."""
        key = (site.id, raw or "")
        found = self._uai_by_raw.get(key)
        if found is None:
            uai = uai_rules.normalise(raw)[:DIMENSION_MAX]
            found = (uai, self.uai_flag(site, uai))
            if len(key[1]) <= 16:  # a UAI is 8 characters: longer values are not remembered
                if len(self._uai_by_raw) >= 50_000:
                    self._uai_by_raw.clear()
                self._uai_by_raw[key] = found
        return found

    def service(self, raw: str | None) -> tuple[str, str]:
        """A page's SERVICE value → (normalised, its quality flag or ''), cached."""
        found = self._service.get(raw or "")
        if found is None:
            service = vocab.normalise_service(raw) if raw else ""
            flag = "missing_service" if not service else "" if service in _SERVICES else "unknown_service"
            if len(self._service) >= _CACHE_MAX:
                self._service.clear()
            found = self._service[raw or ""] = (service, flag)
        return found

    def upper(self, raw: str) -> str:
        """`vocab.normalise_upper`, cached (TYPE, PROFIL, OUTIL take few values)."""
        found = self._upper.get(raw)
        if found is None:
            if len(self._upper) >= _CACHE_MAX:
                self._upper.clear()
            found = self._upper[raw] = vocab.normalise_upper(raw)
        return found

    def site_for(self, raw: str) -> Site | None:
        """A registered site named by this exact `idsite` text, once it has been seen valid."""
        return self._site_by_raw.get(raw)

    def remember_site(self, raw: str, site: Site) -> None:
        if len(self._site_by_raw) >= 1024:
            self._site_by_raw.clear()
        self._site_by_raw[raw] = site

    def user_agent(self, ua: str) -> tuple[UAClasses, bytes]:
        """A User-Agent's classes and their record fragment (`_fragment`): a plain dict in front of
        the classifier's LRU, cleared when full (its hits still counted as the classifier's)."""
        found = self._uac.get(ua)
        if found is None:
            uac = self.ua.classify(ua)
            found = (uac, _fragment({"device": uac.device, "os": uac.os, "browser": uac.browser}))
            if len(self._uac) >= _CACHE_MAX:
                self._uac.clear()
            self._uac[ua] = found
        else:
            self.ua.hits += 1
        return found

    def slots(self, site: Site) -> dict[str, str]:
        """`dimensionN` parameter name → DNMA property, for this site's mapping."""
        found = self._slots.get(site.id)
        if found is None:
            found = self._slots[site.id] = {f"dimension{n}": p for n, p in site.dimensions.items()}
        return found


class Hit:
    """One tracking request on its way through the steps. Request headers stay raw bytes and
    are decoded only by the steps that need them."""

    __slots__ = (
        "params", "ip", "headers", "token", "now", "user_agent", "site", "authenticated", "ts", "uac",
        "action", "visitor_id", "user_hash", "flags", "props", "dimensions", "record", "tk", "detail", "cid",
        "id_hex", "shared", "reason", "props_fragment", "uac_fragment", "special",
    )  # fmt: skip

    def __init__(
        self,
        params: dict[str, str],
        ip: str,
        headers: dict[bytes, bytes],
        token: str,
        now: float,
        shared: dict[Any, Any] | None = None,
    ) -> None:
        self.params = params
        self.special = not params.keys().isdisjoint(SPECIAL_KEYS)
        self.ip = ip
        self.headers = headers
        self.token = params.get("token_auth") or token
        self.now = now
        self.user_agent = ""
        self.site: Site | None = None
        self.authenticated = False
        self.ts = int(now)
        self.uac: UAClasses = UNKNOWN
        self.action = "pageview"
        self.visitor_id = 0
        self.user_hash = 0
        self.flags: list[str] = []
        self.props: dict[str, str] = {}
        self.dimensions: dict[str, str] = {}
        self.record = b""  # the spool record (JSON), set by build_row
        self.props_fragment = b""  # record fragments of the DNMA properties and of the UA classes
        self.uac_fragment = b""
        self.tk = False  # answer with `Tk: N` (DNT honoured)
        self.detail = ""  # reason detail for a 400
        self.cid = ""
        self.id_hex = ""
        # Per-request memo (decoded headers, token checks, masked IP), shared by a bulk request's
        # items: the same headers, client and token for all of them.
        self.shared: dict[Any, Any] = {} if shared is None else shared
        self.reason: DropReason | None = None  # set by run_batch

    def header(self, name: bytes) -> str:
        shared = self.shared
        found = shared.get(name)
        if found is None:
            found = shared[name] = bytes_to_str(self.headers.get(name, b""))
        return found


Step = Callable[[Hit, Context], DropReason | None]


# --- helpers -------------------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
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


def parse_site(hit: Hit, ctx: Context) -> DropReason | None:
    raw = hit.params.get("idsite")
    if raw:
        site = ctx.site_for(raw)
        if site is not None:
            hit.site = site
            return None
    if raw is None or not raw.strip():
        hit.detail = "idsite is missing"
        return DropReason.MISSING_SITE
    site_id = _int(raw)
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


def authenticate(hit: Hit, ctx: Context) -> DropReason | None:
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
    if not hit.authenticated and hit.special and not params.keys().isdisjoint(AUTH_ONLY_KEYS):
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


def validate(hit: Hit, ctx: Context) -> DropReason | None:
    p = hit.params
    if not hit.special or p.keys().isdisjoint(VALIDATED_KEYS):  # nothing to refuse: only `_id` to read
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
            n = _int(p.get(name))
            if n is not None and n < 0:
                hit.detail = f"{name} must be >= 0"
                return DropReason.INVALID_PERFORMANCE
    return None


def check_rec(hit: Hit, ctx: Context) -> DropReason | None:
    return None if hit.params.get("rec") == "1" else DropReason.NOT_RECORDED


def parse_user_agent(hit: Hit, ctx: Context) -> DropReason | None:
    ua = (hit.params.get("ua") or hit.header(b"user-agent"))[:UA_MAX]
    hit.user_agent = ua
    hit.uac, hit.uac_fragment = ctx.user_agent(ua)  # the classifier counts its misses in the tally
    return None


def exclude(hit: Hit, ctx: Context) -> DropReason | None:
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


def classify_action(hit: Hit, ctx: Context) -> DropReason | None:
    hit.action = action_for(hit.params) if hit.special else "pageview"
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
    if (_int(p.get("idgoal")) or 0) > 0:
        return "goal"
    if p.get("ca") == "1":
        # "not a page view" and none of the above: it only keeps the visit alive, like a ping
        return "ping"
    return "pageview"


def privacy(hit: Hit, ctx: Context) -> DropReason | None:
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


PROPS_CACHE_MAX = 8192
PROPS_CACHE_VALUE_MAX = 64  # longer property values are not worth remembering


def dnma_properties(hit: Hit, ctx: Context) -> DropReason | None:
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
        found = ctx._props.get(key)
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
    hit.props_fragment = fragment = _fragment({k: props[k] for k in _PROPERTY_COLUMNS})
    if key is not None and all(v is None or len(v) <= PROPS_CACHE_VALUE_MAX for v in key[1:]):
        cache = ctx._props
        if len(cache) >= PROPS_CACHE_MAX:
            cache.clear()
        cache[key] = (dict(props), tuple(flags[n_flags:]), mapped, fragment)
    return None


def _fragment(columns: dict[str, Any]) -> bytes:
    """`,"k":v,...` for the columns not at their default (empty), to splice into a JSON record."""
    kept = {k: v for k, v in columns.items() if v}
    return b"," + orjson.dumps(kept)[1:-1] if kept else b""


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


_SERVICES = frozenset(vocab.SERVICES)
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


def build_row(hit: Hit, ctx: Context) -> DropReason | None:
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
    # (dnma_properties, Context.user_agent).
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
        count = _int(p.get("search_count"))
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
    n = _int(raw)
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


def _step(i: int, hit: Hit, ctx: Context) -> DropReason | None:
    """Step `i` of STEPS, called directly: compiled, a direct C call instead of a Python-level
    call of the function object (argument boxing and parsing on each of ~10 calls a hit).
    tests/collector/test_pipeline_steps.py checks this follows STEPS."""
    if i == 0:
        return parse_site(hit, ctx)
    if i == 1:
        return authenticate(hit, ctx)
    if i == 2:
        return validate(hit, ctx)
    if i == 3:
        return check_rec(hit, ctx)
    if i == 4:
        return parse_user_agent(hit, ctx)
    if i == 5:
        return exclude(hit, ctx)
    if i == 6:
        return classify_action(hit, ctx)
    if i == 7:
        return privacy(hit, ctx)
    if i == 8:
        return dnma_properties(hit, ctx)
    return build_row(hit, ctx)


# Single hits: every step run is counted, and the steps of one hit in STEP_TIMING_SAMPLE are timed,
# their time counted STEP_TIMING_SAMPLE times (an unbiased estimate of the total: step_seconds /
# step_calls stays the mean cost of a step). Reading the clock around each of 10 steps of every
# hit cost more than some steps themselves.
STEP_TIMING_SAMPLE = 16
_LAST_STEP = len(STEPS) - 1
_STEP_INDICES = range(len(STEPS))


def run(hit: Hit, ctx: Context) -> DropReason | None:
    """Fold the steps over the hit; the first drop stops it. On success `hit.record` is set."""
    tally = ctx.tally
    tally.runs += 1
    if not tally.runs % STEP_TIMING_SAMPLE:
        return _run_timed(hit, ctx, STEP_TIMING_SAMPLE)
    for i in _STEP_INDICES:
        reason = _step(i, hit, ctx)
        if reason is not None:
            tally.stopped_at[i] += 1  # steps 0..i ran: folded into step_calls by Tally.flush
            tally.drops[reason] += 1
            return reason
    tally.stopped_at[_LAST_STEP] += 1
    flags = tally.flags
    for flag in hit.flags:
        flags[flag] += 1
    return None


def _run_timed(hit: Hit, ctx: Context, weight: int) -> DropReason | None:
    """`run`, each step timed (its time counted `weight` times)."""
    tally = ctx.tally
    calls, spent = tally.step_calls, tally.step_ns
    clock = time.perf_counter_ns
    t0 = clock()
    for i in _STEP_INDICES:
        reason = _step(i, hit, ctx)
        t1 = clock()  # one clock read per step: the end of a step is the start of the next
        spent[i] += (t1 - t0) * weight
        calls[i] += 1
        if reason is not None:
            tally.drops[reason] += 1
            return reason
        t0 = t1
    flags = tally.flags
    for flag in hit.flags:
        flags[flag] += 1
    return None


def run_batch(hits: list[Hit], ctx: Context) -> None:
    """`run` over each hit of a batch, step by step: every hit meets the steps in order and stops
    at its first drop (`hit.reason`), as with `run`; the steps only read per-hit state and
    order-independent caches, so the outcome is the same. Each step is timed once for the batch
    and counted once per hit it ran on."""
    tally = ctx.tally
    calls, spent, drops = tally.step_calls, tally.step_ns, tally.drops
    clock = time.perf_counter_ns
    live = hits
    for i in _STEP_INDICES:
        if not live:
            break
        dropped = False
        t0 = clock()
        for hit in live:
            reason = _step(i, hit, ctx)
            if reason is not None:
                hit.reason = reason
                dropped = True
        spent[i] += clock() - t0
        calls[i] += len(live)
        if dropped:
            kept = []
            for hit in live:
                if hit.reason is None:
                    kept.append(hit)
                else:
                    drops[hit.reason] += 1
            live = kept
    flags = tally.flags
    for hit in live:
        for flag in hit.flags:
            flags[flag] += 1
