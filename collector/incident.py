"""What the log says about a tracking request that hit a bug: a request id (answered to the client
in `X-Request-Id`) and a sanitised sample of the request, enough to reproduce it, with no
personal data: parameter names and value lengths, values only of ALLOWED parameters.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

# Parameters whose values say how a request was built, never who sent it or what they read:
# never token_auth, uid, cip, _id/cid, cdt, url/urlref/link/download (URLs and their query
# strings), action_name, custom dimensions or variables, search terms.
ALLOWED = frozenset({
    "idsite", "rec", "apiv", "send_image", "new_visit", "ping", "bots", "ca", "h", "m", "s",
    "res", "cookie", "r", "gt_ms", "pf_net", "pf_srv", "pf_tfr", "pf_dm1", "pf_dm2", "pf_onl",
    "idgoal", "e_v", "search_count", "pv_id", "lang", "fla", "java", "qt", "realp", "pdf", "wma",
    "dir", "ag", "gears", "_idn", "_idvc",
})
_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,40}")  # a name that is a name, not a value put in its place
_VALUE = re.compile(r"[A-Za-z0-9_.:,\-]{0,40}")  # what an allowed parameter's value looks like
MAX_PARAMS = 60
_HEADERS = (b"content-type", b"content-length", b"content-encoding", b"user-agent", b"referer", b"dnt",
            b"x-forwarded-for", b"origin")


def request_id(headers: Mapping[bytes, bytes]) -> str:
    """The client's X-Request-Id when it is a plain token, else a new one."""
    given = headers.get(b"x-request-id", b"").decode("latin-1")
    return given if re.fullmatch(r"[A-Za-z0-9._\-]{8,64}", given) else secrets.token_hex(8)


def sample_params(params: Mapping[str, str]) -> dict[str, Any]:
    """name -> length, or -> {"len", "value"} for an ALLOWED parameter with a plain value; names
    that could be data (an e-mail put as a name) are shown as their length only."""
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(params.items()):
        if i >= MAX_PARAMS:
            out["(more)"] = len(params) - MAX_PARAMS
            break
        shown = name if _NAME.fullmatch(name) else f"(name of {len(name)} chars #{i})"
        value = value if isinstance(value, str) else str(value)
        if name in ALLOWED and _VALUE.fullmatch(value):
            out[shown] = {"len": len(value), "value": value}
        else:
            out[shown] = len(value)
    return out


def sample(scope: Mapping[str, Any], headers: Mapping[bytes, bytes], params: Mapping[str, str] | None,
           bulk_items: int | None) -> dict[str, Any]:
    """The request as the log may hold it."""
    doc: dict[str, Any] = {
        "method": scope.get("method", ""),
        "path": scope.get("path", ""),
        "query_bytes": len(scope.get("query_string") or b""),
        "headers": {h.decode(): len(headers[h]) for h in _HEADERS if h in headers},
    }
    if bulk_items is not None:
        doc["bulk_items"] = bulk_items
    if params is not None:
        doc["params"] = sample_params(params)
    return doc
