"""One HTTP connection of the collector: uvicorn's httptools protocol plus the limits it lacks, a
deadline for a request's headers, progress for its body, a cap on its head, a bound on connections.

uvicorn only times a keep-alive connection between two requests: a client that opens a connection
and sends nothing, or sends its headers or body a byte at a time, holds it (and a file descriptor)
for ever, and httptools buffers a header of any size. `dnma serve` passes `GuardedHttpToolsProtocol`
as uvicorn's `http` class.

Per request the guard costs a few attribute writes and one clock read; its timer is armed at most
once per header timeout on a busy keep-alive connection: a deadline that moves is checked when the
timer fires, which re-arms it for what is left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
from typing import Any, NamedTuple

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from dnma.settings import get_settings

log = logging.getLogger("dnma.collector")

# What the connection is reading, hence which deadline runs.
_WAIT = 0  # nothing due: a request is being answered, or the connection idles between two (uvicorn's keep-alive timer)
_HEAD = 1  # a request line and headers: collector_header_timeout_s
_BODY = 2  # a body: collector_body_timeout_s per BODY_STEP bytes
_DONE = 3  # cut: what still arrives is discarded until the socket closes

BODY_STEP = 64 * 1024  # bytes a body must bring per body timeout
LINGER_S = 1.0  # after a 431, bytes are read and dropped this long so that the client can read the answer
FILES_RESERVE = 64  # file descriptors a worker keeps for itself (spool segments, metrics, logs, its reader client)


def _answer(status: bytes, text: bytes, *extra: bytes) -> bytes:
    return b"".join([
        b"HTTP/1.1 ", status, b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
        str(len(text)).encode(), b"\r\n", *(h + b"\r\n" for h in extra), b"connection: close\r\n\r\n", text,
    ])


_408 = _answer(b"408 Request Timeout", b"request headers not received in time\n")
_503 = _answer(b"503 Service Unavailable", b"too many open connections, retry later\n", b"retry-after: 5")


class Limits(NamedTuple):
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_connections: int
    answer_431: bytes


def connection_bound(wanted: int) -> int:
    """`wanted`, or fewer when the file limit leaves less room beside the worker's own files. A soft
    limit below what is wanted is first raised toward the hard one (inherited by the workers when
    `dnma serve` calls this before starting them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FILES_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft - FILES_RESERVE >= wanted:
        return wanted
    bound = max(1, soft - FILES_RESERVE)
    log.warning("collector_max_connections_lowered", extra={"fields": {"to": bound, "file_limit": soft}})
    return bound


@functools.cache
def limits() -> Limits:
    """This process's limits, from its settings (read once)."""
    s = get_settings()
    cap = s.collector_max_header_bytes
    shown = f"{cap // 1024} KiB" if cap % 1024 == 0 else f"{cap} bytes"
    return Limits(
        header_timeout=s.collector_header_timeout_s,
        body_timeout=s.collector_body_timeout_s,
        max_header_bytes=cap,
        max_connections=connection_bound(s.collector_max_connections),
        answer_431=_answer(b"431 Request Header Fields Too Large", f"request head larger than {shown}\n".encode()),
    )


_cut_counter: Any = None


CUT_REASONS = ("too_many_connections", "header_timeout", "body_timeout", "header_too_large")


def zero_cut_counters() -> Any:
    """The cut counter, each of CUT_REASONS present at 0 (called when the worker's metrics start)."""
    global _cut_counter
    if _cut_counter is None:
        from prometheus_client import Counter

        _cut_counter = Counter(
            "dnma_collector_connections_cut", "Connections the collector closed on one of its limits", ["reason"]
        )
        for reason in CUT_REASONS:
            _cut_counter.labels(reason)
    return _cut_counter


def _count_cut(reason: str) -> None:
    """Rare events (an attack or a broken client): a Prometheus increment each, no batching."""
    zero_cut_counters().labels(reason).inc()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the collector's connection limits (`limits()`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits()
        self._phase = _HEAD
        self._since = 0.0  # loop time the running deadline counts from
        self._head_bytes = 0  # bytes read since the last request ended: the next request's head
        self._head_tail = b""  # the head's last bytes read: its end may straddle two reads
        self._body_bytes = 0
        self._guard: asyncio.TimerHandle | None = None
        self._guard_at = 0.0

    # --- the connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Answered before the request is read: whatever it is, there is no room for it.
            _count_cut("too_many_connections")
            self._phase = _DONE
            transport.write(_503)
            transport.close()
            return
        self._since = self.loop.time()  # the first request's headers are due from the connection on
        self._arm(self._since + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _DONE
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase != _BODY:
            if phase == _DONE:
                return
            # httptools keeps a header's pieces until the header ends: count the head's bytes as
            # they come, before the parser sees them (a whole oversized head may come in one read),
            # and only up to the head's end when it is in this read (the body may follow).
            seen = self._head_tail + data
            end = seen.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._head_tail))
            self._head_tail = seen[-3:]
            if self._head_bytes > self.limits.max_header_bytes:
                if not self.transport.is_closing():  # not already answered 400 by uvicorn
                    self._refuse_head()
                return
        super().data_received(data)

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEAD:  # a request after the first: due from its first byte
            self._phase = _HEAD
            self._since = self.loop.time()
            self._arm(self._since + self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = _BODY
        self._since = self.loop.time()
        self._arm(self._since + self.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _WAIT
        self._head_bytes = self._body_bytes = 0
        self._head_tail = b""

    # --- the deadlines
    def _arm(self, at: float) -> None:
        """Make sure the timer fires by `at`; a later pending timer is replaced, an earlier one kept
        (it re-arms itself for what is left)."""
        guard = self._guard
        if guard is not None:
            if self._guard_at <= at:
                return
            guard.cancel()
        self._guard_at = at
        self._guard = self.loop.call_at(at, self._check)

    def _check(self) -> None:
        self._guard = None
        phase = self._phase
        if phase == _HEAD:
            deadline = self._since + self.limits.header_timeout
        elif phase == _BODY:
            deadline = self._since + self.limits.body_timeout * (1 + self._body_bytes // BODY_STEP)
        else:
            return
        if self.loop.time() < deadline:
            self._arm(deadline)
        elif phase == _HEAD:
            # Nothing sent at all (a browser's preconnect, say): closed as an idle connection is.
            self._cut("header_timeout", _408 if self._head_bytes else b"")
        else:
            self._cut("body_timeout", b"")

    def _idle(self) -> bool:
        """No response in flight: a raw answer written now cannot land inside another one."""
        return self.cycle is None or self.cycle.response_complete

    def _cut(self, reason: str, answer: bytes) -> None:
        if self.transport.is_closing():  # closed since the timer was set (uvicorn's 400, say)
            return
        _count_cut(reason)
        self._phase = _DONE
        if answer and self._idle():
            self.transport.write(answer)
        # A body cut mid-request: the application's receive() gets http.disconnect.
        self.transport.close()

    def _refuse_head(self) -> None:
        _count_cut("header_too_large")
        self._phase = _DONE
        if not self._idle():
            self.transport.close()
            return
        self.transport.write(self.limits.answer_431)
        # Closing a socket with unread bytes resets it, and the client may lose the answer: end
        # the write side, drop what still comes (data_received ignores it), close a moment later.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
