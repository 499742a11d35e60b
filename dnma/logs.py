"""One log schema for every DNMA process (collector, loader and its endpoint, command-line jobs):
one JSON object a line, `time` (ISO-8601 UTC), `level`, `logger`, `event`, then the event's fields.

A process logs on stderr, or, when `log_file` is set (`dnma up` sets it per process), appends to
that file and rotates it past `log_max_bytes`, keeping `log_backup_count` old files. Several
processes may share one file (the collector's workers): each line is one O_APPEND write, and a
rotation happens under a lock, after which every process reopens the new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dnma.settings import Settings

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "fields", "taskName", "color_message",  # uvicorn's message with terminal colours
}


def iso_utc(created: float) -> str:
    """2026-12-07T13:20:00.123Z: the host's clock (a log line is dated when it was written)."""
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The event's fields: `extra={"fields": {...}}` (log_event) and any other `extra=` keys."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
    return {**extra, **getattr(record, "fields", {})}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": iso_utc(record.created), "level": record.levelname,
                               "logger": record.name, "event": record.getMessage()}
        for key, value in fields_of(record).items():
            doc.setdefault(key, value)  # a field never hides the schema's own keys
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal (log_format = "text"): the same content, one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in fields_of(record).items())
        line = f"{iso_utc(record.created)} {record.levelname} {record.name} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class RotatingAppendHandler(logging.Handler):
    """Appends each record to `path` as one write; past `max_bytes` the file is renamed to
    `path.1` (`.1` to `.2`, ..., at most `backup_count` kept) under an flock on `path.lock`.
    Any process whose open file is no longer `path` (another one rotated it) reopens it."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        super().__init__()
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd = -1
        self._ino = -1
        self._io_lock = threading.Lock()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._ino = fd, os.fstat(fd).st_ino

    def _current(self) -> int:
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = -2
        if self._fd < 0 or ino != self._ino:
            self._open()
        return self._fd

    def _rotate(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return
            if st.st_ino != self._ino or st.st_size <= self.max_bytes:
                return  # another process rotated it meanwhile
            if self.backup_count <= 0:
                os.truncate(self.path, 0)
                return
            for n in range(self.backup_count - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{n}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._open()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            with self._io_lock:
                fd = self._current()
                os.write(fd, data)
                if self.max_bytes > 0 and os.fstat(fd).st_size > self.max_bytes:
                    self._rotate()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with self._io_lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
        super().close()


def setup_logging(settings: Settings, *, log_file: Path | None = None) -> logging.Handler:
    """Every logger of this process (ours, uvicorn's, the libraries') through one handler in the
    schema above: `log_file` (else settings.log_file) with rotation, or stderr."""
    path = log_file or settings.log_file
    handler: logging.Handler
    if path is not None:
        handler = RotatingAppendHandler(Path(path), settings.log_max_bytes, settings.log_backup_count)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    level = logging.getLevelName(settings.log_level.upper())
    level = level if isinstance(level, int) else logging.INFO
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        with contextlib.suppress(Exception):
            old.close()
    root.addHandler(handler)
    # Libraries say only their warnings: httpx's INFO lines, for one, carry whole URLs.
    root.setLevel(max(level, logging.WARNING))
    for name in ("dnma", "uvicorn", "uvicorn.error"):
        ours = logging.getLogger(name)
        ours.handlers[:] = []
        ours.setLevel(level)
        ours.propagate = True
    return handler


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One event of the schema: `name` as `event`, `fields` beside it."""
    logger.log(level, name, extra={"fields": fields})


class CleanStop:
    """A marker file that says a process is running: written at start, removed at a clean stop.
    Found at start, it means the previous run ended without stopping cleanly (killed, crashed,
    host lost); `start` returns what it held (the previous run's pid and start time)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self) -> dict[str, Any] | None:
        previous: dict[str, Any] | None = None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            previous = doc if isinstance(doc, dict) else {}
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            previous = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"pid": os.getpid(), "started": iso_utc(time.time())}), encoding="utf-8")
        return previous

    def stopped(self) -> None:
        self.path.unlink(missing_ok=True)
