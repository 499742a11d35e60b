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
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aggregator.loader_state import Intent, LoaderState, Range
from dnma import clock, spool
from dnma.settings import Settings, get_settings

STATUS_FILE = "loader_status.json"  # read by the collector's /metrics (separate process)
_READ_CHUNK = 32 * 1024 * 1024  # bytes read from one segment per batch-building pass

log = logging.getLogger("dnma.loader")


class Stopping(Exception):
    """SIGTERM arrived while waiting to retry: leave the intent on disk for the next start."""


class _DataError(Exception):
    """ClickHouse refused the data itself (a parse or type error): retrying would not help."""


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


# ClickHouse error codes that mean "this data cannot be inserted", not "ClickHouse is unwell".
_DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 173, 321, 407})


def _is_data_error(exc: Exception) -> bool:
    text = str(exc)
    return any(f"Code: {code}." in text for code in _DATA_ERROR_CODES) or "Cannot parse" in text


def _oldest_received_at(blocks: list[bytes]) -> int:
    """The batch's oldest reception time, from its first record (blocks are in arrival order)."""
    try:
        first = blocks[0]
        nl = first.find(b"\n")
        value = orjson.loads(first if nl < 0 else first[:nl]).get("received_at", 0)
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return 0
    return value if isinstance(value, int) else 0


def _segment_by_name(spool_dir: Path) -> dict[str, spool.Segment]:
    return {s.name: s for s in spool.list_segments(spool_dir)}


def read_range(seg: spool.Segment, r: Range) -> list[bytes]:
    """Exactly the blocks of `r` (a redo must rebuild the very same rows)."""
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
    blocks, end = spool.parse_frames(data, start)
    if end != len(data):
        raise ValueError(f"segment {r.segment} range {r.start}-{r.end} no longer parses")
    return blocks


def next_intent(spool_dir: Path, committed: dict[str, int], max_rows: int) -> tuple[Intent, list[bytes], int]:
    """The next ranges to load: new complete blocks of every segment, up to about max_rows records
    (whole blocks: at least one). Returns the intent, its blocks and how many records they hold."""
    ranges: list[Range] = []
    blocks: list[bytes] = []
    rows = 0
    for seg in spool.list_segments(spool_dir):
        room = max_rows - rows
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
        taken = 0
        for i, block in enumerate(got):
            n = spool.block_rows(block)
            if taken and taken + n > room:
                got = got[:i]
                end = max(offset, len(spool.MAGIC)) + sum(spool.HEADER.size + len(g) for g in got)
                break
            taken += n
        ranges.append(Range(seg.name, offset, end))  # offset 0 = from the start, magic included
        blocks.extend(got)
        rows += taken
    return Intent(ranges), blocks, rows


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


SIDE_DUTY_JOIN_S = 25.0  # how long a stopping loader waits for a sessionizer day or a check to end

# Parallel parsing splits a batch over threads that the collector needs on a small machine, and one
# thread parses with less CPU in all (bench/README.md): turn it on only when the loader has cores
# of its own.
INSERT_SETTINGS: dict[str, Any] = {"insert_deduplicate": 1, "input_format_parallel_parsing": 0}
BATCH_FILE = "_loader.batch"  # in the spool dir: the batch chDB reads (embedded mode), rewritten per insert


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _without_low_cardinality(type_name: str) -> str:
    """`Map(LowCardinality(String), String)` -> `Map(String, String)`."""
    while (start := type_name.find("LowCardinality(")) >= 0:
        depth, i = 0, start + len("LowCardinality")
        while True:
            depth += {"(": 1, ")": -1}.get(type_name[i], 0)
            if depth == 0:
                break
            i += 1
        type_name = type_name[:start] + type_name[start + len("LowCardinality(") : i] + type_name[i + 1 :]
    return type_name


