"""`dnma loader`: drains the spool into `dnma.hits` exactly once (intent file + dedup token), retires
loaded segments, owns chDB in embedded mode (and serves its read-only endpoint), runs the sessionizer.

Exactly-once, step by step: (1) pick the next byte ranges of the segments and write them as the
pending intent (fsync, rename); (2) insert those rows with a token derived from the ranges;
(3) advance the committed offsets. A kill -9 between (1) and (3) leaves the intent on disk: the
next start redoes the very same ranges with the very same token, and ClickHouse drops the blocks it
already has. A segment is deleted only once finished and committed to its end.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from aggregator.loader_state import Intent, LoaderState, Range
from dnma import spool
from dnma.hits import HIT_COLUMN_NAMES, HIT_DEFAULTS
from dnma.settings import Settings, get_settings

STATUS_FILE = "loader_status.json"  # read by the collector's /metrics (separate process)
_READ_CHUNK = 32 * 1024 * 1024  # bytes read from one segment per batch-building pass
_RECEIVED_AT = HIT_COLUMN_NAMES.index("received_at")

log = logging.getLogger("dnma.loader")


class Stopping(Exception):
    """SIGTERM arrived while waiting to retry: leave the intent on disk for the next start."""


# --- logging -------------------------------------------------------------------------------------


def _event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured event per line. Fields are counts, offsets and error classes: no hit content."""
    log.log(level, event, extra={"fields": fields})


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "fields"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """Our `fields`, plus any `extra=` other modules (endpoint, sessionizer) attach."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
    return {**extra, **getattr(record, "fields", {})}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "event": record.getMessage(), **_fields(record)}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()} {fields}"


def _setup_logging(settings: Settings) -> None:
    """The whole `dnma.*` logger tree of this process (loader, endpoint, sessionizer) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if settings.log_format == "json" else _TextFormatter())
    root = logging.getLogger("dnma")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False


# --- batches -------------------------------------------------------------------------------------


@dataclass
class Batch:
    intent: Intent
    columns: list[list[Any]]
    rows: int
    rejected: int = 0
    oldest_received_at: int = 0


def _columns(records: list[bytes]) -> tuple[list[list[Any]], int, int]:
    """Column-oriented rows (the insert format) from spool records; counts undecodable records."""
    columns: list[list[Any]] = [[] for _ in HIT_COLUMN_NAMES]
    pairs = [(columns[i], name, HIT_DEFAULTS[name]) for i, name in enumerate(HIT_COLUMN_NAMES)]
    rejected = 0
    for rec in records:
        try:
            row = orjson.loads(rec)
        except orjson.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            rejected += 1  # cannot be a hit: deterministic, so a redo rejects the same ones
            continue
        for col, name, default in pairs:
            col.append(row.get(name, default))
    received = [t for t in columns[_RECEIVED_AT] if t]
    return columns, rejected, min(received) if received else 0


def _segment_by_name(spool_dir: Path) -> dict[str, spool.Segment]:
    return {s.name: s for s in spool.list_segments(spool_dir)}


def read_range(seg: spool.Segment, r: Range) -> list[bytes]:
    """Exactly the records of `r` (a redo must rebuild the very same rows)."""
    path = seg.path
    for _ in range(3):  # .open may be renamed to .seg between listing and opening
        try:
            with open(path, "rb") as f:
                f.seek(r.start)
                data = f.read(r.end - r.start)
            break
        except FileNotFoundError:
            path = path.with_name(r.segment + spool.DONE_SUFFIX)
    else:
        raise FileNotFoundError(f"segment {r.segment} vanished")
    start = len(spool.MAGIC) if r.start == 0 else 0
    records, end = spool.parse_frames(data, start)
    if end != len(data):
        raise ValueError(f"segment {r.segment} range {r.start}-{r.end} no longer parses")
    return records


def next_intent(spool_dir: Path, committed: dict[str, int], max_rows: int) -> tuple[Intent, list[bytes]]:
    """The next ranges to load (new complete records of every segment, up to max_rows)."""
    ranges: list[Range] = []
    records: list[bytes] = []
    for seg in spool.list_segments(spool_dir):
        room = max_rows - len(records)
        if room <= 0:
            break
        offset = committed.get(seg.name, 0)
        if seg.size <= max(offset, len(spool.MAGIC)):
            continue
        try:
            got, end = spool.read_segment(seg.path, offset, _READ_CHUNK)
        except FileNotFoundError:
            continue  # renamed meanwhile: seen under its new name next pass
        if not got:
            continue
        if len(got) > room:
            got = got[:room]
            end = max(offset, len(spool.MAGIC)) + sum(spool.HEADER.size + len(g) for g in got)
        ranges.append(Range(seg.name, offset, end))  # offset 0 = from the start, magic included
        records.extend(got)
    return Intent(ranges), records


# --- the loader ----------------------------------------------------------------------------------


