"""The loader's admin channel: a Unix socket `<data_dir>/admin.sock` (0600, its directory 0700) where
a `dnma` command of the same user asks the loader, chDB's one owner, to run a named job
(aggregator/jobs.py) with typed arguments — never SQL. Protocol: dnma/admin.py.

Rules (SECURITY.md): the peer's uid (SO_PEERCRED) is checked before anything is read; one request
of at most 64 KiB, read within REQUEST_DEADLINE_S; at most MAX_CONNECTIONS at once; unknown jobs and
bad arguments get a clear refusal, counted; write jobs one at a time (another gets "busy"); a job
runs on its connection's thread with its own ClickHouse client, so loading goes on meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from aggregator import jobs
from aggregator.loader_health import job_finished
from aggregator.loader_logs import log_event
from dnma import admin
from dnma.settings import Settings

MAX_CONNECTIONS = 8
REQUEST_DEADLINE_S = 5.0  # the whole request line, from the connection's acceptance
SEND_TIMEOUT_S = 60.0  # a command that stops reading a job's output for this long is dropped
EXIT_BUSY = admin.EXIT_BUSY
EXIT_REFUSED = 2
REFUSALS = ("too_many_connections", "peer_uid", "slow", "too_large", "bad_request", "busy")


class Refused(Exception):
    def __init__(self, reason: str, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.reason, self.code = reason, code


class AdminServer:
    def __init__(self, settings: Settings, gate: Any, settle: Any) -> None:
        """`gate`: the loader's write gate; `settle`: inserts its pending batch (aggregator.migrate)."""
        self.settings = settings
        self.path = admin.socket_path(settings)
        self.gate = gate
        self.settle = settle
        self.stop = threading.Event()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.write_lock = threading.Lock()
        # Connections, refusals by reason, jobs started and failed: each present from the start.
        self.counts: Counter[str] = Counter({k: 0 for k in ("connections", "jobs_started", "jobs_failed",
                                                            *(f"refused_{r}" for r in REFUSALS))})
        self.threads: set[threading.Thread] = set()
        self._guard = threading.Lock()
        self.listener: socket.socket | None = None
        self.acceptor: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()  # left by a loader that died; chDB's lock says we are the owner
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: no window where another user may connect
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        listener.listen(MAX_CONNECTIONS)
        listener.settimeout(0.5)
        self.listener = listener
        self.acceptor = threading.Thread(target=self._accept_loop, name="admin-accept", daemon=True)
        self.acceptor.start()

    def close(self, join_s: float) -> None:
        """Stop accepting, ask running jobs to stop and wait for them (a thread inside chDB must not
        outlive the loader)."""
        self.stop.set()
        if self.acceptor is not None:
            self.acceptor.join(timeout=2)
        if self.listener is not None:
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        deadline = time.monotonic() + join_s
        for t in list(self.threads):
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    # -- connections
    def _accept_loop(self) -> None:
        assert self.listener is not None
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                time.sleep(0.1)
                continue
            self.counts["connections"] += 1
            if not self.slots.acquire(blocking=False):
                self._refuse(conn, Refused("too_many_connections",
                                           f"too many admin connections (at most {MAX_CONNECTIONS}); try again", EXIT_BUSY))
                continue
            t = threading.Thread(target=self._serve, args=(conn,), name="admin-job", daemon=True)
            with self._guard:
                self.threads.add(t)
            t.start()

    def _refuse(self, conn: socket.socket, refusal: Refused) -> None:
        self.counts[f"refused_{refusal.reason}"] += 1
        log_event("admin_refused", logging.WARNING, reason=refusal.reason, detail=str(refusal)[:200])
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(orjson.dumps({"error": str(refusal), "exit": refusal.code}) + b"\n")
            conn.shutdown(socket.SHUT_WR)
            # Closing with unread input would reset the connection and lose the answer: read what the
            # command still sends, bounded in bytes and time.
            deadline, drained = time.monotonic() + 1.0, 0
            while drained < 4 * admin.MAX_REQUEST_BYTES and time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            try:
                self._check_peer(conn)
                name, args = self._read_request(conn)
                job, _ = jobs.validate(name, args)
                jobs.resolve(name, job)
            except jobs.BadRequest as exc:
                self._refuse(conn, Refused("bad_request", str(exc)))
                return
            except Refused as refusal:
                self._refuse(conn, refusal)
                return
            with self._write_slot(job) as free:
                if not free:
                    self._refuse(conn, Refused("busy", "another write job is running; try again when it ends", EXIT_BUSY))
                    return
                self._run(conn, name, args)
        finally:
            self.slots.release()
            with self._guard:
                self.threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                conn.close()

    def _check_peer(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            raise Refused("peer_uid", "the admin channel serves the user running the loader only", 77)

    def _read_request(self, conn: socket.socket) -> tuple[Any, Any]:
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Refused("slow", f"no complete request within {REQUEST_DEADLINE_S:.0f} s")
            conn.settimeout(left)
            try:
                chunk = conn.recv(admin.MAX_REQUEST_BYTES + 1 - len(data))
            except TimeoutError:
                raise Refused("slow", f"no complete request within {REQUEST_DEADLINE_S:.0f} s") from None
            if not chunk:
                raise Refused("bad_request", "the request ended before its newline")
            data += chunk
            if len(data) > admin.MAX_REQUEST_BYTES:
                raise Refused("too_large", f"request larger than {admin.MAX_REQUEST_BYTES} bytes")
        head, _, rest = data.partition(b"\n")
        if rest:
            raise Refused("bad_request", "one request per connection")
        try:
            request = orjson.loads(head)
        except orjson.JSONDecodeError:
            raise Refused("bad_request", "the request is not JSON") from None
        if not isinstance(request, dict) or set(request) - {"job", "args"}:
            raise Refused("bad_request", 'the request must be {"job": NAME, "args": {...}}')
        return request.get("job"), request.get("args", {})

    @contextlib.contextmanager
    def _write_slot(self, job: jobs.Job) -> Iterator[bool]:
        if not job.write:
            yield True
            return
        if not self.write_lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            self.write_lock.release()

    @staticmethod
    def _count(name: str, ok: bool, t0: float) -> None:
        """Runs and failures per job for /metrics (aggregator/loader_health.py, as admin.<job>: the
        side duties count there under their own names); not the pings."""
        if name != "ping":
            job_finished(f"admin.{name}", ok=ok, seconds=time.perf_counter() - t0)

    def _run(self, conn: socket.socket, name: str, args: Any) -> None:
        conn.settimeout(SEND_TIMEOUT_S)

        def send(frame: dict[str, Any]) -> None:
            if self.stop.is_set() and "exit" not in frame:
                # A stopping loader ends a job at its next line of output (an export's next chunk).
                raise ConnectionAbortedError("the loader is stopping")
            conn.sendall(orjson.dumps(frame) + b"\n")

        ctx = jobs.JobContext(self.settings, out=lambda text: send({"out": text}),
                              err=lambda text: send({"err": text}), report=lambda figures: send({"report": figures}),
                              stop=self.stop, in_loader=True,
                              gate=self.gate, settle=self.settle)
        self.counts["jobs_started"] += 1
        t0 = time.perf_counter()
        quiet = logging.DEBUG if name == "ping" else logging.INFO  # a command asking whether the loader runs
        log_event("admin_job_started", quiet, job=name)
        try:
            send({"accepted": name})
            code = jobs.run_job(ctx, name, args)
        except OSError as exc:  # the command went away (or stopped reading): its job ends here
            self.counts["jobs_failed"] += 1
            self._count(name, False, t0)
            log_event("admin_job_abandoned", logging.WARNING, job=name, error=type(exc).__name__)
            return
        except Exception as exc:  # a job's failure is the command's answer; the loader goes on
            self.counts["jobs_failed"] += 1
            self._count(name, False, t0)
            log_event("admin_job_failed", logging.ERROR, job=name, error=type(exc).__name__, detail=str(exc)[:300])
            with contextlib.suppress(OSError):
                send({"err": f"job {name} failed: {type(exc).__name__}: {str(exc)[:300]}"})
                send({"exit": 1})
            return
        if code:
            self.counts["jobs_failed"] += 1
        self._count(name, not code, t0)
        log_event("admin_job_ended", quiet, job=name, exit=code, ms=round((time.perf_counter() - t0) * 1000, 1))
        with contextlib.suppress(OSError):
            send({"exit": code})
