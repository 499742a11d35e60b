"""The loader process's logs: one event per line in DNMA's schema (dnma/logs.py: time, level,
logger, event, fields), for every logger of the process (loader, endpoint, sessionizer, checks,
admin jobs), on stderr or, with log_file set, in that file rotated by size.
"""

from __future__ import annotations

import logging
from typing import Any

from dnma import logs
from dnma.settings import Settings

log = logging.getLogger("dnma.loader")


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured event per line. Fields are counts, offsets and error classes: no hit content."""
    logs.event(log, event, level, **fields)


def setup_logging(settings: Settings) -> None:
    """Every logger of this process in DNMA's log schema (dnma/logs.py)."""
    logs.setup_logging(settings)
