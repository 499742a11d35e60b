"""The collector's ASGI app: a raw ASGI hot path for /matomo.php and /piwik.php (GET, POST,
OPTIONS, bulk), delegating every other path to the FastAPI sub-app of `collector.api`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

from collector import incident, pipeline, quarantine, steps
from collector.body import ClientGone, read_body
from collector.context import PipelineContext
from collector.hit import DropReason, Hit
from collector.metrics import Tally
from collector.privacy import Pseudonymiser
from collector.protocol import (
    MAX_BODY_BYTES,
    MAX_URL_BYTES,
    BulkRequest,
    ProtocolError,
    bulk_item,
    looks_like_bulk,
    parse_bulk_envelope,
    request_params,
)
from collector.useragent import UAClassifier
from dnma import clock
from dnma.access import Access, Grant
from dnma.settings import Settings, get_settings
from dnma.spool import SpoolFull

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("dnma.collector")

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
TRACKING_PATHS = frozenset({"/matomo.php", "/piwik.php"})
TEXT_PAGE = (
    b"This is the DNMA tracking endpoint (Matomo tracking API compatible).\n"
    b"Send tracking requests here: GET or POST /matomo.php?idsite=...&rec=1 or a bulk JSON body.\n"
)
RETRY_AFTER_S = b"5"
# A bulk request is run through the pipeline in chunks of this many items, giving the event loop
# a turn between chunks: a 1,000-item request never holds it for more than one chunk's work.
BULK_CHUNK = 100
GC_YOUNG_THRESHOLD = 20_000  # allocations between two young-generation collections (see startup)

_GIF_LEN = str(len(GIF)).encode()
_CT_GIF = (b"content-type", b"image/gif")
_CT_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_CT_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_TK_N = (b"tk", b"N")
# The answer to nearly every hit, prebuilt (uvicorn only reads header lists).
_GIF_EXTRA = [_CT_GIF, (b"content-length", _GIF_LEN)]
_GET_GIF_HEADERS = [_NO_STORE, *_GIF_EXTRA]
_PREFLIGHT = [
    (b"access-control-allow-methods", b"GET, POST"),
    (b"access-control-allow-headers", b"*"),
]

Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class TrackingFault(Exception):
    """An unexpected error (`cause`) while a request's parameters were at hand: the log's
    sample of the request shows them (collector.incident)."""

    def __init__(self, cause: Exception, params: Mapping[str, str] | None, bulk_items: int | None = None) -> None:
        super().__init__("unexpected error in the tracking path")
        self.cause = cause  # also set as __cause__ below, but compiled code drops `raise ... from`
        self.params = params
        self.bulk_items = bulk_items


class Collector:
    """One per worker process. Owns the spool writer, the access registry (tokens, and the sites as
    sites.yaml says now) and the pipeline context (the sites it last took from the registry: a
    changed sites.yaml reaches it within seconds, see _follow_sites)."""

    def __init__(self, settings: Settings | None = None, *, api_methods: Mapping[str, Any] | None = None) -> None:
        """`api_methods`: Matomo API methods beyond the sites ones (name -> collector.api.ApiHandler),
        e.g. the reporting API's, which the command line wires in (collector never imports aggregator)."""
        self.settings = settings or get_settings()
        s = self.settings
        self.access = Access(s)
        self.sites = self.access.sites
        self.tally = Tally(steps.STEP_NAMES)
        self.ua = UAClassifier(s.ua_cache_size, self.tally)
        self.ctx = PipelineContext(
            sites=self.sites,
            access=self.access,
            honour_dnt_default=s.honour_dnt_default,
            ua=self.ua,
            pseudo=Pseudonymiser(s.uid_secret),
            tally=self.tally,
        )
        self.spool: Any = None  # dnma.spool.SpoolWriter once started
        self.started_at = time.time()
        self._fault = s.collector_fault_param  # tests only (Settings): a parameter that raises
        self._quarantine = s.quarantine_enabled  # refused requests kept (collector/quarantine.py)
        self.clock_offset = clock.configure(s.now)  # hits are timed on DNMA's clock (DNMA_NOW)
        self._flusher: asyncio.Task[None] | None = None
        from collector import debug, health, quality_routes
        from collector.debug import DebugRecorder

        # Records only while a /debug view is open; captures are kept debug_captures_keep_hours.
        self.debug = DebugRecorder(s.data_dir, self.clock_offset, s.debug_captures_keep_hours * 3600)
        from collector.api import create_api  # FastAPI: only for the slow paths

        routers = [health.build_router(self), quality_routes.build_router(s, access=self.access),
                   debug.build_router(self)]
        self.api = create_api(self, api_methods or {}, routers)  # counts the 5xx of its routes
        from collector.validation import VALIDATION_PATHS, Validator

        self.validation_paths = VALIDATION_PATHS
        self.validator = Validator(self)  # the tracking request judged, nothing stored
        self.tally.routes.update(TRACKING_PATHS | VALIDATION_PATHS)
        self.tally.drop_reasons = [str(reason) for reason in DropReason]

    # --- ASGI entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] in TRACKING_PATHS:
                await self.track(scope, receive, send)
            elif scope["path"] in self.validation_paths:
                await self.validator(scope, receive, send)
            else:
                await self.api(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.api(scope, receive, send)

    # --- lifecycle
    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("collector_start_failed", extra={"fields": {"error": type(exc).__name__}})
                    await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                log.info("collector_stopped", extra={"fields": {"reason": _stop_reason()}})
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        from dnma.spool import SpoolWriter

        s = self.settings
        # device-detector loads ≈1.4 s of regexes on its first parses: pay it before serving.
        await asyncio.get_running_loop().run_in_executor(None, self.ua.warm)
        self.spool = SpoolWriter(
            s.resolved_spool_dir,
            max_bytes=s.spool_max_bytes,
            segment_bytes=s.spool_segment_bytes,
            commit_interval_ms=s.spool_commit_interval_ms,
        )
        await self.spool.start()
        self._flusher = asyncio.create_task(self._flush_metrics(), name="metrics-flush")
        # Everything loaded so far (device-detector's regexes, FastAPI, the sites) lives as long as
        # the worker: out of the cyclic GC's sight, a collection only walks the requests' objects.
        gc.collect()
        gc.freeze()
        # A request allocates a few hundred tracked objects, nearly all freed by reference
        # counting; at the default threshold (700) a young collection runs every few requests and
        # walks the in-flight requests' objects each time (its cost: bench/README.md).
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 50)
        # The spool's fsync thread hands its result back through the GIL: with the default 5 ms
        # switch interval a busy event loop makes every group commit wait up to 5 ms for it.
        sys.setswitchinterval(0.0005)
        log.info("collector_ready", extra={"fields": {"sites": len(self.sites.all())}})

    async def shutdown(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.tally.flush()
        if self.spool is not None:
            await self.spool.close()

    async def _flush_metrics(self) -> None:
        jumps = clock.JumpWatch()
        while True:
            await asyncio.sleep(1.0)
            try:
                self.tally.flush()
            except Exception:  # a metrics hiccup must never stop the worker
                log.exception("metrics_flush_failed")
            self._follow_clock(jumps)
            self._follow_sites()

    def _follow_sites(self) -> None:
        """Once a second, off the hot path: a sites.yaml the registry re-read (a site added or changed by
        `dnma sites`, at most RELOAD_CHECK_S after the write) replaces the pipeline's sites."""
        try:
            sites = self.access.sites
        except Exception:  # a registry hiccup must never stop the worker: the current sites serve on
            log.exception("sites_follow_failed")
            return
        if sites is not self.sites:
            self.sites = sites
            self.ctx.use_sites(sites)
            log.info("sites_reloaded", extra={"fields": {"sites": len(sites.all())}})

    def _follow_clock(self, jumps: clock.JumpWatch) -> None:
        """Once a second: a followed DNMA_NOW file's offset reaches the hot path, and a clock that
        moved is recorded for the clock_jumps check."""
        if clock.following():
            self.clock_offset = self.debug.clock_offset = clock.offset()
        jump = jumps.observe()
        if jump is not None:
            log.warning("clock_jumped", extra={"fields": {"jump_s": round(jump, 1)}})
            try:
                clock.record_jump(self.settings.data_dir, "collector", jump)
            except OSError as exc:
                log.error("clock_jump_unrecorded", extra={"fields": {"error": type(exc).__name__}})

    # --- the tracking endpoints
    async def track(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        headers = dict(scope["headers"])
        is_get = method == "GET" or method == "HEAD"
        if is_get:
            base = [_NO_STORE]
        else:
            base = [
                (b"access-control-allow-origin", headers.get(b"origin") or b"*"),
                (b"access-control-allow-credentials", b"true"),
            ]
        try:
            if method == "OPTIONS":
                status, extra, body = 204, _PREFLIGHT, b""
            elif is_get or method == "POST":
                status, extra, body = await self._track(scope, receive, headers, is_get)
            else:
                status, extra, body = (
                    405,
                    [_CT_TEXT, (b"allow", b"GET, POST, OPTIONS")],
                    b"method not allowed\n",
                )
        except ClientGone:
            return
        except Exception as exc:
            # A bug must cost one request, never the worker.
            self.tally.errors += 1
            status, extra, body = self._tracking_error(scope, headers, exc)
        self.tally.responses[("tracking", status)] += 1
        self.tally.observe(scope["path"], time.perf_counter() - started)  # a tracking path is its own template
        if status >= 500:
            self.tally.server_errors[scope["path"]] += 1  # a tracking path is its own route template
        if extra is _GIF_EXTRA:
            out = _GET_GIF_HEADERS if is_get else base + extra
        else:
            out = base + extra
            if status != 204:
                out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _track(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes], is_get: bool
    ) -> Response:
        query: bytes = scope["query_string"]
        if len(query) + len(scope.get("raw_path") or b"") >= MAX_URL_BYTES:
            return 414, [_CT_TEXT], b"request URL longer than 8 KiB\n"
        body = b""
        if not is_get:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return 413, [_CT_TEXT], b"request body larger than 1 MiB\n"
            read = await read_body(receive, MAX_BODY_BYTES)
            if read is None:
                return 413, [_CT_TEXT], b"request body larger than 1 MiB\n"
            body = read
            if body and looks_like_bulk(body):
                try:
                    bulk = parse_bulk_envelope(body)
                except ProtocolError as exc:
                    return exc.status, [_CT_JSON], orjson.dumps({"status": "error", "message": exc.reason})
                del body, read  # the body is not kept while the items are processed and spooled
                items = len(bulk.raw_items)
                first = bulk.raw_items[0] if items else None
                try:
                    return await self._bulk(scope, headers, bulk)
                except Exception as bug:  # (not `exc`: compiled, a name keeps its first type, ProtocolError)
                    raise TrackingFault(bug, _first_item(first), items) from bug
        params = request_params(query, body)
        if not params:
            return (200 if is_get else 400), [_CT_TEXT], TEXT_PAGE
        try:
            if self._fault and self._fault in params:
                raise RuntimeError("collector_fault_param: a fault injected for a test")
            now = time.time() + self.clock_offset
            hit = self._hit(scope, headers, params, "", now)
            reason = pipeline.run(hit, self.ctx)
            if self.debug.wants(hit):
                self.debug.record(hit, reason, self.ctx)
            send_image = params.get("send_image") != "0"
            extra = [_TK_N] if hit.tk else []
            if reason is not None and reason.invalid:
                if self._quarantine:
                    await self._keep([quarantine.record(hit, reason, self.ctx, bulk=False)])
                text = f"{reason.value}: {hit.detail}\n".encode()
                # Browsers still get an image; scripts read the reason after it (see test_responses).
                if send_image:
                    return 400, [_CT_GIF, *extra], GIF + text
                return 400, [_CT_TEXT, *extra], text
            if reason is None:
                refused = await self._append([hit.record])
                if refused is not None:
                    return refused
            if send_image:
                return 200, ([_CT_GIF, *extra] if extra else _GIF_EXTRA), GIF
            return 204, extra, b""
        except Exception as bug:  # free when nothing is raised: the sample needs the parameters
            raise TrackingFault(bug, params) from bug

    def _tracking_error(self, scope: Scope, headers: dict[bytes, bytes], exc: Exception) -> Response:
        """Log an unexpected error with a request id and a sanitised sample of the request (no
        personal data: collector.incident), and answer 400 naming the id."""
        fault = exc if isinstance(exc, TrackingFault) else None
        cause = fault.cause if fault is not None else exc
        tb = cause.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        rid = incident.request_id(headers)
        try:
            sample = incident.sample(scope, headers, fault.params if fault else None,
                                     fault.bulk_items if fault else None)
        except Exception as err:  # the sample must never hide the error itself
            sample = {"unavailable": type(err).__name__}
        log.error("tracking_error", extra={"fields": {"request_id": rid, "error": type(cause).__name__,
                                                      "where": where, "request": sample}})
        return 400, [_CT_TEXT, (b"x-request-id", rid.encode())], f"bad request (request id {rid})\n".encode()

    def _hit(
        self, scope: Scope, headers: dict[bytes, bytes], params: dict[str, str], token: str, now: float
    ) -> Hit:
        return Hit(params, self._client_ip(scope, headers), headers, token, now)

    def _client_ip(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        ip = ""
        if self.settings.trust_x_forwarded_for:
            fwd = headers.get(b"x-forwarded-for")
            if fwd:
                ip = fwd.split(b",", 1)[0].strip().decode("latin-1")
        if not ip:
            client = scope.get("client")
            ip = client[0] if client else ""
        return ip

    async def _keep(self, kept: list[bytes]) -> None:
        """Append refused requests' quarantine records; a spool that cannot take them costs them
        (counted), never the answer, which stays the refusal."""
        try:
            await self.spool.append([], kept)
        except (SpoolFull, OSError, RuntimeError) as exc:
            self.tally.quarantine_lost += len(kept)
            log.warning("quarantine_append_failed", extra={"fields": {"error": type(exc).__name__, "records": len(kept)}})
        else:
            self.tally.quarantined += len(kept)

    async def _append(self, records: list[bytes], kept: list[bytes] | None = None) -> Response | None:
        """Append to the spool (with `kept`, refused requests' quarantine records); a 503 answer when
        it cannot take them (nothing acknowledged)."""
        try:
            await self.spool.append(records, kept)
        except SpoolFull:
            self.tally.spool_full += 1
            return (
                503,
                [_CT_TEXT, (b"retry-after", RETRY_AFTER_S)],
                b"storage unavailable and spool full, retry later\n",
            )
        except (OSError, RuntimeError) as exc:
            self.tally.spool_errors += 1
            log.error("spool_append_failed", extra={"fields": {"error": type(exc).__name__, "detail": str(exc)[:200]}})
            return 503, [_CT_TEXT, (b"retry-after", RETRY_AFTER_S)], b"storage unavailable, retry later\n"
        self.tally.accepted += len(records)
        if kept:
            self.tally.quarantined += len(kept)
        return None

    async def _bulk(self, scope: Scope, headers: dict[bytes, bytes], bulk: BulkRequest) -> Response:
        raw_items = bulk.raw_items
        if self.settings.bulk_requests_require_authentication:
            bulk.items = [bulk_item(item) for item in raw_items]
            raw_items = bulk.items
            if not self._bulk_authenticated(bulk):
                message = "bulk requests require a valid token_auth for every site (bulk_requests_require_authentication)"
                if self._quarantine:
                    await self._keep_refused_bulk(scope, headers, bulk, message)
                return 400, [_CT_JSON], orjson.dumps({"status": "error", "message": message})
            parsed = True
        else:
            parsed = False
        bulk.raw_items = bulk.items = []
        now = time.time() + self.clock_offset
        ip = self._client_ip(scope, headers)
        token = bulk.token_auth
        shared: dict[Any, Any] = {}  # per-request memo: decoded headers, token checks, masked IP
        ctx, debug, fault = self.ctx, self.debug, self._fault
        watched = debug.watched_sites(now)  # sites with an open debug view
        records: list[bytes] = []
        kept: list[bytes] = []  # quarantine records of the refused items
        keep = self._quarantine
        tracked = 0
        invalid: list[int] = []
        tk = False
        for start in range(0, len(raw_items), BULK_CHUNK):
            if start:
                await asyncio.sleep(0)  # let other requests in between chunks
            hits: list[Hit] = []
            indices: list[int] = []
            for index in range(start, min(start + BULK_CHUNK, len(raw_items))):
                params = raw_items[index] if parsed else bulk_item(raw_items[index])
                if params is None:  # an item without a query part: skipped, counted nowhere
                    continue
                if fault and fault in params:
                    raise RuntimeError("collector_fault_param: a fault injected for a test")
                hits.append(Hit(params, ip, headers, token, now, shared))
                indices.append(index)
            pipeline.run_batch(hits, ctx)
            for index, hit in zip(indices, hits, strict=True):
                reason = hit.reason
                if watched and hit.site is not None and hit.site.id in watched:
                    debug.record(hit, reason, ctx)
                if hit.tk:
                    tk = True
                if reason is None:
                    records.append(hit.record)  # set by the last step whenever nothing dropped the hit
                    tracked += 1
                elif reason.invalid:
                    invalid.append(index)
                    if keep:
                        kept.append(quarantine.record(hit, reason, ctx, bulk=True))
                else:
                    tracked += 1  # excluded requests count as tracked, as in Matomo
            del hits
        del raw_items
        if records or kept:
            refused = await self._append(records, kept)  # one append: the ack waits for one fsync
            if refused is not None:
                return refused
        extra = [_TK_N] if tk else []
        if not bulk.send_image:
            return 204, extra, b""
        answer: dict[str, Any] = {"status": "success", "tracked": tracked, "invalid": len(invalid)}
        if self.access.is_super_user(token):
            answer["invalid_indices"] = invalid
        return 200, [_CT_JSON, *extra], orjson.dumps(answer)

    async def _keep_refused_bulk(self, scope: Scope, headers: dict[bytes, bytes], bulk: BulkRequest,
                                 message: str) -> None:
        """Quarantine every item of a bulk request refused whole for want of a valid token."""
        now = time.time() + self.clock_offset
        ip = self._client_ip(scope, headers)
        shared: dict[Any, Any] = {}
        kept = []
        for params in bulk.items:
            if params is not None:
                hit = Hit(params, ip, headers, bulk.token_auth, now, shared)
                hit.detail = message
                kept.append(quarantine.record(hit, DropReason.AUTH_REQUIRED, self.ctx, bulk=True))
        if kept:
            await self._keep(kept)

    def _bulk_authenticated(self, bulk: BulkRequest) -> bool:
        """Every item carries (or inherits) a token that may write its site. Items naming no known
        site are left to the pipeline, which answers them as invalid."""
        grants: dict[str, Grant | None] = {}  # a batch holds one token or a few
        seen = False
        for params in bulk.items:
            if params is None:
                continue
            token = params.get("token_auth") or bulk.token_auth
            site_id = steps.parse_int(params.get("idsite"))
            site = self.sites.get(site_id) if site_id else None
            if site is None:
                continue
            seen = True
            if token not in grants:
                grants[token] = self.access.grant(token)
            grant = grants[token]
            if grant is None or not grant.may_write(site.id):
                return False
        return seen or bool(bulk.token_auth)


def _first_item(raw: Any) -> dict[str, str] | None:
    """A bulk request's first item as parameters, for the error log's sample."""
    try:
        return bulk_item(raw) if raw is not None else None
    except Exception:
        return None


def _stop_reason() -> str:
    """Why the worker stops: the signal uvicorn caught (its handler is still installed while the
    app shuts down), else "shutdown"."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    caught = getattr(server, "_captured_signals", None)
    if caught:
        try:
            return signal.Signals(caught[-1]).name
        except ValueError:
            return f"signal {caught[-1]}"
    return "shutdown"


__all__ = ["Collector", "DropReason", "GIF", "TEXT_PAGE"]
