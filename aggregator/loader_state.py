"""The loader's durable bookkeeping: committed offset per spool segment and the pending batch intent.
Written with fsync + atomic rename, so after a kill -9 it is either the old or the new state, whole.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dnma.spool import LOADER_STATE_FILE as STATE_FILE  # in spool_dir: offsets travel with their segments


@dataclass(frozen=True)
class Range:
    segment: str  # segment name (stem), stable across the .open -> .seg rename
    start: int
    end: int


@dataclass
class Intent:
    """A batch about to be inserted: exactly these byte ranges, under exactly this token."""

    ranges: list[Range]

    @property
    def token(self) -> str:
        # Deterministic in the ranges only: a redo after a crash sends the same token, so
        # ClickHouse drops the blocks it already stored (insert_deduplication_token).
        raw = orjson.dumps([[r.segment, r.start, r.end] for r in self.ranges])
        return "dnma-loader-" + hashlib.sha256(raw).hexdigest()[:32]


@dataclass
class LoaderState:
    path: Path
    committed: dict[str, int] = field(default_factory=dict)
    pending: Intent | None = None

    @classmethod
    def load(cls, spool_dir: Path) -> LoaderState:
        path = spool_dir / STATE_FILE
        state = cls(path)
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return state
        state.committed = {str(k): int(v) for k, v in raw.get("committed", {}).items()}
        pending = raw.get("pending")
        if pending:
            state.pending = Intent([Range(str(s), int(a), int(b)) for s, a, b in pending])
        return state

    def save(self) -> None:
        doc = {
            "committed": self.committed,
            "pending": [[r.segment, r.start, r.end] for r in self.pending.ranges] if self.pending else None,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, orjson.dumps(doc))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def begin(self, intent: Intent) -> None:
        """Record the intent; on a failed write (a full disk) the state stays as it was, in memory too."""
        self.pending = intent
        try:
            self.save()
        except OSError:
            self.pending = None
            raise

    def commit(self) -> None:
        """Move the offsets past the pending batch; on a failed write nothing moves (retry later)."""
        assert self.pending is not None
        before = self.committed
        self.committed = dict(before)
        for r in self.pending.ranges:
            self.committed[r.segment] = r.end
        pending, self.pending = self.pending, None
        try:
            self.save()
        except OSError:
            self.committed, self.pending = before, pending
            raise
