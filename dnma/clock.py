"""The one clock of every DNMA process: the host's, or shifted by the `now` setting (DNMA_NOW) so that
a test or a rehearsal runs the whole stack (collector, loader and its passes, CLI jobs, simulator) at
another instant. SQL never asks ClickHouse for `now()`/`today()`: the instant is sent from here.

DNMA_NOW takes either an offset from the host clock (`+3600`, `-2.5d`, `+90m`; units s, m, h, d)
or an ISO-8601 instant with its zone (`2026-03-29T01:30:00Z`). An instant becomes an offset when a
process first reads it, so processes started apart disagree by their start gap: `dnma up` and the
test harness turn it into one offset before starting the processes (`as_offset`).

`@<path>` makes the clock follow a file holding either form: every process re-reads it within a
second of a change, so a rehearsal (or a test) can move the running stack's clock back or forward.

Whatever moves the clock (that file, or the host's clock stepped by NTP or by hand), `JumpWatch`
notices it against the monotonic clock; the processes record what they saw in `clock_jumps.jsonl`
beside their data, and the `clock_jumps` quality check says what happened.
"""

from __future__ import annotations

import json
import os
import re
import time as _time
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

# The reference zone of the ministry's figures (days, weeks, the 24 h rule's wording).
PARIS = ZoneInfo("Europe/Paris")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_OFFSET_RE = re.compile(r"^([+-]\d+(?:\.\d+)?)([smhd]?)$")

_offset: float | None = None
_follow: Path | None = None  # `@path`: the offset is read again from this file when it changes
_follow_seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file when last read
_follow_checked = 0.0  # monotonic time of the last look at the file
FOLLOW_CHECK_S = 0.5
# A jump is a disagreement with the monotonic clock beyond this: NTP slews small errors, it steps
# (and people set) large ones; a process that slept or was suspended is not a jump either way.
JUMP_MIN_S = 120.0
JUMPS_FILE = "clock_jumps.jsonl"


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
    """`value` as an offset string (an instant pinned now), to hand to processes started later; a
    followed file (`@path`) is handed on as it is."""
    value = value.strip()
    if value.startswith("@"):
        return value
    return "" if not value else f"{parse(value):+.6f}"


def configure(value: str) -> float:
    """Sets this process's offset from a `now` setting; returns it."""
    global _offset, _follow, _follow_seen
    value = value.strip()
    if value.startswith("@"):
        _follow, _follow_seen = Path(value[1:]), None
        _offset = _read_follow(0.0)
    else:
        _follow = None
        _offset = parse(value)
    return _offset


def _read_follow(current: float) -> float:
    """The offset the followed file holds now (`current` while it is missing or unreadable)."""
    global _follow_seen, _follow_checked
    assert _follow is not None
    _follow_checked = _time.monotonic()
    try:
        st = _follow.stat()
        seen = (st.st_mtime_ns, st.st_size)
        if seen == _follow_seen:
            return current
        value = _follow.read_text(encoding="utf-8")
        _follow_seen = seen
        return parse(value)
    except (OSError, ClockSettingError):
        return current


def offset() -> float:
    """This process's offset, read from the settings the first time it is needed (and from the
    followed file again when it changed)."""
    global _offset
    if _offset is None:
        from dnma.settings import get_settings

        configure(get_settings().now)
    if _follow is not None and _time.monotonic() - _follow_checked >= FOLLOW_CHECK_S:
        _offset = _read_follow(_offset or 0.0)
    return _offset or 0.0


def following() -> bool:
    """True when the offset follows a file (`@path`): it may change while the process runs."""
    return _follow is not None


def time() -> float:
    """Unix seconds on DNMA's clock."""
    if _offset is not None and _follow is None:
        return _time.time() + _offset
    return _time.time() + offset()


class JumpWatch:
    """Notices DNMA's clock moving against the monotonic clock: `observe()` returns the jump in
    seconds (negative: back) when it moved by more than JUMP_MIN_S since the last call."""

    def __init__(self) -> None:
        self._last = (_time.monotonic(), time())

    def observe(self) -> float | None:
        mono, wall = _time.monotonic(), time()
        jump = (wall - self._last[1]) - (mono - self._last[0])
        self._last = (mono, wall)
        return jump if abs(jump) >= JUMP_MIN_S else None


def record_jump(data_dir: Path, process: str, jump_s: float) -> dict[str, object]:
    """Appends what a process saw to data_dir/clock_jumps.jsonl (one short line, O_APPEND: the
    processes write it side by side): when, on DNMA's clock (`at`) and the host's (`host_at`: a
    later jump cannot move it out of the check's window); returns the record."""
    record: dict[str, object] = {"at": round(time(), 3), "host_at": round(_time.time(), 3),
                                 "jump_s": round(jump_s, 1), "process": process, "pid": os.getpid()}
    fd = os.open(data_dir / JUMPS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
    return record


def read_jumps(data_dir: Path) -> list[dict[str, object]]:
    """Every jump recorded in data_dir (oldest first); a torn last line is skipped."""
    try:
        lines = (data_dir / JUMPS_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(dict(json.loads(line)))
        except ValueError:
            continue
    return out


def now(tz: tzinfo = UTC) -> datetime:
    """The aware date-time on DNMA's clock, in `tz` (UTC by default)."""
    return datetime.fromtimestamp(time(), tz)


def today(tz: tzinfo = PARIS) -> date:
    """The day on DNMA's clock in `tz` (Paris by default: the ministry's days)."""
    return now(tz).date()
