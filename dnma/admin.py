"""The command side of the loader's admin channel, and the storage a command opens when no loader runs.

In embedded mode the loader owns chDB. It serves `<data_dir>/admin.sock` (aggregator/admin.py): a
command sends ONE request, a named job with typed arguments (never SQL), and reads the job's frames
back. Protocol, one JSON object per line each way:
  request  {"job": "export", "args": {...}}                 (at most MAX_REQUEST_BYTES, with its newline)
  answers  {"accepted": "export"}, then {"out": text} (the command's output: stdout or the export's
           file), {"err": text} (progress, on stderr), {"report": {...}} (figures the command
           uses, e.g. an export's rows), and last {"exit": code}; a refusal is {"error": message,
           "exit": code} instead.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dnma.settings import Settings

SOCKET_NAME = "admin.sock"
MAX_REQUEST_BYTES = 64 * 1024
EXIT_BUSY = 75  # EX_TEMPFAIL: the loader runs another write job; try again
ANSWER_TIMEOUT_S = 10.0  # a live loader accepts or refuses a request at once; a silent one is stuck

Write = Callable[[str], Any]
Report = Callable[[dict[str, Any]], Any]


def _ignore(_figures: dict[str, Any]) -> None:
    pass


class Unavailable(Exception):
    """Neither the loader's admin channel nor the storage can serve this command: one line, what and
    why and what to do (cli/main.py prints it and exits 1)."""


def socket_path(settings: Settings) -> Path:
    return settings.data_dir / SOCKET_NAME


def chdb_dir(settings: Settings) -> Path:
    return Path(settings.resolved_dsn.split("://", 1)[1].split("?", 1)[0])


def delegate(settings: Settings, job: str, args: dict[str, Any], out: Write, err: Write,
             report: Report = _ignore) -> int | None:
    """Run `job` in the live loader, writing its output with `out` and its progress with `err`;
    returns its exit code, or None when no loader listens (the command opens the storage itself)."""
    if not settings.embedded:
        return None
    path = socket_path(settings)
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ANSWER_TIMEOUT_S)
    try:
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket file left by a loader that died: nobody owns chDB through it
        except OSError as exc:
            raise Unavailable(f"cannot connect to the loader's admin channel {path}: {exc.strerror}; "
                              "run the command as the user running the stack") from None
        request = orjson.dumps({"job": job, "args": args}) + b"\n"
        if len(request) > MAX_REQUEST_BYTES:
            err(f"request too large for the admin channel ({len(request)} bytes, at most {MAX_REQUEST_BYTES})")
            return 2
        return _converse(sock, path, job, request, out, err, report)
    finally:
        sock.close()


def _converse(sock: socket.socket, path: Path, job: str, request: bytes, out: Write, err: Write,
              report: Report) -> int:
    stuck = Unavailable(f"the loader's admin channel {path} did not answer within {ANSWER_TIMEOUT_S:.0f} s: the "
                        "loader may be stuck; look at its log, then restart the stack (`dnma down`, `dnma up`)")
    try:
        sock.sendall(request)
        reader = sock.makefile("rb")
        accepted = False
        for line in reader:
            frame = orjson.loads(line)
            if "accepted" in frame:
                accepted = True
                sock.settimeout(None)  # a job may run for long (an export has no time limit)
            elif "out" in frame:
                out(frame["out"])
            elif "err" in frame:
                err(frame["err"])
            elif "report" in frame:
                report(frame["report"])
            elif "error" in frame:
                err(f"refused by the loader: {frame['error']}")
                return int(frame.get("exit", 2))
            elif "exit" in frame:
                return int(frame["exit"])
    except TimeoutError:
        raise stuck from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise Unavailable(f"the loader's admin channel {path} broke during job {job} ({type(exc).__name__}): "
                          "the loader may have stopped; look at its log") from None
    if not accepted:
        raise stuck
    raise Unavailable(f"the loader closed the admin channel {path} before job {job} ended: it stopped or "
                      "crashed; look at its log, then run the command again")


def open_storage(settings: Settings) -> Any:
    """A client on the storage for a command run with no loader. A chDB directory another process
    holds (its `status` file is flock'ed) is refused with one line, before chDB prints its own errors."""
    from clickhouse_connect.driver.exceptions import ProgrammingError

    from dnma.chclient import get_client

    busy = Unavailable(f"the ClickHouse data directory {chdb_dir(settings)} is held by another process and no "
                       f"loader answers on {socket_path(settings)}: stop that process, or restart the stack "
                       "(`dnma down`, `dnma up`), then run the command again")
    if settings.embedded and _locked(chdb_dir(settings) / "status"):
        raise busy
    try:
        return get_client(settings)
    except ProgrammingError as exc:
        if "Unable to open the chdb engine" in str(exc):
            raise busy from None
        raise


def _locked(status: Path) -> bool:
    """Another process holds ClickHouse's lock on its directory (this one may: chDB is in-process)."""
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # The holder writes "PID: n" in the file; flock conflicts between two descriptors of one process.
        return os.read(fd, 256).split(b"\n", 1)[0].strip() != f"PID: {os.getpid()}".encode()
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def loader_live(settings: Settings) -> bool:
    """The loader of this data directory answers on its admin channel (the `ping` job)."""
    return delegate(settings, "ping", {}, out=_drop, err=_drop) == 0


def _drop(_text: str) -> None:
    pass


def read_client(settings: Settings) -> Any:
    """A client for a command's reads: the live loader's read-only endpoint when it runs (it owns
    chDB), else the storage opened here (open_storage)."""
    if settings.embedded and loader_live(settings):
        from dnma.chclient import get_reader_client

        return get_reader_client(settings)
    return open_storage(settings)
