"""The Matomo tracking protocol on the wire: query strings, form bodies and bulk JSON to parameters.

Pure functions over bytes, with the request limits of TRACKING.md; never raises on bad input
except `ProtocolError`, which carries the HTTP status and the reason to answer with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import orjson

MAX_URL_BYTES = 8 * 1024  # request line / GET URL
MAX_BODY_BYTES = 1024 * 1024  # POST body
MAX_BULK_ITEMS = 1000
MAX_PARAMS = 1000  # a query string of 8 KiB cannot hold more; a 1 MiB form body could
MAX_VALUE_CHARS = 8 * 1024  # longer values are cut before any field-specific limit applies


class ProtocolError(Exception):
    """A request the protocol refuses as a whole (status 400/413/414) with a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_DECODED: dict[str, str] = {}  # encoded value -> decoded: page URLs, titles and dimensions repeat
_DECODED_MAX = 4096
_DECODED_VALUE_MAX = 512  # longer values are decoded every time: the cache stays < 4 MiB


def _decode(raw: str) -> str:
    # `+` is a space in form encoding; unquote replaces invalid UTF-8 (errors="replace").
    found = _DECODED.get(raw)
    if found is not None:
        return found
    value = raw.replace("+", " ") if "+" in raw else raw
    if "%" in value:
        if value.isascii():  # what unquote does for an ASCII string, without its regex split
            value = unquote_to_bytes(value).decode("utf-8", "replace")
        else:
            value = unquote(value, errors="replace")
    if len(raw) <= _DECODED_VALUE_MAX:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[raw] = value
    return value


def _pairs(qs: str, pairs: list[str]) -> dict[str, str]:
    """`name=value` strings (the `&`-separated `pairs` of `qs`) to a dict, the last value
    winning; a pair without `=` has ''."""
    found: dict[str, str] = {}
    for pair in pairs:
        i = pair.find("=")
        if i < 0:
            found[pair] = ""
        else:
            found[pair[:i]] = pair[i + 1 :]
    return found


def parse_qs(qs: str) -> dict[str, str]:
    """The pairs of `qs` as a new dict. Within one source the last value wins (as PHP does).

    Keys like `a[]` are kept as they are; nothing here interprets them.
    """
    if not qs:
        return {}
    pairs = qs.split("&", MAX_PARAMS)
    if len(pairs) > MAX_PARAMS:
        del pairs[MAX_PARAMS:]
    # The pairs straight into a dict at C speed, then only the encoded ones decoded.
    found = _pairs(qs if len(pairs) < MAX_PARAMS else "&".join(pairs), pairs)
    if "%" in qs or "+" in qs:
        names = "".join(found)
        if "%" in names or "+" in names:
            for key, value in list(found.items()):
                if "%" in key or "+" in key:
                    del found[key]
                    found[_decode(key)] = _decode(value)
                elif "%" in value or "+" in value:
                    found[key] = _decode(value)
        else:  # the common case: only some values are encoded
            for key in [k for k, v in found.items() if "%" in v or "+" in v]:
                found[key] = _decode(found[key])
    if "" in found:
        del found[""]
    if len(qs) > MAX_VALUE_CHARS:
        for key, value in found.items():
            if len(value) > MAX_VALUE_CHARS:
                found[key] = value[:MAX_VALUE_CHARS]
    return found


def parse_qs_into(out: dict[str, str], qs: str, *, overwrite: bool = True) -> None:
    """Add the pairs of `qs` to `out` (see `parse_qs`).

    `overwrite=False` keeps keys already in `out`: the query string wins over the form body.
    """
    found = parse_qs(qs)
    if overwrite or not out:
        out.update(found)
    else:
        for key, value in found.items():
            out.setdefault(key, value)


