"""The loader process's logs: one structured event per line on stderr (JSON lines in production,
text for a person), for the whole `dnma.*` logger tree of the process (loader, endpoint, sessionizer).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from dnma.settings import Settings

log = logging.getLogger("dnma.loader")


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
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


def setup_logging(settings: Settings) -> None:
    """The whole `dnma.*` logger tree of this process (loader, endpoint, sessionizer) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if settings.log_format == "json" else _TextFormatter())
    root = logging.getLogger("dnma")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
