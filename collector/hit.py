"""One tracking request on its way through the pipeline: the `Hit` the steps fold over, the
`DropReason` that may stop it (invalid: refused with 400; excluded: answered, not stored), and
the protocol's field limits and parameter sets the steps read."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from collector.protocol import bytes_to_str
from collector.useragent import UNKNOWN, UAClasses
from dnma.sites import Site


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
# Any of these keys and a step must look closer (Hit.has_special_keys): a plain page view has none of them,
# and one lookup of its keys in this set spares the three steps their own.
SPECIAL_KEYS = AUTH_ONLY_KEYS | VALIDATED_KEYS | ACTION_KEYS


class Hit:
    """One tracking request on its way through the steps. Request headers stay raw bytes and
    are decoded only by the steps that need them."""

    __slots__ = (
        "params", "ip", "headers", "token", "now", "user_agent", "site", "authenticated", "ts", "uac",
        "action", "visitor_id", "user_hash", "flags", "props", "dimensions", "record", "tk", "detail", "cid",
        "id_hex", "shared", "reason", "props_fragment", "uac_fragment", "has_special_keys",
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
        # Any key that makes a step look closer (SPECIAL_KEYS): a plain page view has none.
        self.has_special_keys = not params.keys().isdisjoint(SPECIAL_KEYS)
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
