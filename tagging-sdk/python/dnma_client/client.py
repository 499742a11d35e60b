"""A Python client for the tracking protocol (TRACKING.md): page views, events, downloads,
outlinks, heartbeats and bulk batches, with the DNMA properties mapped to custom dimensions."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

# The DNMA properties and their default dimension slots (TAGGING.md); kept here rather than
# imported from `dnma.vocab` so that the SDK can be vendored on its own.
PROPERTY_SLOTS: dict[str, int] = {
    "uai": 1,
    "service": 2,
    "type": 3,
    "outil": 4,
    "profil": 5,
    "projet": 6,
    "exploitant": 7,
    "plateforme": 8,
}
MAX_BULK = 1000  # the collector refuses bigger batches

Hit = Mapping[str, Any]


def cdt_value(when: datetime | float | int) -> str:
    """`cdt` as unix seconds: unambiguous, whatever the time zone of the caller."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("cdt needs an aware datetime (a naive one is ambiguous)")
        return str(int(when.timestamp()))
    return str(int(when))


def encode_hit(params: Hit) -> str:
    """One bulk item: `?k=v&...`, dropping None values."""
    return "?" + urlencode({k: str(v) for k, v in params.items() if v is not None})


class Tracker:
    """Sends hits for one site. One instance per (site, visitor): reuse it, it keeps a pooled
    httpx connection. DNMA properties (`uai=`, `service=`, `profil=`...) go in as keywords."""

    def __init__(
        self,
        endpoint: str,
        site_id: int,
        token: str | None = None,
        *,
        visitor_id: str | None = None,
        uid: str | None = None,
        user_agent: str | None = None,
        properties: Mapping[str, str] | None = None,
        slots: Mapping[str, int] | None = None,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        base = endpoint.rstrip("/")
        self.url = base if base.endswith((".php",)) else base + "/matomo.php"
        self.site_id = site_id
        self.token = token
        self.visitor_id = visitor_id or secrets.token_hex(8)
        self.uid = uid
        self.user_agent = user_agent
        self.properties = dict(properties or {})
        self.slots = dict(slots or PROPERTY_SLOTS)
        self._own_client = client is None
        self.http = client or httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=8))

    # --- building hits (no I/O)
    def params(
        self,
        *,
        cdt: datetime | float | int | None = None,
        new_visit: bool = False,
        extra: Mapping[str, Any] | None = None,
        **properties: str | None,
    ) -> dict[str, str]:
        """The parameters common to every hit, then `extra`, then the DNMA properties."""
        out: dict[str, str] = {"idsite": str(self.site_id), "rec": "1", "_id": self.visitor_id}
        if self.uid:
            out["uid"] = self.uid
        if self.user_agent:
            out["ua"] = self.user_agent
        if new_visit:
            out["new_visit"] = "1"
        if cdt is not None:
            out["cdt"] = cdt_value(cdt)
        for k, v in (extra or {}).items():
            if v is not None:
                out[k] = str(v)
        merged = {**self.properties, **{k: v for k, v in properties.items() if v is not None}}
        for name, value in merged.items():
            slot = self.slots.get(name.lower())
            if slot is None:
                raise TypeError(f"unknown DNMA property {name!r}; known: {sorted(self.slots)}")
            out[f"dimension{slot}"] = str(value)
        return out

    def page_hit(self, url: str, title: str | None = None, **kw: Any) -> dict[str, str]:
        return self.params(extra={"url": url, "action_name": title, **kw.pop("extra", {})}, **kw)

    def event_hit(
        self, category: str, action: str, name: str | None = None, value: float | None = None,
        *, url: str | None = None, **kw: Any,
    ) -> dict[str, str]:
        extra = {"e_c": category, "e_a": action, "e_n": name, "e_v": value, "url": url, "ca": 1}
        return self.params(extra={**extra, **kw.pop("extra", {})}, **kw)

    def download_hit(self, url: str, **kw: Any) -> dict[str, str]:
        return self.params(extra={"download": url, "url": url, "ca": 1, **kw.pop("extra", {})}, **kw)

    def outlink_hit(self, url: str, **kw: Any) -> dict[str, str]:
        return self.params(extra={"link": url, "url": url, "ca": 1, **kw.pop("extra", {})}, **kw)

    def ping_hit(self, **kw: Any) -> dict[str, str]:
        return self.params(extra={"ping": 1, **kw.pop("extra", {})}, **kw)

    # --- sending one hit
    def page(self, url: str, title: str | None = None, **kw: Any) -> httpx.Response:
        return self.send(self.page_hit(url, title, **kw))

    def event(self, category: str, action: str, name: str | None = None, value: float | None = None,
              **kw: Any) -> httpx.Response:
        return self.send(self.event_hit(category, action, name, value, **kw))

    def download(self, url: str, **kw: Any) -> httpx.Response:
        return self.send(self.download_hit(url, **kw))

    def outlink(self, url: str, **kw: Any) -> httpx.Response:
        return self.send(self.outlink_hit(url, **kw))

    def ping(self, **kw: Any) -> httpx.Response:
        return self.send(self.ping_hit(**kw))

    def send(self, params: Hit, *, method: str = "GET") -> httpx.Response:
        """One hit as GET (query string) or POST (form body). The token rides along when set:
        a past `cdt`, `cip` or geo parameters need it."""
        data = {k: str(v) for k, v in params.items() if v is not None}
        if self.token and "token_auth" not in data:
            data["token_auth"] = self.token
        data.setdefault("send_image", "0")
        if method.upper() == "GET":
            return self.http.get(self.url, params=data)
        return self.http.post(self.url, data=data)

    # --- bulk
    def bulk(self, hits: Iterable[Hit | str], *, token: str | None = None) -> dict[str, Any]:
        """POST `{"requests": ["?...", ...], "token_auth": T}`; returns the parsed bulk answer.
        Raises httpx.HTTPStatusError on a refused batch (malformed, unauthenticated, spool full)."""
        items = [h if isinstance(h, str) else encode_hit(h) for h in hits]
        if len(items) > MAX_BULK:
            raise ValueError(f"a bulk batch holds at most {MAX_BULK} hits, got {len(items)}")
        body: dict[str, Any] = {"requests": items}
        tok = token or self.token
        if tok:
            body["token_auth"] = tok
        resp = self.http.post(self.url, json=body)
        resp.raise_for_status()
        return dict(resp.json())

    # --- lifecycle
    def close(self) -> None:
        if self._own_client:
            self.http.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