def file_insert_sql(client: Any, database: str, path: Path) -> tuple[str, str]:
    """`INSERT INTO hits ... SELECT ... FROM file(path)`, cut where the deduplication token goes: how the
    embedded loader inserts a batch. chDB parses JSONEachRow into LowCardinality columns one value
    at a time, with a dictionary lookup each, most of an insert's CPU. Parsed into plain columns
    (the same types without LowCardinality) and converted column by column on the way into `hits`,
    the same rows cost less than half as much (bench/loader_insert.py; figures in bench/README.md).
    Same rows stored, same deduplication by token (the insert is into `hits`), same materialized views."""
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'hits' ORDER BY position",
        parameters={"db": database},
    ).result_rows
    columns = ", ".join(f"`{name}`" for name, _ in rows)
    structure = ", ".join(f"`{name}` {_without_low_cardinality(type_name)}" for name, type_name in rows)
    settings = ", ".join(f"{k} = {v}" for k, v in INSERT_SETTINGS.items())
    return (
        f"INSERT INTO {database}.hits ({columns}) SETTINGS {settings}, insert_deduplication_token = ",
        f" SELECT {columns} FROM file({_sql_string(str(path))}, 'JSONEachRow', {_sql_string(structure)})",
    )


class Loader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool_dir = settings.resolved_spool_dir
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()
        self.kick = threading.Event()  # run the side duties now (SIGUSR1)
        self.metrics = Metrics()
        self.state = LoaderState.load(self.spool_dir)
        self.client: Any = None
        self.endpoint: Any = None
        self._status_at = 0.0
        self._last_rows = 0  # records of the last batch built
        self._file_insert: tuple[str, str] | None = None  # embedded mode: file_insert_sql, set by connect

    # -- retry
    def _retry(self, what: str, fn: Any, give_up: Any = None) -> Any:
        """Call fn until it succeeds, backing off exponentially up to loader_retry_max_s.
        `give_up(exc)` true: the failure is the data's, retrying cannot help (raises _DataError)."""
        delay = 0.2
        while True:
            try:
                return fn()
            except Exception as exc:  # any failure: the batch stays pending, nothing is lost
                if give_up is not None and give_up(exc):
                    raise _DataError(str(exc)[:200]) from exc
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
        from aggregator.migrate import migrate, renderer
        from aggregator.retention import apply_retention
        from dnma.chclient import get_client

        def attempt() -> Any:
            client = get_client(self.settings)
            migrate(client, self.settings, settle=settle_pending)
            apply_retention(client, renderer(self.settings), self.settings.hits_ttl_months)
            return client

        self.client = self._retry("connect", attempt)
        if self.settings.embedded:
            self._file_insert = file_insert_sql(self.client, self.settings.clickhouse_database,
                                                (self.spool_dir / BATCH_FILE).resolve())
        # A migration may have settled the pending batch (aggregator.migrate): read what it left.
        self.state = LoaderState.load(self.spool_dir)
        _event("connected", embedded=self.settings.embedded)

    def start_endpoint(self) -> None:
        if not self.settings.embedded:
            return  # Superset reads the ClickHouse server directly
        from aggregator.endpoint import start_endpoint

        chdb_path = self.settings.resolved_dsn.split("://", 1)[1].split("?", 1)[0]
        self.endpoint = start_endpoint(self.settings, chdb_path)
        _event("endpoint_started", port=self.endpoint.port)

    # -- one batch
    def redo_pending(self) -> None:
        """A batch was intended (maybe inserted) before a crash: insert it again, same token."""
        intent = self.state.pending
        if intent is None:
            return
        segs = _segment_by_name(self.spool_dir)
        blocks: list[bytes] = []
        for r in intent.ranges:
            if r.segment not in segs:
                # Only possible if someone removed spool files by hand: nothing left to redo.
                _event("pending_segment_missing", logging.ERROR, segment=r.segment)
                continue
            blocks.extend(read_range(segs[r.segment], r))
        rows = sum(map(spool.block_rows, blocks))
        self.metrics.redone += 1
        _event("pending_redo", ranges=len(intent.ranges), rows=rows, token=intent.token)
        self._insert(intent, blocks, rows)

    def load_once(self) -> bool:
        """Insert the next batch, if any; True when one was loaded."""
        intent, blocks, self._last_rows = next_intent(self.spool_dir, self.state.committed,
                                                      self.settings.loader_batch_rows)
        if not intent.ranges:
            return False
        self.state.begin(intent)  # durable before the insert: a crash from here on is redone
        self._insert(intent, blocks, self._last_rows)
        return True

    def _insert(self, intent: Intent, blocks: list[bytes], rows: int) -> int:
        """Insert the batch as JSONEachRow: spool blocks already are JSON lines, one object per
        hit, so ClickHouse parses them natively (no Python per-row work). Embedded, chDB reads them
        from BATCH_FILE (file_insert_sql: cheaper than parsing the body); on a server, they are the body of
        `INSERT ... FORMAT JSONEachRow`. A batch ClickHouse cannot parse is inserted record by
        record instead, so one bad record never blocks the others."""
        oldest = _oldest_received_at(blocks)
        if oldest:
            self.metrics.lag_seconds = max(0.0, clock.time() - oldest)  # received_at is on DNMA's clock
        table = f"{self.settings.clickhouse_database}.hits"
        rejected = 0

        def insert(parts: list[bytes], token: str) -> None:
            """Insert the records of `parts` (blocks or records, each one or more whole lines)."""
            t0 = time.perf_counter()
            if self._file_insert:
                with open(self.spool_dir / BATCH_FILE, "wb") as f:  # no joined copy of the batch
                    for part in parts:
                        f.write(part)
                        f.write(b"\n")
                head, tail = self._file_insert
                try:
                    self.client.command(head + _sql_string(token) + tail)
                finally:
                    os.truncate(self.spool_dir / BATCH_FILE, 0)  # no second copy of the hits lies around
            else:
                self.client.raw_insert(table, insert_block=b"\n".join(parts), fmt="JSONEachRow",
                                       settings=INSERT_SETTINGS | {"insert_deduplication_token": token})
            self.metrics.last_insert_ms = round((time.perf_counter() - t0) * 1000, 1)

        if blocks:
            try:
                self._retry("insert", lambda: insert(blocks, intent.token), give_up=_is_data_error)
            except _DataError:
                records = [r for block in blocks for r in block.split(b"\n")]
                rows, rejected = self._insert_one_by_one(intent, records, insert)
        self.state.commit()
        self.metrics.batches += 1
        self.metrics.rows += rows
        self.metrics.rejected += rejected
        self.metrics.state = "running"
        _event("batch_loaded", rows=rows, ranges=len(intent.ranges), insert_ms=self.metrics.last_insert_ms)
        return rows

    def _insert_one_by_one(self, intent: Intent, records: list[bytes], insert: Any) -> tuple[int, int]:
        """Slow path for a batch with a bad record: per-record tokens derived from the batch's keep a
        redo exactly-once too, and the same records are rejected every time (deterministic)."""
        rows = rejected = 0
        for i, rec in enumerate(records):
            try:
                self._retry("insert", lambda rec=rec, i=i: insert([rec], f"{intent.token}:{i}"), give_up=_is_data_error)
                rows += 1
            except _DataError:
                rejected += 1
        _event("records_rejected", logging.ERROR, count=rejected, token=intent.token)
        return rows, rejected

    def _gather(self, deadline: float, poll: float) -> None:
        """Wait until `deadline` while records keep coming; a spool that gets no new record for a
        poll interval ends the wait: a burst is over (a log import's last request, a lone hit),
        its tail is inserted now rather than up to an interval later."""
        size = spool.spool_bytes(self.spool_dir)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.wait(min(poll, left)):
                return
            now = spool.spool_bytes(self.spool_dir)
            if now == size:
                return
            size = now

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
                blocks, _ = spool.read_segment(seg.path, done, 4 * spool.BLOCK_BYTES)
                if blocks:
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

    # -- side duties (own thread and client, so loading never waits for them)
    def side_duties(self) -> None:
        """Visits every loader_aggregate_interval_s, quality checks every quality_checks_interval_s."""
        from aggregator.checks.runner import checks_due, run_checks
        from aggregator.sessionizer import Settling, aggregate_once
        from dnma.chclient import get_client

        client = get_client(self.settings)
        aggregated_at = time.monotonic()
        checked_at: float | None = None
        settling = Settling()
        try:
            while not self.stop.wait(1.0):
                # SIGUSR1 (sent by `dnma up` after loading demo data): both duties now, in order.
                kicked = self.kick.is_set()
                self.kick.clear()
                interval = self.settings.loader_aggregate_interval_s
                if kicked or (interval > 0 and time.monotonic() - aggregated_at >= interval):
                    # A kick builds every dirty day; periodic passes hold back past days still changing.
                    self._duty("aggregated", functools.partial(aggregate_once, client, self.settings, self.stop,
                                                               None if kicked else settling))
                    # Counted from the end of the pass: a long pass (a large day) is followed by a
                    # full interval of loading, never by another pass straight away.
                    aggregated_at = time.monotonic()
                if self.stop.is_set():
                    break
                if kicked or checks_due(self.settings, checked_at):
                    checked_at = time.time()
                    self._duty("checked", lambda: {"transitions": len(run_checks(client, self.settings))})
        finally:
            client.close()

    def _duty(self, name: str, fn: Any) -> None:
        try:
            t0 = time.perf_counter()
            result = fn()
            # Quiet (DEBUG): a pass that found nothing to do; its timings alone do not count.
            quiet = isinstance(result, dict) and not any(v for k, v in result.items() if not k.endswith("seconds"))
            _event(name, logging.DEBUG if quiet else logging.INFO,
                   ms=round((time.perf_counter() - t0) * 1000, 1), result=result if isinstance(result, dict) else None)
        except Exception as exc:  # recomputed next time; loading must go on
            _event(f"{name}_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc)[:200])

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
        side: threading.Thread | None = None
        try:
            self.connect()
            self.redo_pending()
            self.start_endpoint()
            side = threading.Thread(target=self.side_duties, name="side-duties", daemon=True)
            side.start()
            self.metrics.state = "running"
            retired_at = 0.0
            min_interval = self.settings.loader_insert_interval_ms / 1000.0
            while not self.stop.is_set():
                started = time.monotonic()
                loaded = self.load_once()
                # Retire when idle, and every second under load so the spool cap frees up.
                if not loaded or time.monotonic() - retired_at >= 1.0:
                    self.retire()
                    retired_at = time.monotonic()
                self.write_status()
                if not loaded:
                    self.stop.wait(poll)
                elif self._last_rows < self.settings.loader_batch_rows:
                    # A partial batch: the spool is drained. Let the next one gather for the rest of
                    # the interval: a part per insert costs ClickHouse about as much as thousands of
                    # rows (bench/README.md).
                    self._gather(started + min_interval, poll)
        except Stopping:
            _event("stopped_with_pending", logging.WARNING, pending=self.state.pending is not None)
        finally:
            self.stop.set()
            if side is not None:
                # A duty in progress finishes its current day or check: exiting under a thread
                # that is inside chDB can crash the process on the way out.
                side.join(timeout=SIDE_DUTY_JOIN_S)
            self.metrics.state = "stopped"
            self.write_status(force=True)
            if self.endpoint is not None:
                self.endpoint.stop()
            _event("loader_stopped", batches=self.metrics.batches, rows=self.metrics.rows)


def settle_pending(client: Any, settings: Settings) -> None:
    """Insert the loader's pending batch now, under its token: for a migration that rebuilds `hits`
    without its insert-deduplication log, after which a redo would store the batch twice."""
    if LoaderState.load(settings.resolved_spool_dir).pending is None:
        return
    loader = Loader(settings)
    loader.client = client
    loader.redo_pending()


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
    signal.signal(signal.SIGUSR1, lambda _s, _f: loader.kick.set())
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
