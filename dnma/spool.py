"""The durable spool between collectors and the loader: append-only segment files of framed records,
one segment per writer process, group-committed (one write + fsync per window) before any ack.

Layout of `spool_dir` (the loader is the only reader; collector workers are the writers):

- `<host>-<pid>-<uuid>-<seq>.open`: a segment being written. Its writer holds an exclusive
  `flock` on it for its whole life, so a reader that can take the lock knows the writer is dead.
- `<name>.seg`: a finished segment (renamed by its writer on rotation/close, or by the loader
  for a dead writer). Nothing is ever appended to it again.
- `.<name>.tmp`: a segment being created (ignored by readers until it is locked and renamed).
- `_loader.state`: the loader's committed offsets; writers read it to size the unloaded backlog.

A segment starts with an 8-byte magic; then frames
`<u32 length><u32 crc32(length bytes + payload)><payload>`, so a torn tail (partial frame, zeros
from a crash) or a corrupted frame is detected and never read. A frame's payload is a *block*: one
or more whole records joined by `\n` (records never contain one: they are JSON lines), up to about
BLOCK_BYTES. A bulk request's records then cost one frame per block, not one per record, to write
and to read; a block is already JSONEachRow for ClickHouse. A record holds only the columns its
hit sets: a missing key is the column's default (dnma/hits.py).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

MAGIC = b"DNMASPL1"
HEADER = struct.Struct("<II")
MAX_RECORD = 16 * 1024 * 1024  # a frame is at most a block; anything bigger is corruption
BLOCK_BYTES = 256 * 1024  # records are packed into one frame up to about this size
OPEN_SUFFIX = ".open"
LOADER_STATE_FILE = "_loader.state"  # the loader's offsets, in the spool dir (see aggregator/loader_state)
DONE_SUFFIX = ".seg"
_DIR_STAT_INTERVAL_S = 1.0  # how stale the other writers' share of the size cap may be
_DIR_STAT_INTERVAL_FULL_S = 0.2  # when refusing, look again soon: the loader may have drained


class SpoolFull(Exception):
    """The spool is at its size cap: answer 503 with Retry-After."""


# --- framing -------------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """One record as written on disk."""
    length = struct.pack("<I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length))
    return length + struct.pack("<I", crc) + payload


def frame_records(records: list[bytes]) -> bytes:
    """Records as written on disk: packed into blocks of about BLOCK_BYTES, one frame each."""
    out: list[bytes] = []
    block: list[bytes] = []
    size = 0
    for record in records:
        if block and size + len(record) > BLOCK_BYTES:
            out.append(_frame_block(block))
            block, size = [], 0
        block.append(record)
        size += len(record) + 1
    if block:
        out.append(_frame_block(block))
    return b"".join(out)


def _frame_block(block: list[bytes]) -> bytes:
    payload = b"\n".join(block)
    if payload.count(b"\n") != len(block) - 1:
        raise ValueError("a spool record contains a newline")
    return frame(payload)


def block_rows(block: bytes) -> int:
    """How many records a block (a frame's payload) holds."""
    return block.count(b"\n") + 1


def parse_frames(data: bytes | memoryview, start: int = 0) -> tuple[list[bytes], int]:
    """Complete valid blocks of `data` from `start`; returns them and the offset just after the last.

    Stops at the first incomplete or invalid frame: for a live segment that is a write in progress,
    for a finished one a torn tail (or corruption, which the caller detects as end < size).
    """
    view = memoryview(data)
    records: list[bytes] = []
    pos = start
    end = len(view)
    while pos + HEADER.size <= end:
        length, crc = HEADER.unpack_from(view, pos)
        if length == 0 or length > MAX_RECORD:  # zero-filled tail or garbage length
            break
        stop = pos + HEADER.size + length
        if stop > end:
            break
        payload = view[pos + HEADER.size : stop]
        if zlib.crc32(payload, zlib.crc32(view[pos : pos + 4])) != crc:
            break
        records.append(bytes(payload))
        pos = stop
    return records, pos


# --- segments as seen by a reader ----------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    name: str  # stable across the .open -> .seg rename: the loader keys its offsets on it
    path: Path
    finished: bool

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:  # renamed meanwhile (finished): the caller rescans
            return 0


def list_segments(spool_dir: Path) -> list[Segment]:
    """Every segment, open or finished, in name order (host-pid-uuid-seq: a writer's own order)."""
    found: dict[str, Segment] = {}
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        n = entry.name
        if n.startswith("."):
            continue
        if n.endswith(DONE_SUFFIX):
            stem = n[: -len(DONE_SUFFIX)]
            found[stem] = Segment(stem, Path(entry.path), True)
        elif n.endswith(OPEN_SUFFIX):
            stem = n[: -len(OPEN_SUFFIX)]
            found.setdefault(stem, Segment(stem, Path(entry.path), False))  # .seg wins a rename race
    return [found[k] for k in sorted(found)]


def spool_bytes(spool_dir: Path) -> int:
    """Total size of every segment file on disk (a gauge; the size cap bounds `backlog_bytes`)."""
    total = 0
    try:
        for entry in os.scandir(spool_dir):
            if entry.name.endswith((DONE_SUFFIX, OPEN_SUFFIX)) or entry.name.endswith(".tmp"):
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        pass
    return total


def loaded_offsets(spool_dir: Path) -> dict[str, int]:
    """The loader's committed offset per segment (its state file), {} when there is none yet."""
    try:
        doc = orjson.loads((spool_dir / LOADER_STATE_FILE).read_bytes())
        return {str(k): int(v) for k, v in doc.get("committed", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def backlog_bytes(spool_dir: Path) -> int:
    """Bytes of the spool not loaded yet: what the size cap bounds (loaded bytes still sitting in
    open segments do not count, or a quiet writer's segment would fill the cap forever)."""
    committed = loaded_offsets(spool_dir)
    total = 0
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        n = entry.name
        if n.endswith(".tmp"):
            continue
        if n.endswith(DONE_SUFFIX):
            stem = n[: -len(DONE_SUFFIX)]
        elif n.endswith(OPEN_SUFFIX):
            stem = n[: -len(OPEN_SUFFIX)]
        else:
            continue
        try:
            total += max(0, entry.stat().st_size - committed.get(stem, 0))
        except FileNotFoundError:
            pass
    return total


def read_segment(path: Path, offset: int, max_bytes: int = 64 * 1024 * 1024) -> tuple[list[bytes], int]:
    """Complete blocks of one segment from `offset` (0 = start, the magic is skipped)."""
    start = max(offset, len(MAGIC))
    with open(path, "rb") as f:
        if offset == 0 and f.read(len(MAGIC)) != MAGIC:
            return [], 0
        f.seek(start)
        data = f.read(max_bytes)
    records, pos = parse_frames(data)
    return records, start + pos


def claim_if_orphaned(seg: Segment) -> Segment:
    """Finish an open segment whose writer is dead (its flock is free): rename it to `.seg`.

    Writers lock before the segment ever gets its `.open` name, so a free lock means a dead writer.
    """
    if seg.finished:
        return seg
    try:
        fd = os.open(seg.path, os.O_RDONLY)
    except FileNotFoundError:
        return seg  # finished meanwhile; the next scan sees the .seg
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return seg  # alive
            raise
        done = seg.path.with_name(seg.name + DONE_SUFFIX)
        os.rename(seg.path, done)
        fsync_dir(seg.path.parent)
        return Segment(seg.name, done, True)
    finally:
        os.close(fd)


def remove_abandoned_tmp(spool_dir: Path, min_age_s: float = 60.0) -> int:
    """Delete segments a writer died while creating (unlocked `.tmp`, magic only, never acked).

    The age guard covers the instant between a writer's create and its flock.
    """
    removed = 0
    for path in spool_dir.glob(".*.tmp"):
        try:
            if time.time() - path.stat().st_mtime < min_age_s:
                continue
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
            removed += 1
        except OSError:
            pass  # locked: a live writer
        finally:
            os.close(fd)
    return removed


def iter_records(spool_dir: Path) -> Iterator[bytes]:
    """Every complete record in every segment (for tests and tools)."""
    for seg in list_segments(spool_dir):
        offset = 0
        while True:
            try:
                records, end = read_segment(seg.path, offset)
            except FileNotFoundError:
                # renamed .open -> .seg while we read: continue on the new name
                done = seg.path.with_name(seg.name + DONE_SUFFIX)
                if done.exists() and seg.path != done:
                    seg = Segment(seg.name, done, True)
                    continue
                break
            for block in records:
                yield from block.split(b"\n")
            if not records:
                break
            offset = end


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the writer ----------------------------------------------------------------------------------


class SpoolWriter:
    """One per collector worker process. `append` returns once its records are on disk."""

    def __init__(self, spool_dir: Path, *, max_bytes: int, segment_bytes: int, commit_interval_ms: float) -> None:
        self.spool_dir = Path(spool_dir)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.commit_interval = commit_interval_ms / 1000.0
        self.stats: dict[str, int] = {"records": 0, "bytes": 0, "fsyncs": 0, "full_refusals": 0, "segments": 0}
        self._prefix = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._seq = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._seg_size = 0
        self._pending: list[tuple[bytes, int, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dir_bytes = 0  # the spool's unloaded bytes (all writers) at the last directory stat
        self._since_stat = 0  # bytes this writer added since then
        self._stat_at = 0.0
        self._inflight = 0  # bytes handed to the executor, not yet on disk

    # -- lifecycle
    async def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._open_segment)
        self._refresh_size(force=True)
        self._wakeup = asyncio.Event()  # bound to the running loop
        self._task = asyncio.create_task(self._committer(), name="spool-group-commit")

    async def close(self) -> None:
        """Flush what is pending, fsync, and mark the segment finished."""
        if self._task is None:
            return
        self._closing = True
        self._wakeup.set()
        await self._task
        self._task = None
        await asyncio.get_running_loop().run_in_executor(None, self._finish_segment)

    # -- appending
    def is_full(self) -> bool:
        self._refresh_size()
        return self._dir_bytes + self._since_stat >= self.max_bytes

    async def append(self, records: list[bytes], other_kind: list[bytes] | None = None) -> None:
        """Write `records` contiguously; return once fsynced. SpoolFull (nothing written) over the cap.
        `other_kind`: records of another kind (dnma/quarantine.py), written with them in blocks of
        their own, so that a block's first record tells the kind of all of its records."""
        if self._task is None or self._closing:
            raise RuntimeError("SpoolWriter is not started (or is closing)")
        if not records and not other_kind:
            return
        if self.is_full():
            self.stats["full_refusals"] += 1
            raise SpoolFull(f"spool at its cap of {self.max_bytes} bytes")
        data = frame_records(records)
        count = len(records)
        if other_kind:
            data += frame_records(other_kind)
            count += len(other_kind)
        # Counted now so concurrent appends in the same window see the cap too.
        self._since_stat += len(data)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((data, count, fut))
        self._wakeup.set()
        await fut

    # -- group commit
    async def _committer(self) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # At most one fsync per window: appends arriving meanwhile share the next one.
            wait = self.commit_interval - (time.monotonic() - last)
            if wait > 0 and not self._closing:
                await asyncio.sleep(wait)
            batch, self._pending = self._pending, []
            if batch:
                last = time.monotonic()
                data = b"".join(b[0] for b in batch)
                self._inflight = len(data)
                try:
                    await loop.run_in_executor(None, self._write_and_sync, data)
                except BaseException as exc:  # the appends fail: nothing of them is acknowledged
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception) else OSError(str(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    self._inflight = 0
                else:
                    self._inflight = 0
                    self.stats["fsyncs"] += 1
                    self.stats["records"] += sum(b[1] for b in batch)
                    self.stats["bytes"] += len(data)
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
            if self._closing and not self._pending:
                return

    # -- file work (executor thread; the committer runs one at a time, so never concurrent)
    def _open_segment(self) -> None:
        self._seq += 1
        name = f"{self._prefix}-{self._seq:06d}"
        tmp = self.spool_dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        # Locked before it gets a visible name: the loader never sees an unlocked live segment.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, MAGIC)
        os.fsync(fd)
        path = self.spool_dir / f"{name}{OPEN_SUFFIX}"
        os.rename(tmp, path)
        fsync_dir(self.spool_dir)
        self._fd, self._path, self._seg_size = fd, path, len(MAGIC)
        self.stats["segments"] += 1

    def _finish_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        os.fsync(self._fd)
        done = self._path.with_suffix(DONE_SUFFIX)
        os.rename(self._path, done)
        fsync_dir(self.spool_dir)
        os.close(self._fd)  # releases the flock, after the rename
        self._fd, self._path = None, None

    def _write_and_sync(self, data: bytes) -> None:
        if self._fd is None:
            self._open_segment()
        elif self._seg_size > len(MAGIC) and self._seg_size + len(data) > self.segment_bytes:
            self._finish_segment()
            self._open_segment()
        assert self._fd is not None
        before = self._seg_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError:
            # After a failed write/fsync the file's tail is unknown: cut it back and move on to a
            # fresh segment so later acks never sit behind a hole.
            try:
                os.ftruncate(self._fd, before)
                self._finish_segment()
            except OSError:
                self._fd = None
            raise
        self._seg_size += len(data)

    def _refresh_size(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = _DIR_STAT_INTERVAL_FULL_S if self._dir_bytes + self._since_stat >= self.max_bytes else _DIR_STAT_INTERVAL_S
        if force or now - self._stat_at >= interval:
            # Our own pending (not yet written) bytes are not in the stat: keep them counted.
            pending = sum(len(p[0]) for p in self._pending) + self._inflight
            self._dir_bytes = backlog_bytes(self.spool_dir)
            self._since_stat = pending
            self._stat_at = now
