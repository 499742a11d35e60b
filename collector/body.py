"""Reading a request's body under a size cap: the tracking route (collector.app) and the validation
route (collector.validation) read it the same way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any


class ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


async def read_body(receive: Callable[[], Awaitable[MutableMapping[str, Any]]], limit: int) -> bytes | None:
    """The whole request body, or None as soon as it exceeds `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