def bytes_to_str(raw: bytes) -> str:
    """Wire bytes to text: UTF-8, invalid sequences replaced, never raised."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")


def request_params(query: bytes, body: bytes) -> dict[str, str]:
    """Parameters of a GET (query string) or a form POST (body, URL parameters win)."""
    params = parse_qs(bytes_to_str(query)) if query else {}
    if body:
        parse_qs_into(params, bytes_to_str(body), overwrite=False)
    return params


def looks_like_bulk(body: bytes) -> bool:
    """A JSON object body is a bulk request (Matomo looks for `"requests"` in the raw body)."""
    return body[:1] == b"{" or body.lstrip()[:1] == b"{"


@dataclass
class BulkRequest:
    """The items of a bulk body: parameter dicts, or None for an item that was skipped.

    `parse_bulk_envelope` leaves `items` empty and the items as sent in `raw_items`, for the
    caller to parse one by one with `bulk_item` (a 1,000-item request need not hold 1,000
    parameter dicts at once)."""

    items: list[dict[str, str] | None] = field(default_factory=list)
    raw_items: list[Any] = field(default_factory=list)
    token_auth: str = ""
    send_image: bool = True


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS]
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return None
    # Nested values (e.g. `_cvar` sent as an object): keep their JSON text.
    return orjson.dumps(value).decode()[:MAX_VALUE_CHARS]


def _falsy(value: Any) -> bool:
    return value in (False, 0, "0", "", "false", None)


def parse_bulk(body: bytes) -> BulkRequest:
    """Parse a bulk body; ProtocolError(400) for a malformed one."""
    bulk = parse_bulk_envelope(body)
    bulk.items = [bulk_item(item) for item in bulk.raw_items]
    bulk.raw_items = []
    return bulk


def parse_bulk_envelope(body: bytes) -> BulkRequest:
    """Check a bulk body and read its options; the items stay unparsed in `raw_items`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", errors="replace")  # orjson refuses invalid UTF-8: replaced, as everywhere
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if "depth" not in str(exc):
                raise ProtocolError(400, f"malformed bulk body: invalid JSON at position {exc.pos}") from None
            # Some item is nested deeper than orjson reads: each item is read alone, so the others
            # are still judged (the too-deep one is an invalid item, not a refused request).
            doc = _envelope_item_by_item(text)
    if not isinstance(doc, dict):
        raise ProtocolError(400, "malformed bulk body: expected a JSON object")
    requests = doc.get("requests")
    if not isinstance(requests, list):
        raise ProtocolError(400, 'malformed bulk body: "requests" must be an array')
    if len(requests) > MAX_BULK_ITEMS:
        raise ProtocolError(400, f"too many bulk items: {len(requests)} > {MAX_BULK_ITEMS}")
    bulk = BulkRequest()
    token = doc.get("token_auth")
    if isinstance(token, str):
        bulk.token_auth = token
    if "send_image" in doc and _falsy(doc["send_image"]):
        bulk.send_image = False
    bulk.raw_items = requests
    return bulk


UNREADABLE_ITEM: dict[str, Any] = {}  # an item that cannot be read: no idsite, so an invalid item


def _envelope_item_by_item(text: str) -> Any:
    """A bulk body whose items are parsed one at a time: its top-level members and the items of
    its `requests` are split as raw JSON texts (strings and nesting skipped over), then each is
    read by itself; one that cannot be read becomes UNREADABLE_ITEM."""
    start = text.find("{")
    if start < 0:
        raise ProtocolError(400, "malformed bulk body: expected a JSON object")
    doc: dict[str, Any] = {}
    for member in _members(text, start):
        key_end = _string_end(member, 0)
        try:
            key = orjson.loads(member[:key_end])
        except orjson.JSONDecodeError:
            raise ProtocolError(400, "malformed bulk body: invalid JSON (a key)") from None
        value = member[key_end:].lstrip().removeprefix(":").strip()
        if key == "requests" and value.startswith("["):
            items = []
            for raw in _members(value, 0):
                try:
                    items.append(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    items.append(UNREADABLE_ITEM)
            doc[key] = items
        else:
            try:
                doc[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise ProtocolError(400, f"malformed bulk body: invalid JSON (the value of {key!r})") from None
    return doc


def _string_end(text: str, i: int) -> int:
    """The index after the JSON string starting at text[i] (a quote)."""
    if text[i:i + 1] != '"':
        raise ProtocolError(400, "malformed bulk body: invalid JSON (a key must be a string)")
    escaped = False
    for j in range(i + 1, len(text)):
        c = text[j]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            return j + 1
    raise ProtocolError(400, "malformed bulk body: invalid JSON (an unterminated string)")


def _members(text: str, start: int) -> list[str]:
    """The raw texts of the members of the JSON object or array opening at text[start], split at
    its own commas."""
    out: list[str] = []
    depth, begin, in_string, escaped = 0, start + 1, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                last = text[begin:i].strip()
                if last:
                    out.append(last)
                return out
        elif c == "," and depth == 1:
            out.append(text[begin:i].strip())
            begin = i + 1
    raise ProtocolError(400, "malformed bulk body: invalid JSON (unterminated)")


def bulk_item(item: Any) -> dict[str, str] | None:
    """One bulk item (`"?a=b&..."` or an object) → its parameters; None for one to skip."""
    if isinstance(item, str):
        _, sep, query = item.partition("?")
        if not sep:  # Matomo keeps only the query part of a URL: none, nothing to track
            return None
        return parse_qs(query)
    params: dict[str, str] = {}
    if isinstance(item, dict):
        for k, v in list(item.items())[:MAX_PARAMS]:
            value = _scalar(v)
            if value is not None:
                params[str(k)] = value
        return params
    return None
