"""`dnma loader`: the process draining the spool into `dnma.hits` exactly once (aggregator.loader_batches):
connects and migrates, owns chDB in embedded mode (and serves its read-only endpoint), runs the side duties.

It starts, redoes the batch a crash left pending, then loads batch after batch, paced by the
insert interval, writing its status file for the collector's /metrics; on SIGTERM it finishes the
current batch and waits for a side duty in progress before it exits.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import faulthandler
import logging
import os
import signal
import threading
import time
from typing import Any

import orjson

from aggregator import loader_health
from aggregator.loader_batches import Batches, DataError, Metrics
from aggregator.loader_duties import SIDE_DUTY_JOIN_S, run_side_duties
from aggregator.loader_logs import log_event, setup_logging
from aggregator.loader_state import LoaderState
from aggregator.write_gate import WriteGate
from dnma import clock, spool
from dnma.logs import CleanStop
from dnma.settings import Settings, get_settings

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)

STATUS_FILE = "loader_status.json"  # read by the collector's /metrics (separate process)
RUNNING_MARKER = "run/loader.running"  # under data_dir: present while a loader runs (dnma/logs.CleanStop)


class Stopping(Exception):
    """SIGTERM arrived while waiting to retry: leave the intent on disk for the next start."""


class Loader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool_dir = settings.resolved_spool_dir
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()
        self.kick = threading.Event()  # run the side duties now (SIGUSR1)
        self.metrics = Metrics()
        self.batches = Batches(settings, self.metrics, self._retry)
        # Passed by each batch and side duty; a backup (aggregator.backup) closes it for its snapshot.
        self.gate = WriteGate()
        self.endpoint: Any = None
        self.admin: Any = None  # the admin channel (aggregator/admin.py): commands' jobs, embedded mode
        self._status_at = 0.0
        self.stop_reason = "shutdown"  # what the stop event says when it is logged: a signal's name, "error"
        self.running = CleanStop(settings.data_dir / RUNNING_MARKER)

    # -- retry
    def _retry(self, what: str, fn: Any, give_up: Any = None, event: str = "clickhouse_failed") -> Any:
        """Call fn until it succeeds, backing off exponentially up to loader_retry_max_s, logging
        `event` at each failure. `give_up(exc)` true: the failure is the data's, retrying cannot
        help (raises DataError)."""
        delay = 0.2
        while True:
            try:
                return fn()
            except Exception as exc:  # any failure: the batch stays pending, nothing is lost
                if give_up is not None and give_up(exc):
                    raise DataError(str(exc)[:200]) from exc
                self.metrics.retries += 1
                self.metrics.last_error = type(exc).__name__
                self.metrics.state = "retrying"
                log_event(event, logging.WARNING, step=what, error=type(exc).__name__,
                          detail=str(exc)[:200], retry_in_s=round(delay, 2), retries=self.metrics.retries)
                self.write_status(force=True)
                if self.stop.wait(delay):
                    raise Stopping() from exc
                delay = min(delay * 2, self.settings.loader_retry_max_s)

    # -- startup
    def connect(self) -> None:
        from aggregator.durability import apply_durability
        from aggregator.migrate import migrate, renderer
        from aggregator.retention import apply_retention
        from dnma.chclient import get_client

        def attempt() -> Any:
            client = get_client(self.settings)
            migrate(client, self.settings, settle=settle_pending)
            apply_retention(client, renderer(self.settings), self.settings)
            apply_durability(client, renderer(self.settings))
            return client

        self.batches.connect(self._retry("connect", attempt))
        log_event("connected", embedded=self.settings.embedded)

    def start_endpoint(self) -> None:
        if not self.settings.embedded:
            return  # Superset reads the ClickHouse server directly
        from aggregator.endpoint import start_endpoint

        chdb_path = self.settings.resolved_dsn.split("://", 1)[1].split("?", 1)[0]
        self.endpoint = start_endpoint(self.settings, chdb_path)
        log_event("endpoint_started", port=self.endpoint.port)

    def start_admin(self) -> None:
        """The admin channel where `dnma` commands send their jobs (embedded mode: chDB is ours)."""
        if not self.settings.embedded:
            return  # commands open the ClickHouse server themselves
        from aggregator.admin import AdminServer

        server = AdminServer(self.settings, self.gate, lambda _client, _settings: self.batches.redo_pending())
        try:
            server.start()
        except OSError as exc:  # e.g. a data_dir path too long for a Unix socket: loading goes on
            log_event("admin_unavailable", logging.ERROR, error=type(exc).__name__, detail=str(exc)[:200])
            return
        self.admin = server
        log_event("admin_started", path=str(server.path))

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

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < 1.0:
            return
        self._status_at = now
        doc = {"pid": os.getpid(), "updated_at": time.time(), **self.metrics.__dict__, **loader_health.snapshot()}
        if self.endpoint is not None:
            doc["endpoint"] = self.endpoint.stats.snapshot()  # exported by the collector's /metrics
        if self.admin is not None:
            doc["admin"] = self.admin.snapshot()  # admin requests, refusals by reason, jobs run and failed
        path = self.settings.data_dir / STATUS_FILE
        tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
        try:
            tmp.write_bytes(orjson.dumps(doc))
            os.replace(tmp, path)  # readers never see half a file; no fsync: it is a gauge
        except OSError:
            pass

    def _note_clock_jump(self, jumps: clock.JumpWatch) -> None:
        """A clock that moved is logged and recorded for the clock_jumps check."""
        jump = jumps.observe()
        if jump is None:
            return
        log_event("clock_jumped", logging.WARNING, jump_s=round(jump, 1))
        try:
            clock.record_jump(self.settings.data_dir, "loader", jump)
        except OSError as exc:
            log_event("clock_jump_unrecorded", logging.ERROR, error=str(exc)[:200])

    # -- main loop
    def run(self) -> None:
        poll = self.settings.loader_poll_interval_ms / 1000.0
        side: threading.Thread | None = None
        batches = self.batches
        try:
            self.connect()
            batches.redo_pending()
            self.start_endpoint()
            self.start_admin()
            # Own thread and client, so loading never waits for the sessionizer or the checks.
            side = threading.Thread(target=run_side_duties, args=(self.settings, self.stop, self.kick, self.gate),
                                    name="side-duties", daemon=True)
            side.start()
            self.metrics.state = "running"
            retired_at = 0.0
            min_interval = self.settings.loader_insert_interval_ms / 1000.0
            jumps = clock.JumpWatch()
            while not self.stop.is_set():
                started = time.monotonic()
                self._note_clock_jump(jumps)
                with self.gate.writing():
                    loaded = batches.load_once()
                    # Retire when idle, and every second under load so the spool cap frees up.
                    if not loaded or time.monotonic() - retired_at >= 1.0:
                        batches.retire()
                        retired_at = time.monotonic()
                self.write_status()
                if not loaded:
                    self.stop.wait(poll)
                elif batches.last_rows < self.settings.loader_batch_rows:
                    # A partial batch: the spool is drained. Let the next one gather for the rest of
                    # the interval: a part per insert costs ClickHouse about as much as thousands of
                    # rows (bench/README.md).
                    self._gather(started + min_interval, poll)
        except Stopping:
            log_event("stopped_with_pending", logging.WARNING, pending=batches.state.pending is not None)
        except BaseException as exc:
            self.stop_reason = "error"
            log_event("loader_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc)[:200])
            raise
        finally:
            self.stop.set()
            if side is not None:
                # A duty in progress finishes its current day or check: exiting under a thread
                # that is inside chDB can crash the process on the way out.
                side.join(timeout=SIDE_DUTY_JOIN_S)
            if self.admin is not None:
                self.admin.close(join_s=SIDE_DUTY_JOIN_S)  # a job in progress ends its current step
            self.metrics.state = "stopped"
            self.write_status(force=True)
            if self.endpoint is not None:
                self.endpoint.stop()
            log_event("loader_stopped", reason=self.stop_reason, batches=self.metrics.batches, rows=self.metrics.rows)
            if self.stop_reason != "error":
                self.running.stopped()

    def note_start(self) -> None:
        """Mark this run as running; a mark left by the previous one says it did not stop cleanly."""
        previous = self.running.start()
        if previous is not None:
            log_event("previous_run_not_stopped_cleanly", logging.WARNING, previous_pid=previous.get("pid"),
                      previous_started=previous.get("started"))
        log_event("loader_started", pid=os.getpid())


def settle_pending(client: Any, settings: Settings) -> None:
    """Insert the loader's pending batch now, under its token: for a migration that rebuilds `hits`
    without its insert-deduplication log, after which a redo would store the batch twice."""
    if LoaderState.load(settings.resolved_spool_dir).pending is None:
        return
    loader = Loader(settings)
    loader.batches.client = client
    loader.batches.redo_pending()


# --- command line --------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="load everything there is, then exit (no endpoint)")


def limit_malloc_arenas(arenas: int) -> bool:
    """Caps glibc's malloc arenas for this process (M_ARENA_MAX); True when set. chDB allocates with
    glibc's malloc from many threads: each would get an arena of its own (up to 8 per core) that
    keeps the memory it freed, so the process's RSS follows the high-water mark of every arena."""
    if arenas <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc: nothing to cap
        return False


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    setup_logging(settings)
    # Before the first chDB thread exists: an arena already created stays.
    arenas_capped = limit_malloc_arenas(settings.loader_malloc_arenas)
    log_event("malloc_arenas", cap=settings.loader_malloc_arenas, applied=arenas_capped)
    loader = Loader(settings)

    def on_term(signum: int, _frame: Any) -> None:
        loader.stop_reason = signal.Signals(signum).name
        log_event("signal", signum=signum, signal=loader.stop_reason)
        loader.stop.set()  # the current batch finishes; a retry wait is cut short
        # A stop that takes longer than a side duty may last prints every thread's stack on
        # stderr: where a stuck loader is, for whoever must kill it.
        faulthandler.dump_traceback_later(SIDE_DUTY_JOIN_S + 5, exit=False)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, lambda _s, _f: loader.kick.set())
    loader.note_start()
    if getattr(args, "once", False):
        try:
            loader.connect()
            loader.batches.redo_pending()
            while loader.batches.load_once():
                pass
            loader.batches.retire()
        except Stopping:
            loader.running.stopped()
            return 1
        except BaseException as exc:
            log_event("loader_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc)[:200])
            raise
        finally:
            loader.write_status(force=True)
        loader.running.stopped()
        log_event("loader_stopped", reason="done")
        return 0
    loader.run()
    return 0