@dataclass
class Metrics:
    batches: int = 0
    rows: int = 0
    rejected: int = 0
    retries: int = 0
    redone: int = 0
    segments_retired: int = 0
    backlog_bytes: int = 0
    backlog_segments: int = 0
    lag_seconds: float = 0.0
    last_insert_ms: float = 0.0
    last_error: str = ""
    state: str = "starting"
    started_at: float = field(default_factory=time.time)


class Loader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool_dir = settings.resolved_spool_dir
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()
        self.metrics = Metrics()
        self.state = LoaderState.load(self.spool_dir)
        self.client: Any = None
        self.endpoint: Any = None
        self._status_at = 0.0
        self._aggregate_at = time.monotonic()

    # -- retry
    def _retry(self, what: str, fn: Any) -> Any:
        """Call fn until it succeeds, backing off exponentially up to loader_retry_max_s."""
        delay = 0.2
        while True:
            try:
                return fn()
            except Exception as exc:  # any failure: the batch stays pending, nothing is lost
                self.metrics.retries += 1
                self.metrics.last_error = type(exc).__name__
                self.metrics.state = "retrying"
                _event("clickhouse_failed", logging.WARNING, step=what, error=type(exc).__name__,
                       detail=str(exc)[:200], retry_in_s=round(delay, 2), retries=self.metrics.retries)
                self.write_status(force=True)
                if self.stop.wait(delay):
                    raise Stopping() from exc
                delay = min(delay * 2, self.settings.loader_retry_max_s)

    # -- startup
    def connect(self) -> None:
        from aggregator.migrate import migrate
        from dnma.chclient import get_client

        def attempt() -> Any:
            client = get_client(self.settings)
            migrate(client, self.settings)
            return client

        self.client = self._retry("connect", attempt)
        _event("connected", embedded=self.settings.embedded)

    def start_endpoint(self) -> None:
        if not self.settings.embedded:
            return  # Superset reads the ClickHouse server directly
        chdb_path = self.settings.resolved_dsn.split("://", 1)[1].split("?", 1)[0]
        try:
            endpoint_mod = importlib.import_module("aggregator.endpoint")
            start = endpoint_mod.start_endpoint
        except (ModuleNotFoundError, AttributeError):
            # Endpoint not there (yet): still answer /ping so supervisors see readiness.
            self.endpoint = _PingServer(self.settings.ch_http_host, self.settings.ch_http_port)
            _event("endpoint_fallback_ping", port=self.endpoint.port)
            return
        self.endpoint = start(self.settings, chdb_path)
        _event("endpoint_started", port=getattr(self.endpoint, "port", None))

    # -- one batch
    def redo_pending(self) -> None:
        """A batch was intended (maybe inserted) before a crash: insert it again, same token."""
        intent = self.state.pending
        if intent is None:
            return
        segs = _segment_by_name(self.spool_dir)
        records: list[bytes] = []
        for r in intent.ranges:
            if r.segment not in segs:
                # Only possible if someone removed spool files by hand: nothing left to redo.
                _event("pending_segment_missing", logging.ERROR, segment=r.segment)
                continue
            records.extend(read_range(segs[r.segment], r))
        self.metrics.redone += 1
        _event("pending_redo", ranges=len(intent.ranges), rows=len(records), token=intent.token)
        self._insert(intent, records)

    def load_once(self) -> bool:
        """Insert the next batch, if any; True when one was loaded."""
        intent, records = next_intent(self.spool_dir, self.state.committed, self.settings.loader_batch_rows)
        if not intent.ranges:
            return False
        self.state.begin(intent)  # durable before the insert: a crash from here on is redone
        self._insert(intent, records)
        return True

    def _insert(self, intent: Intent, records: list[bytes]) -> int:
        columns, rejected, oldest = _columns(records)
        rows = len(records) - rejected
        if rejected:
            _event("records_rejected", logging.ERROR, count=rejected, token=intent.token)
        if oldest:
            self.metrics.lag_seconds = max(0.0, time.time() - oldest)
        settings = {"insert_deduplicate": 1, "insert_deduplication_token": intent.token}

        def insert() -> None:
            t0 = time.perf_counter()
            self.client.insert("hits", columns, column_names=list(HIT_COLUMN_NAMES), column_oriented=True,
                               database=self.settings.clickhouse_database, settings=settings)
            self.metrics.last_insert_ms = round((time.perf_counter() - t0) * 1000, 1)

        if rows:
            self._retry("insert", insert)
        self.state.commit()
        self.metrics.batches += 1
        self.metrics.rows += rows
        self.metrics.rejected += rejected
        self.metrics.state = "running"
        _event("batch_loaded", rows=rows, ranges=len(intent.ranges), insert_ms=self.metrics.last_insert_ms)
        return rows

    # -- segments
    def retire(self) -> None:
        """Delete finished segments loaded to their end; claim the segments of dead writers."""
        backlog = 0
        segments = 0
        present = set()
        for seg in spool.list_segments(self.spool_dir):
            present.add(seg.name)
            seg = spool.claim_if_orphaned(seg)
            size = seg.size
            done = self.state.committed.get(seg.name, 0)
            backlog += max(0, size - max(done, len(spool.MAGIC)))
            segments += 1
            if not seg.finished or self.state.pending is not None:
                continue
            if size > max(done, len(spool.MAGIC)):
                # Finished but not all loaded: either new records (next batch takes them) or a tail
                # that never parses (torn by a crash, or corrupted): decide by reading it.
                records, _ = spool.read_segment(seg.path, done, 1024 * 1024)
                if records:
                    continue
                corrupt = self.spool_dir / "corrupt"
                corrupt.mkdir(exist_ok=True)
                os.rename(seg.path, corrupt / seg.path.name)  # kept for inspection, off the cap
                _event("segment_tail_ignored", logging.WARNING, segment=seg.name,
                       bytes=size - max(done, len(spool.MAGIC)))
            else:
                seg.path.unlink(missing_ok=True)
            backlog -= max(0, size - max(done, len(spool.MAGIC)))
            segments -= 1
            self.metrics.segments_retired += 1
            present.discard(seg.name)
        spool.remove_abandoned_tmp(self.spool_dir)
        if self.state.pending is None:
            stale = [n for n in self.state.committed if n not in present]
            if stale:
                # Deleted first, forgotten second: a crash in between only leaves a stale name.
                for n in stale:
                    del self.state.committed[n]
                self.state.save()
        self.metrics.backlog_bytes = backlog
        self.metrics.backlog_segments = segments
        if backlog == 0:
            self.metrics.lag_seconds = 0.0

    # -- side duties
    def maybe_aggregate(self) -> None:
        interval = self.settings.loader_aggregate_interval_s
        if interval <= 0 or time.monotonic() - self._aggregate_at < interval:
            return
        self._aggregate_at = time.monotonic()
        try:
            fn = importlib.import_module("aggregator.sessionizer").aggregate_once
        except (ModuleNotFoundError, AttributeError):
            return  # sessionizer not installed yet
        try:
            t0 = time.perf_counter()
            result = fn(self.client, self.settings)
            quiet = isinstance(result, dict) and not result.get("days")  # nothing was dirty
            _event("aggregated", logging.DEBUG if quiet else logging.INFO, ms=round((time.perf_counter() - t0) * 1000, 1),
                   result=result if isinstance(result, dict) else None)
        except Exception as exc:  # visits are recomputed next time; loading must go on
            _event("aggregate_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc)[:200])

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < 1.0:
            return
        self._status_at = now
        doc = {"pid": os.getpid(), "updated_at": time.time(), **self.metrics.__dict__}
        path = self.settings.data_dir / STATUS_FILE
        tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
        try:
            tmp.write_bytes(orjson.dumps(doc))
            os.replace(tmp, path)  # readers never see half a file; no fsync: it is a gauge
        except OSError:
            pass

    # -- main loop
    def run(self) -> None:
        poll = self.settings.loader_poll_interval_ms / 1000.0
        try:
            self.connect()
            self.redo_pending()
            self.start_endpoint()
            self.metrics.state = "running"
            retired_at = 0.0
            while not self.stop.is_set():
                loaded = self.load_once()
                # Retire when idle, and every second under load so the spool cap frees up.
                if not loaded or time.monotonic() - retired_at >= 1.0:
                    self.retire()
                    retired_at = time.monotonic()
                self.write_status()
                if not loaded:
                    self.maybe_aggregate()
                    self.stop.wait(poll)
        except Stopping:
            _event("stopped_with_pending", logging.WARNING, pending=self.state.pending is not None)
        finally:
            self.metrics.state = "stopped"
            self.write_status(force=True)
            if self.endpoint is not None:
                self.endpoint.stop()
            _event("loader_stopped", batches=self.metrics.batches, rows=self.metrics.rows)


class _PingServer:
    """Minimal stand-in for the read-only endpoint: GET /ping -> Ok."""

    def __init__(self, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                ok = self.path.split("?")[0] == "/ping"
                body = b"Ok.\n" if ok else b"not found\n"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- command line --------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="load everything there is, then exit (no endpoint)")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    _setup_logging(settings)
    loader = Loader(settings)

    def on_term(signum: int, _frame: Any) -> None:
        _event("signal", signum=signum)
        loader.stop.set()  # the current batch finishes; a retry wait is cut short

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if getattr(args, "once", False):
        try:
            loader.connect()
            loader.redo_pending()
            while loader.load_once():
                pass
            loader.retire()
        except Stopping:
            return 1
        finally:
            loader.write_status(force=True)
        return 0
    loader.run()
    return 0
