"""The read-only ClickHouse-HTTP endpoint of embedded mode, served inside the loader process:
the subset of ClickHouse's HTTP interface clickhouse-connect and Superset use, over chDB readers."""

from __future__ import annotations

import base64
import bisect
import contextlib
import hmac
import json
import logging
import queue
import re
import secrets
import select
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aggregator import sqlguard
from dnma.settings import Settings

log = logging.getLogger("dnma.endpoint")

# Every query we run starts with this comment, so KILL QUERY can find it in system.processes.
MARKER = "/* dnma-endpoint "
MAX_BODY = 1024 * 1024  # ClickHouse's own max_query_size is 256 KiB; reads need no more.
AUTH_FAILED = 516
TIMEOUT_EXCEEDED = 159
TOO_MANY_ROWS_OR_BYTES = 396
# Named in the result-size error, whether the engine (max_result_bytes) or _Stream stopped the query.
RESULT_LIMIT = "Limit for result exceeded"
RESULT_CAP = f"{RESULT_LIMIT} (reader_max_result_bytes, DNMA_READER_MAX_RESULT_BYTES)"
UNSUPPORTED_METHOD = 1
# What the endpoint serves: GET /ping (and / without a query) answer "Ok."; GET or POST / runs a query.
PATHS = ("/", "/ping")
# Never 429/503/504: clickhouse-connect retries those.
HTTP_STATUS = {AUTH_FAILED: 403, sqlguard.SYNTAX_ERROR: 400, 60: 404, TIMEOUT_EXCEEDED: 408}
# ClickHouse's own HTTP status of an exception, by error name (its Server/HTTP/exceptionCodeToHTTPStatus):
# the codes are looked up by name in the engine at start (`_http_statuses`); any other error is a 500.
STATUS_OF_ERROR = {
    401: ("REQUIRED_PASSWORD",),
    403: ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"),
    400: ("BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
          "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
          "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
          "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
          "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST", "TOO_BIG_AST",
          "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
          "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
    404: ("UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
          "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
          "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"),
    413: ("QUERY_IS_TOO_LARGE",),
    501: ("NOT_IMPLEMENTED",),
    503: ("SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"),
    411: ("HTTP_LENGTH_REQUIRED",),
    408: ("TIMEOUT_EXCEEDED",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
}
EXCEPTION_NAMES = {AUTH_FAILED: "AUTHENTICATION_FAILED", sqlguard.SYNTAX_ERROR: "SYNTAX_ERROR", sqlguard.READONLY: "READONLY",
                   sqlguard.ACCESS_DENIED: "ACCESS_DENIED",
                   TOO_MANY_ROWS_OR_BYTES: "TOO_MANY_ROWS_OR_BYTES"}
# An answer up to this size is sent whole, with a Content-Length; a larger one streams in HTTP
# chunks as chDB hands them out, so the loader holds one block of a result at a time.
BUFFERED_RESULT = 1024 * 1024
_FORMAT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CODE = re.compile(r"Code: (\d+)\.")
_UNSAFE_HEADER_CHARS = re.compile(r"[^\x20-\x7e]")


@dataclass
class _Readers:
    """The pool: one readonly chDB connection per concurrency slot, plus one to kill queries."""

    conns: queue.Queue[Any]
    killer: Any
    killer_lock: threading.Lock
    executor: ThreadPoolExecutor
    denied: frozenset[str]
    default_database: str
    timezone: str
    version: str
    all_conns: list[Any] = field(default_factory=list)
    # Prefix of this endpoint's query tags: stop() kills its own queries, not another endpoint's.
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def kill(self, tag: str) -> None:
        with self.killer_lock:
            self.killer.query(f"KILL QUERY WHERE startsWith(query, '{MARKER}{tag} */') ASYNC", "TSVRaw")


def _open_reader(chdb_path: str, settings: Settings) -> Any:
    import chdb

    conn = chdb.connect(chdb_path)
    conn.query(f"SET max_threads = {int(settings.reader_max_threads)}")
    conn.query(f"SET max_execution_time = {int(settings.reader_max_execution_time)}")
    conn.query(f"SET max_memory_usage = {int(settings.reader_max_memory_usage)}")
    # chDB does not apply these to the answer it formats (the endpoint's own cap in _Stream does);
    # set anyway, so the engine enforces them wherever it does.
    conn.query(f"SET max_result_bytes = {int(settings.reader_max_result_bytes)}")
    conn.query("SET result_overflow_mode = 'throw'")
    conn.query("SET allow_introspection_functions = 0")  # chDB's default is 1; the guard refuses them too
    # Last: readonly=1 then forbids changing any setting, and system.settings reports it, so
    # clickhouse-connect stops sending settings from the handshake on.
    conn.query("SET readonly = 1")
    return conn


def _open_readers(settings: Settings, chdb_path: str) -> _Readers:
    slots = max(1, int(settings.reader_max_concurrency))
    conns: queue.Queue[Any] = queue.Queue()
    opened = [_open_reader(chdb_path, settings) for _ in range(slots)]
    for conn in opened:
        conns.put(conn)
    killer = _open_reader(chdb_path, settings)  # KILL QUERY works under readonly in chDB
    opened.append(killer)
    HTTP_STATUS.update(_http_statuses(killer))
    info = killer.query("SELECT version(), timezone(), currentDatabase()", "TSVRaw").bytes().decode()
    version, timezone, database = info.rstrip("\n").split("\t")
    return _Readers(
        conns=conns,
        killer=killer,
        killer_lock=threading.Lock(),
        executor=ThreadPoolExecutor(max_workers=slots, thread_name_prefix="dnma-endpoint-query"),
        denied=sqlguard.denied_functions(killer),
        default_database=database,
        timezone=timezone,
        version=version,
        all_conns=opened,
    )


def _http_statuses(conn: Any) -> dict[int, int]:
    """Error code -> HTTP status for the names of STATUS_OF_ERROR, codes as this engine numbers them."""
    status_of = {name: status for status, names in STATUS_OF_ERROR.items() for name in names}
    rows = conn.query("SELECT number, errorCodeToName(toInt32(number)) FROM numbers(2000)", "TSVRaw").bytes().decode()
    out = {}
    for line in rows.splitlines():
        code, _, name = line.partition("\t")
        if name in status_of:
            out[int(code)] = status_of[name]
    return out


class _Reaper:
    """The deadlines of the connections' request heads and bodies, and the one thread that shuts a
    connection down once its deadline passed: a client trickling a byte now and then cannot hold a
    connection slot (and its thread) past the deadline, whatever the per-read socket timeout."""

    def __init__(self) -> None:
        self._due: dict[socket.socket, float] = {}
        self._cut: set[socket.socket] = set()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dnma-endpoint-reaper", daemon=True)
        self._thread.start()

    def arm(self, sock: socket.socket, deadline: float) -> None:
        """Shut `sock` down at `deadline` (time.monotonic()) unless disarmed before."""
        with self._changed:
            self._due[sock] = deadline
            self._changed.notify()

    def disarm(self, sock: socket.socket) -> bool:
        """Drop `sock`'s deadline; True if it had passed and the connection was cut (what was read
        since it was armed may be partial: do not act on it)."""
        with self._changed:
            self._due.pop(sock, None)
            cut = sock in self._cut
            self._cut.discard(sock)
            return cut

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                now = time.monotonic()
                for sock in [s for s, due in self._due.items() if due <= now]:
                    del self._due[sock]
                    self._cut.add(sock)
                    # The handler's blocked read returns end-of-file; its thread then ends.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                wait = min(self._due.values(), default=now + 60) - now
                self._changed.wait(timeout=max(wait, 0.01))


# Errors that are the endpoint refusing what it was asked (its rules and limits), by ClickHouse
# code, as `refusals` names them; any other error is a failed query (syntax, unknown table, ...).
REFUSALS = {AUTH_FAILED: "auth", 164: "readonly", 497: "access_denied", TOO_MANY_ROWS_OR_BYTES: "result_too_large",
            TIMEOUT_EXCEEDED: "timeout", 241: "memory_limit"}
QUERY_OUTCOMES = ("ok", "refused", "failed", "client_gone")
QUERY_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class EndpointStats:
    """What the endpoint answered, for /metrics (the loader writes it in its status file): every
    5xx by route (each of PATHS present at 0, "*" for connections refused before any route), the
    requests answered, the queries by outcome, the refusals by reason (each present at 0), the
    queries' durations (a histogram: counts per bucket of QUERY_SECONDS_BUCKETS, not cumulative,
    the last one past the largest bound) and the result bytes sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.server_errors = dict.fromkeys((*PATHS, "*"), 0)
        self.requests = 0
        self.queries = dict.fromkeys(QUERY_OUTCOMES, 0)
        self.refusals = dict.fromkeys((*REFUSALS.values(), "too_many_connections"), 0)
        self.query_buckets = [0] * (len(QUERY_SECONDS_BUCKETS) + 1)
        self.query_seconds = 0.0
        self.result_bytes = 0

    def answered(self, route: str, status: int) -> None:
        with self._lock:
            self.requests += 1
            if status >= 500:
                key = route if route in self.server_errors else "*"
                self.server_errors[key] += 1

    def refused(self, reason: str) -> None:
        with self._lock:
            self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def outcome_of(self, code: int) -> str:
        """"refused" (and the refusal counted) for a code of REFUSALS, else "failed"."""
        reason = REFUSALS.get(code)
        if reason is None:
            return "failed"
        self.refused(reason)
        return "refused"

    def query_done(self, outcome: str, seconds: float, result_bytes: int) -> None:
        with self._lock:
            self.queries[outcome] = self.queries.get(outcome, 0) + 1
            self.query_buckets[bisect.bisect_left(QUERY_SECONDS_BUCKETS, seconds)] += 1
            self.query_seconds += seconds
            self.result_bytes += result_bytes

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "server_errors": dict(self.server_errors),
                    "queries": dict(self.queries), "refusals": dict(self.refusals),
                    "query_seconds": {"le": list(QUERY_SECONDS_BUCKETS), "counts": list(self.query_buckets),
                                      "sum": round(self.query_seconds, 6)},
                    "result_bytes": self.result_bytes}


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` at once: a connection past them is
    answered 503 and closed at once, so idle or stalled clients cannot pile threads into the loader.
    Its `reaper` bounds the time each request's head and body take to arrive."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.reaper = _Reaper()
        self.stats = EndpointStats()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection the reaper cut, or a client gone, fails its next write: nothing to report.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.reaper.stop()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: 35\r\nConnection: close\r\n\r\ntoo many connections, retry later\r\n")
            self.stats.answered("*", 503)
            self.stats.refused("too_many_connections")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class EndpointHandle:
    """A running endpoint; `stop()` closes the socket, kills what still runs, closes readers."""

    def __init__(self, server: _BoundedServer, thread: threading.Thread, readers: _Readers) -> None:
        self.port: int = int(server.server_address[1])
        self.stats = server.stats
        self._server = server
        self._thread = thread
        self._readers = readers

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            with self._readers.killer_lock:
                prefix = f"{MARKER}{self._readers.instance}-"
                self._readers.killer.query(f"KILL QUERY WHERE startsWith(query, '{prefix}') ASYNC", "TSVRaw")
        except Exception:  # best effort: the process may be shutting down
            log.exception("endpoint_stop_kill_failed")
        self._readers.executor.shutdown(wait=True)
        self._thread.join(timeout=5)
        for conn in self._readers.all_conns:
            try:
                conn.close()
            except Exception:
                log.exception("endpoint_reader_close_failed")


def start_endpoint(settings: Settings, chdb_path: str) -> EndpointHandle:
    """Serve the endpoint from a background thread; returns once listening."""
    if not settings.ch_http_password:
        raise ValueError("DNMA_CH_HTTP_PASSWORD is empty: the read-only endpoint refuses to start without a password")
    readers = _open_readers(settings, chdb_path)
    handler = type("BoundHandler", (_Handler,), {"settings": settings, "readers": readers})
    server = _BoundedServer((settings.ch_http_host, settings.ch_http_port), handler, settings.reader_max_connections)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dnma-endpoint", daemon=True)
    thread.start()
    handle = EndpointHandle(server, thread, readers)
    log.info("endpoint_listening", extra={"host": settings.ch_http_host, "port": handle.port})
    return handle


class _Error(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _BadRequest(_Error):
    """A request ClickHouse itself would not read (its framing is wrong): HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(UNSUPPORTED_METHOD, message)


def _error_from(exc: BaseException) -> _Error:
    if isinstance(exc, sqlguard.Refused):
        return _Error(exc.code, exc.message)
    text = str(exc).strip()
    m = _CODE.search(text)
    if not m:
        return _Error(1001, text or type(exc).__name__)
    code = int(m.group(1))
    if code == TOO_MANY_ROWS_OR_BYTES and RESULT_CAP not in text:
        text = text.replace(RESULT_LIMIT, RESULT_CAP, 1)
    return _Error(code, text)


def _content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if f.startswith(("pretty", "vertical", "markdown", "values")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def _decompress(encoding: str, body: bytes) -> bytes:
    """Undo the request's Content-Encoding (clickhouse-connect lz4-compresses insert bodies),
    never producing more than MAX_BODY + 1 bytes, so a small bomb stays small."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "deflate"):
            import zlib

            wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
            return zlib.decompressobj(wbits).decompress(body, MAX_BODY + 1)
        if encoding == "lz4":
            import lz4.frame

            return bytes(lz4.frame.LZ4FrameDecompressor().decompress(body, max_length=MAX_BODY + 1))
    except Exception as exc:
        raise _BadRequest(f"Cannot decompress the request body ({encoding}): {exc}") from exc
    raise _BadRequest(f"Unsupported Content-Encoding {encoding}: use gzip, deflate, lz4 or none")


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server_version = "dnma-endpoint"
    # Each read or write of the socket: bounds a client that stops reading its answer. The time a
    # request's head and body take in all is bounded by the server's reaper (reader_*_timeout_s).
    timeout = 120
    settings: Settings
    readers: _Readers
    server: _BoundedServer
    _opened: float
    _served: int
    _outcome: str  # the query's, for EndpointStats: ok, refused, failed, client_gone
    _result_bytes: int

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Access lines would carry query strings (personal data may sit in SQL literals).
        return

    # --- deadlines
    def setup(self) -> None:
        super().setup()
        self._opened = time.monotonic()
        self._served = 0

    def handle_one_request(self) -> None:
        """One request, whose line and headers must arrive within reader_header_timeout_s of the
        connection's opening (first request) or of their first byte (next ones, after at most
        reader_keep_alive_timeout_s of idle keep-alive)."""
        settings = self.settings
        if self._served:
            if not self._next_request_begins(settings.reader_keep_alive_timeout_s):
                self.close_connection = True
                return
            started = time.monotonic()
        else:
            started = self._opened
        self._served += 1
        self.server.reaper.arm(self.connection, started + settings.reader_header_timeout_s)
        try:
            super().handle_one_request()
        finally:
            if self.server.reaper.disarm(self.connection):
                self.close_connection = True

    def _next_request_begins(self, idle_timeout: float) -> bool:
        """Wait up to `idle_timeout` for the next request's first byte (or find it buffered)."""
        self.connection.settimeout(idle_timeout)
        try:
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]  # a BufferedReader
        except OSError:  # the timeout included
            return False
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.timeout)

    def parse_request(self) -> bool:
        """The request line and headers, read by the stdlib; then the body's deadline is armed (a
        POST's), or none (the query runs unbounded by them)."""
        ok = super().parse_request()
        if self.server.reaper.disarm(self.connection):  # cut: the head read may be partial
            self.close_connection = True
            return False
        if not ok:
            return False
        if self.command not in ("GET", "POST"):
            # The stdlib would answer 501: a method this endpoint never serves is the client's error.
            self.close_connection = True
            self._send(405, b"Only GET and POST are served\n", "text/plain; charset=UTF-8", {"Allow": "GET, POST"})
            return False
        if self.command == "POST":
            self.server.reaper.arm(self.connection, time.monotonic() + self.settings.reader_body_timeout_s)
        return True

    # --- routes
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path in PATHS and not params.get("query"):
            self._send(200, b"Ok.\n", "text/plain; charset=UTF-8")
        elif url.path == "/":
            self._serve_query(params, b"")
        else:
            self._send_error(_Error(1001, f"There is no handle {url.path}"), status=404)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if not self._authenticated(params):
            # Before reading a byte of the body: a caller without credentials never makes the
            # loader (the one owner of chDB) read or hold what it sends.
            self.close_connection = True
            self._send_auth_failed()
            return
        refused: _Error | None = None
        try:
            raw = self._read_body()
        except _BadRequest as err:
            raw, refused = b"", err
        if self.server.reaper.disarm(self.connection):  # cut: the body read is partial
            self.close_connection = True
            return
        try:
            if refused is not None:
                raise refused
            body = _decompress(self.headers.get("Content-Encoding", ""), raw)
        except _Error as err:
            self.close_connection = True
            self._send_error(err, status=400)
            return
        if url.path != "/":
            self._send_error(_Error(1001, f"There is no handle {url.path}"), status=404)
            return
        self._serve_query(params, body)

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` invites the body: only a caller with credentials gets the
        invitation; the others get the authentication error at once, and nothing is read."""
        if not self._authenticated(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))):
            self.close_connection = True
            self._send_auth_failed()
            return False
        return super().handle_expect_100()

    # --- request steps
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isascii() or not raw.isdigit():  # "-1" would read until the client closes
            raise _BadRequest(f"Invalid Content-Length {raw[:40]!r}: a number of bytes >= 0")
        length = int(raw)
        if length > MAX_BODY:
            # Read what the guard needs, then drop the connection instead of draining it.
            self.close_connection = True
            return self.rfile.read(MAX_BODY + 1)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(66).split(b";")[0].strip()
            if not line or not all(c in b"0123456789abcdefABCDEF" for c in line) or len(line) > 16:
                raise _BadRequest(f"Invalid chunk size {line[:40]!r}: hexadecimal digits")
            size = int(line, 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            if len(out) + size > MAX_BODY:
                self.close_connection = True
                out += self.rfile.read(MAX_BODY + 1 - len(out))
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _authenticated(self, params: dict[str, str]) -> bool:
        user, password = params.get("user"), params.get("password")
        if self.headers.get("X-ClickHouse-User") is not None:
            user, password = self.headers.get("X-ClickHouse-User"), self.headers.get("X-ClickHouse-Key", "")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                return False
        if user is None or password is None:
            return False
        ok_user = hmac.compare_digest(user.encode(), self.settings.ch_http_user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.settings.ch_http_password.encode())
        return ok_user and ok_password

    def _send_auth_failed(self) -> None:
        self.server.stats.refused("auth")
        user = self.settings.ch_http_user
        self._send_error(_Error(AUTH_FAILED, f"{user}: Authentication failed: password is incorrect, or there is no user with such name"))

    def _serve_query(self, params: dict[str, str], body: bytes) -> None:
        if not self._authenticated(params):
            self._send_auth_failed()
            return
        query_id = params.get("query_id") or str(uuid.uuid4())
        stats = self.server.stats
        started = time.monotonic()
        self._outcome, self._result_bytes = "ok", 0
        try:
            sql = self._sql_text(params, body)
            self._run(params, sql, query_id)
        except _Error as err:
            # The code only: SQL text may hold personal data.
            log.info("endpoint_query_failed", extra={"code": err.code, "query_id": query_id})
            self._outcome = stats.outcome_of(err.code)
            self._send_error(err, query_id=query_id)
        except _ClientGone:
            log.info("endpoint_client_gone", extra={"query_id": query_id})
            self._outcome = "client_gone"
            self.close_connection = True
        finally:
            stats.query_done(self._outcome, time.monotonic() - started, self._result_bytes)

    def _sql_text(self, params: dict[str, str], body: bytes) -> str:
        raw = (params.get("query", "").encode() + (b"\n" if params.get("query") and body else b"") + body)
        too_big = len(raw) > MAX_BODY
        try:
            sql = raw.decode("utf-8")
            bad_utf8 = False
        except UnicodeDecodeError:
            # INSERT … FORMAT Native\n<binary>: decode for classification only, it gets refused.
            sql, bad_utf8 = raw.decode("utf-8", "replace"), True
        if not sql.strip():
            raise _Error(sqlguard.SYNTAX_ERROR, "Empty query")
        if too_big or bad_utf8:
            why = "Max query size exceeded" if too_big else "Query is not valid UTF-8"
            # clickhouse-connect puts an INSERT in `query` and its data in the body; a bare body
            # carries its statement on the first line.
            self._refuse_unreadable([params.get("query", ""), sql.split("\n", 1)[0], sql], why)
        return sql

    def _refuse_unreadable(self, candidates: list[str], why: str) -> None:
        """Answer 164 if the statement is a write, else 62: this body is refused either way."""
        conn = self.readers.conns.get()
        try:
            kinds = {getattr(conn._conn.classify_query(c)["query_class"], "name", "") for c in candidates if c.strip()}
        finally:
            self.readers.conns.put(conn)
        if kinds - {"READ_ONLY", "UNKNOWN"}:
            raise _Error(sqlguard.READONLY, "Cannot execute query in readonly mode: this endpoint only runs reads")
        raise _Error(sqlguard.SYNTAX_ERROR, why)

    def _run(self, params: dict[str, str], sql: str, query_id: str) -> None:
        """Check `sql`, run it on a reader slot and answer it. An error before the answer's first
        byte raises _Error (answered with its own status); after it, it ends the answer's body."""
        default_format = params.get("default_format") or "TabSeparated"
        if not _FORMAT_NAME.match(default_format):
            raise _Error(73, f"Unknown format {default_format}")
        query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        tag = f"{self.readers.instance}-{uuid.uuid4().hex}"
        marked = f"{MARKER}{tag} */\n{sql}"
        conn = self._acquire()
        try:
            database = params.get("database")
            if database:
                conn.query(f"USE {_quote_identifier(database)}")
            try:
                read = sqlguard.check(conn, marked, query_params, self.readers.denied, database or self.readers.default_database)
                fmt = read.format or default_format
                stream = _Stream(self, conn, tag, self.settings.reader_max_result_bytes)
                try:
                    stream.start(marked, default_format, query_params, whole=not read.select)
                    self._answer(stream, fmt, query_id)
                finally:
                    self._result_bytes = stream.sent
                    stream.close()  # before the slot's next query
            finally:
                if database:
                    conn.query(f"USE {_quote_identifier(self.readers.default_database)}")
        except (_Error, _ClientGone):
            raise
        except Exception as exc:
            raise _error_from(exc) from exc
        finally:
            self.readers.conns.put(conn)

    def _answer(self, stream: _Stream, fmt: str, query_id: str) -> None:
        """Send the result: whole if it ends within BUFFERED_RESULT, else in HTTP chunks, one chDB
        chunk at a time. An error once the status line is out is written ClickHouse's way (a
        tagged block, X-ClickHouse-Exception-Tag) and the chunked body is left unterminated, so
        every client sees a failed answer, not a short one."""
        pending: list[bytes] = []
        size = 0
        while size <= BUFFERED_RESULT:
            chunk = stream.next()  # an error here is still answered with its own status
            if chunk is None:
                self._send(200, b"".join(pending), _content_type(fmt), self._result_headers(stream, fmt, query_id))
                return
            pending.append(chunk)
            size += len(chunk)
        exception_tag = secrets.token_hex(4)
        headers = self._result_headers(stream, fmt, query_id) | {"X-ClickHouse-Exception-Tag": exception_tag}
        self.server.stats.answered(urlsplit(self.path).path, 200)
        try:
            self.send_response(200)
            self.send_header("Content-Type", _content_type(fmt))
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-ClickHouse-Server-Display-Name", "dnma-endpoint")
            for name, value in headers.items():
                self.send_header(name, _header_value(value))
            self.end_headers()
            for chunk in pending:
                self._write_chunk(chunk)
            del pending
            try:
                while (chunk := stream.next()) is not None:
                    self._write_chunk(chunk)
            except _Error as err:
                log.info("endpoint_query_failed_midstream", extra={"code": err.code, "query_id": query_id})
                self._outcome = self.server.stats.outcome_of(err.code)
                self.close_connection = True
                self._write_chunk(_exception_block(_error_text(err), exception_tag))
                self.wfile.flush()
                return
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client left, or stopped reading for `timeout` seconds
            log.info("endpoint_client_gone", extra={"query_id": query_id})
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n" % len(data))
        self.wfile.write(data)
        self.wfile.write(b"\r\n")

    def _result_headers(self, stream: _Stream, fmt: str, query_id: str) -> dict[str, str]:
        summary = {
            "read_rows": str(stream.read_rows),
            "read_bytes": str(stream.read_bytes),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(stream.read_rows),
            "result_rows": str(stream.result_rows),
            "result_bytes": str(stream.sent),
            "elapsed_ns": str(time.monotonic_ns() - stream.started),
        }
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": self.readers.timezone,
            "X-ClickHouse-Summary": json.dumps(summary),
        }

    def _acquire(self) -> Any:
        """A reader slot; excess requests wait (never 503), unless their client leaves."""
        while True:
            try:
                return self.readers.conns.get(timeout=0.2)
            except queue.Empty:
                if self._client_gone():
                    raise _ClientGone() from None

    def _wait(self, future: Future[Any], tag: str) -> Any:
        """The query's result; if the client hangs up meanwhile, kill the query first."""
        watching = True
        while True:
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                pass
            if watching:
                gone = self._client_gone()
                if gone is None:
                    watching = False  # pipelined bytes: cannot watch, just wait
                elif gone:
                    self.readers.kill(tag)
                    try:
                        future.result()
                    except Exception:  # the expected QUERY_WAS_CANCELLED
                        pass
                    raise _ClientGone()

    def _client_gone(self) -> bool | None:
        """True when the peer closed its side; None when it sent more bytes (cannot tell)."""
        sock: socket.socket = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return None if sock.recv(1, socket.MSG_PEEK) else True
        except (OSError, ValueError):
            return True

    # --- responses
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.server.stats.answered(urlsplit(self.path).path, status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-ClickHouse-Server-Display-Name", "dnma-endpoint")
            for name, value in (headers or {}).items():
                self.send_header(name, _header_value(value))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_error(self, err: _Error, status: int | None = None, query_id: str | None = None) -> None:
        text = _error_text(err)
        headers = {"X-ClickHouse-Exception-Code": str(err.code)}
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        code_status = HTTP_STATUS.get(err.code, 500)
        self._send(status or code_status, (text + "\n").encode(), "text/plain; charset=UTF-8", headers)


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class _Stream:
    """One query's result, fetched a chDB chunk at a time on the reader executor (so a client
    hanging up meanwhile still kills it), and cancelled once it passes `cap` bytes: chDB formats
    a whole result in memory, out of max_memory_usage's sight, when it is not streamed."""

    def __init__(self, handler: _Handler, conn: Any, tag: str, cap: int) -> None:
        self._handler = handler
        self._conn = conn
        self._tag = tag
        self._cap = cap
        self._raw: Any = None  # chDB's streaming handle
        self._whole: Any = None  # or the whole result of a statement chDB does not stream
        self._exhausted = False
        self.started = time.monotonic_ns()
        self.sent = 0
        self.result_rows = 0
        self.read_rows = 0
        self.read_bytes = 0

    def start(self, sql: str, fmt: str, params: dict[str, str], *, whole: bool) -> None:
        """Start the query; `whole` runs it to its end at once, for the statements chDB cannot
        stream (SHOW, DESCRIBE, EXISTS, EXPLAIN: answers about the schema, small)."""
        run = self._conn._conn.query if whole else self._conn._conn.send_query
        started = self._handler._wait(self._handler.readers.executor.submit(run, sql, fmt, params=params), self._tag)
        if whole:
            self._whole = started
        else:
            self._raw = started

    def next(self) -> bytes | None:
        """The next piece of the answer, None at its end; raises _Error past the cap or when the
        query fails."""
        if self._exhausted:
            return None
        if self._raw is None:
            result, self._whole, self._exhausted = self._whole, None, True
        else:
            fetch = self._handler.readers.executor.submit(self._conn._conn.streaming_fetch_result, self._raw)
            try:
                result = self._handler._wait(fetch, self._tag)
            except (_Error, _ClientGone):
                raise
            except Exception as exc:
                raise _error_from(exc) from exc
        size = result.size() if result is not None else 0
        if not size:
            self._exhausted = True
            return None
        self.result_rows += result.rows_read()
        self.read_rows += result.storage_rows_read()
        self.read_bytes += result.storage_bytes_read()
        if self.sent + size > self._cap:  # checked before the chunk is copied out of chDB
            self.close()
            raise _Error(TOO_MANY_ROWS_OR_BYTES, f"{RESULT_CAP}, max bytes: {_mib(self._cap)}, current bytes: {_mib(self.sent + size)}")
        self.sent += size
        data: bytes = result.bytes()
        return data

    def close(self) -> None:
        """Cancel what still runs; the slot's connection is then free for its next query."""
        if self._raw is not None and not self._exhausted:
            self._exhausted = True
            try:
                self._conn._conn.streaming_cancel_query(self._raw)
            except Exception:  # already failed or finished: nothing left to cancel
                log.debug("endpoint_stream_cancel_failed", exc_info=True)


def _header_value(value: str) -> str:
    """`value` fit for a header line: a client's query_id or format is echoed back, and a control
    or non-ASCII character in it would break the answer (or fail to encode)."""
    return _UNSAFE_HEADER_CHARS.sub("?", value)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.2f} MiB"


def _error_text(err: _Error) -> str:
    """ClickHouse's text of an error: `Code: N. DB::Exception: …. (NAME)`."""
    if err.message.startswith("Code: "):
        return err.message
    name = EXCEPTION_NAMES.get(err.code)
    return f"Code: {err.code}. DB::Exception: {err.message}." + (f" ({name})" if name else "")


def _exception_block(text: str, tag: str) -> bytes:
    """An error after the answer started, framed as ClickHouse (25.11+) does for the tag it
    announced in X-ClickHouse-Exception-Tag; clients without tag support find `Code: N.` at the
    end of the body."""
    message = text.rstrip("\n").encode()
    return b"__exception__\r\n%s\r\n%s\n%d %s\r\n__exception__\r\n" % (tag.encode(), message, len(message), tag.encode())
