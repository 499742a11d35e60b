"""The one clock of every DNMA process: the host's, or shifted by the `now` setting (DNMA_NOW) so that
a test or a rehearsal runs the whole stack (collector, loader and its passes, CLI jobs, simulator) at
another instant. SQL never asks ClickHouse for `now()`/`today()`: the instant is sent from here.

DNMA_NOW takes either an offset from the host clock (`+3600`, `-2.5d`, `+90m`; units s, m, h, d)
or an ISO-8601 instant with its zone (`2026-03-29T01:30:00Z`). An instant becomes an offset when a
process first reads it, so processes started apart disagree by their start gap: `dnma up` and the
test harness turn it into one offset before starting the processes (`as_offset`).
"""

from __future__ import annotations

import re
import time as _time
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo

# The reference zone of the ministry's figures (days, weeks, the 24 h rule's wording).
PARIS = ZoneInfo("Europe/Paris")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_OFFSET_RE = re.compile(r"^([+-]\d+(?:\.\d+)?)([smhd]?)$")

_offset: float | None = None


class ClockSettingError(ValueError):
    """DNMA_NOW is neither an offset nor an instant with a zone."""


def parse(value: str, host_now: float | None = None) -> float:
    """The offset in seconds that `value` (the `now` setting) adds to the host clock."""
    value = value.strip()
    if not value:
        return 0.0
    match = _OFFSET_RE.match(value)
    if match:
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ClockSettingError(f"DNMA_NOW={value!r}: expected an offset like -3d or an instant like "
                                "2026-03-29T01:30:00Z") from exc
    if instant.tzinfo is None:
        raise ClockSettingError(f"DNMA_NOW={value!r}: an instant needs its zone (Z or +01:00)")
    return instant.timestamp() - (_time.time() if host_now is None else host_now)


def as_offset(value: str) -> str:
    """`value` as an offset string (an instant pinned now), to hand to processes started later."""
    return "" if not value.strip() else f"{parse(value):+.6f}"


def configure(value: str) -> float:
    """Sets this process's offset from a `now` setting; returns it."""
    global _offset
    _offset = parse(value)
    return _offset


def offset() -> float:
    """This process's offset, read from the settings the first time it is needed."""
    global _offset
    if _offset is None:
        from dnma.settings import get_settings

        _offset = parse(get_settings().now)
    return _offset


def time() -> float:
    """Unix seconds on DNMA's clock."""
    return _time.time() + (_offset if _offset is not None else offset())


def now(tz: tzinfo = UTC) -> datetime:
    """The aware date-time on DNMA's clock, in `tz` (UTC by default)."""
    return datetime.fromtimestamp(time(), tz)


def today(tz: tzinfo = PARIS) -> date:
    """The day on DNMA's clock in `tz` (Paris by default: the ministry's days)."""
    return now(tz).date()
