"""The loader's batches: spool ranges -> pending intent -> insert under the ranges' dedup token ->
committed offsets; segments loaded to their end retired. ClickHouse refusing a record never blocks the rest.

Exactly-once, step by step: (1) pick the next byte ranges of the segments and write them as the
pending intent (fsync, rename); (2) insert those rows with a token derived from the ranges;
(3) advance the committed offsets. A kill -9 between (1) and (3) leaves the intent on disk: the
next start redoes the very same ranges with the very same token, and ClickHouse drops the blocks it
already has. A segment is deleted only once finished and committed to its end.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aggregator.durability import TableDirs
from aggregator.loader_logs import log_event
from aggregator.loader_state import Intent, LoaderState, Range
from dnma import clock, quarantine, spool
from dnma.settings import Settings

_READ_CHUNK = 32 * 1024 * 1024  # bytes read from one segment per batch-building pass


class DataError(Exception):
    """ClickHouse refused the data itself (a parse or type error): retrying would not help."""


# ClickHouse error codes that mean "this data cannot be inserted", not "ClickHouse is unwell".
_DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 173, 321, 407})


def is_data_error(exc: Exception) -> bool:
    text = str(exc)
    return any(f"Code: {code}." in text for code in _DATA_ERROR_CODES) or "Cannot parse" in text


# --- reading the spool -----------------------------------------------------------------------------


def _oldest_received_at(blocks: list[bytes]) -> int:
    """The batch's oldest reception time, from its first record (blocks are in arrival order)."""
    try:
        first = blocks[0]
        nl = first.find(b"\n")
        value = orjson.loads(first if nl < 0 else first[:nl]).get("received_at", 0)
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return 0
    return value if isinstance(value, int) else 0


def _segment_by_name(spool_dir: Path) -> dict[str, spool.Segment]:
    return {s.name: s for s in spool.list_segments(spool_dir)}


def read_range(seg: spool.Segment, r: Range) -> list[bytes]:
    """Exactly the blocks of `r` (a redo must rebuild the very same rows)."""
    path = seg.path
    for _ in range(3):  # .open may be renamed to .seg between listing and opening
        try:
            with open(path, "rb") as f:
                f.seek(r.start)
                data = f.read(r.end - r.start)
            break
        except FileNotFoundError:
            path = path.with_name(r.segment + spool.DONE_SUFFIX)
    else:
        raise FileNotFoundError(f"segment {r.segment} vanished")
    start = len(spool.MAGIC) if r.start == 0 else 0
    blocks, end = spool.parse_frames(data, start)
    if end != len(data):
        raise ValueError(f"segment {r.segment} range {r.start}-{r.end} no longer parses")
    return blocks


def next_intent(spool_dir: Path, committed: dict[str, int], max_rows: int) -> tuple[Intent, list[bytes], int]:
    """The next ranges to load: new complete blocks of every segment, up to about max_rows records
    (whole blocks: at least one). Returns the intent, its blocks and how many records they hold."""
    ranges: list[Range] = []
    blocks: list[bytes] = []
    rows = 0
    for seg in spool.list_segments(spool_dir):
        room = max_rows - rows
        if room <= 0:
            break
        offset = committed.get(seg.name, 0)
        if seg.size <= max(offset, len(spool.MAGIC)):
            continue
        try:
            got, end = spool.read_segment(seg.path, offset, _READ_CHUNK)
        except FileNotFoundError:
            continue  # renamed meanwhile: seen under its new name next pass
        if not got:
            continue
        taken = 0
        for i, block in enumerate(got):
            n = spool.block_rows(block)
            if taken and taken + n > room:
                got = got[:i]
                end = max(offset, len(spool.MAGIC)) + sum(spool.HEADER.size + len(g) for g in got)
                break
            taken += n
        ranges.append(Range(seg.name, offset, end))  # offset 0 = from the start, magic included
        blocks.extend(got)
        rows += taken
    return Intent(ranges), blocks, rows


# --- the insert ------------------------------------------------------------------------------------


# Parallel parsing splits a batch over threads that the collector needs on a small machine, and one
# thread parses with less CPU in all (bench/README.md): turn it on only when the loader has cores
# of its own.
INSERT_SETTINGS: dict[str, Any] = {"insert_deduplicate": 1, "input_format_parallel_parsing": 0}
BATCH_FILE = "_loader.batch"  # in the spool dir: the batch chDB reads (embedded mode), rewritten per insert


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _without_low_cardinality(type_name: str) -> str:
    """`Map(LowCardinality(String), String)` -> `Map(String, String)`."""
    while (start := type_name.find("LowCardinality(")) >= 0:
        depth, i = 0, start + len("LowCardinality")
        while True:
            depth += {"(": 1, ")": -1}.get(type_name[i], 0)
            if depth == 0:
                break
            i += 1
        type_name = type_name[:start] + type_name[start + len("LowCardinality(") : i] + type_name[i + 1 :]
    return type_name


def file_insert_sql(client: Any, database: str, path: Path) -> tuple[str, str]:
    """`INSERT INTO hits ... SELECT ... FROM file(path)`, cut where the deduplication token goes: how the
    embedded loader inserts a batch. chDB parses JSONEachRow into LowCardinality columns one value
    at a time, with a dictionary lookup each, most of an insert's CPU. Parsed into plain columns
    (the same types without LowCardinality) and converted column by column on the way into `hits`,
    the same rows cost less than half as much (bench/loader_insert.py; figures in bench/README.md).
    Same rows stored, same deduplication by token (the insert is into `hits`), same materialized views."""
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'hits' ORDER BY position",
        parameters={"db": database},
    ).result_rows
    columns = ", ".join(f"`{name}`" for name, _ in rows)
    structure = ", ".join(f"`{name}` {_without_low_cardinality(type_name)}" for name, type_name in rows)
    settings = ", ".join(f"{k} = {v}" for k, v in INSERT_SETTINGS.items())
    return (
        f"INSERT INTO {database}.hits ({columns}) SETTINGS {settings}, insert_deduplication_token = ",
        f" SELECT {columns} FROM file({_sql_string(str(path))}, 'JSONEachRow', {_sql_string(structure)})",
    )


# --- the batches of one loader ---------------------------------------------------------------------


@dataclass
class Metrics:
    """The loader's gauges (its status file): the batches' counts, the process's state and retries."""

    batches: int = 0
    rows: int = 0
    rejected: int = 0
    retries: int = 0
    redone: int = 0
    segments_retired: int = 0
    backlog_bytes: int = 0
    backlog_segments: int = 0
    lag_seconds: float = 0.0
    last_insert_ms: float = 0.0
    last_error: str = ""
    state: str = "starting"
    started_at: float = field(default_factory=time.time)


class Batches:
    """One loader's way from its spool to `hits`. `retry(what, fn, give_up)` is the loader's: it
    calls fn until it succeeds, or raises DataError once `give_up(exc)` says the data is at fault."""

    def __init__(self, settings: Settings, metrics: Metrics, retry: Any) -> None:
        self.settings = settings
        self.spool_dir = settings.resolved_spool_dir
        self.metrics = metrics
        self._retry = retry
        self.state = LoaderState.load(self.spool_dir)
        self.client: Any = None
        self.last_rows = 0  # records of the last batch built
        self._file_insert: tuple[str, str] | None = None  # embedded mode: file_insert_sql, set by connect
        self._table_dirs: TableDirs | None = None  # embedded mode: fsynced after each insert

    def connect(self, client: Any) -> None:
        """Insert through `client` from now on (migrated: `hits` has its final columns)."""
        self.client = client
        if self.settings.embedded:
            self._file_insert = file_insert_sql(self.client, self.settings.clickhouse_database,
                                                (self.spool_dir / BATCH_FILE).resolve())
            self._table_dirs = TableDirs(self.client, self.settings.clickhouse_database)
        # A migration may have settled the pending batch (aggregator.migrate): read what it left.
        self.state = LoaderState.load(self.spool_dir)

    # -- one batch
    def redo_pending(self) -> None:
        """A batch was intended (maybe inserted) before a crash: insert it again, same token."""
        intent = self.state.pending
        if intent is None:
            return
        segs = _segment_by_name(self.spool_dir)
        blocks: list[bytes] = []
        for r in intent.ranges:
            if r.segment not in segs:
                # Only possible if someone removed spool files by hand: nothing left to redo.
                log_event("pending_segment_missing", logging.ERROR, segment=r.segment)
                continue
            blocks.extend(read_range(segs[r.segment], r))
        rows = sum(map(spool.block_rows, blocks))
        self.metrics.redone += 1
        log_event("pending_redo", ranges=len(intent.ranges), rows=rows, token=intent.token)
        self._insert(intent, blocks, rows)

    def load_once(self) -> bool:
        """Insert the next batch, if any; True when one was loaded."""
        intent, blocks, self.last_rows = next_intent(self.spool_dir, self.state.committed,
                                                     self.settings.loader_batch_rows)
        if not intent.ranges:
            return False
        # Durable before the insert: a crash from here on is redone. The state lives in the spool's
        # directory: when its disk is full the loader waits for space, as for ClickHouse.
        self._retry("begin", lambda: self.state.begin(intent), event="spool_state_failed")
        self._insert(intent, blocks, self.last_rows)
        return True

    def _insert(self, intent: Intent, blocks: list[bytes], rows: int) -> int:
        """Insert the batch as JSONEachRow: spool blocks already are JSON lines, one object per
        hit, so ClickHouse parses them natively (no Python per-row work). Embedded, chDB reads them
        from BATCH_FILE (file_insert_sql: cheaper than parsing the body); on a server, they are the body of
        `INSERT ... FORMAT JSONEachRow`. A batch ClickHouse cannot parse is inserted record by
        record instead, so one bad record never blocks the others."""
        kinds: list[bytes] = []  # quarantine-kind blocks (dnma/quarantine.py): not for `hits`
        if any(map(quarantine.is_kind_block, blocks)):
            kinds = [b for b in blocks if quarantine.is_kind_block(b)]
            blocks = [b for b in blocks if not quarantine.is_kind_block(b)]
            rows -= sum(map(spool.block_rows, kinds))
        oldest = _oldest_received_at(blocks)
        if oldest:
            self.metrics.lag_seconds = max(0.0, clock.time() - oldest)  # received_at is on DNMA's clock
        table = f"{self.settings.clickhouse_database}.hits"
        rejected = 0

        def insert(parts: list[bytes], token: str) -> None:
            """Insert the records of `parts` (blocks or records, each one or more whole lines)."""
            t0 = time.perf_counter()
            if self._file_insert:
                with open(self.spool_dir / BATCH_FILE, "wb") as f:  # no joined copy of the batch
                    for part in parts:
                        f.write(part)
                        f.write(b"\n")
                head, tail = self._file_insert
                try:
                    self.client.command(head + _sql_string(token) + tail)
                finally:
                    os.truncate(self.spool_dir / BATCH_FILE, 0)  # no second copy of the hits lies around
            else:
                self.client.raw_insert(table, insert_block=b"\n".join(parts), fmt="JSONEachRow",
                                       settings=INSERT_SETTINGS | {"insert_deduplication_token": token})
            self.metrics.last_insert_ms = round((time.perf_counter() - t0) * 1000, 1)

        if blocks:
            try:
                self._retry("insert", lambda: insert(blocks, intent.token), give_up=is_data_error)
            except DataError:
                records = [r for block in blocks for r in block.split(b"\n")]
                rows, rejected = self._insert_one_by_one(intent, records, insert)
        if kinds:
            self._store_quarantine(kinds, intent.token, insert)
        if self._table_dirs is not None:
            self._table_dirs.sync()  # the parts' renames and dedup log on disk before the offsets move
        self._retry("commit", self.state.commit, event="spool_state_failed")
        self.metrics.batches += 1
        self.metrics.rows += rows
        self.metrics.rejected += rejected
        self.metrics.state = "running"
        log_event("batch_loaded", rows=rows, ranges=len(intent.ranges), insert_ms=self.metrics.last_insert_ms)
        return rows

    def _store_quarantine(self, kinds: list[bytes], token: str, insert: Any) -> None:
        """The batch's quarantine-kind records (aggregator/quarantine.py), exactly-once as the hits;
        records ClickHouse refuses are logged and left, never blocking the spool."""
        from aggregator import quarantine as store

        def insert_hit(record: bytes, hit_token: str) -> None:
            insert([record], hit_token)

        try:
            counts = self._retry("quarantine", lambda: store.store(self.client, self.settings.clickhouse_database,
                                                                   kinds, token, insert_hit), give_up=is_data_error)
        except DataError as exc:
            log_event("quarantine_records_rejected", logging.ERROR, token=token, detail=str(exc)[:200])
            return
        log_event("quarantine_loaded", logging.DEBUG, **counts)

    def _insert_one_by_one(self, intent: Intent, records: list[bytes], insert: Any) -> tuple[int, int]:
        """Slow path for a batch with a bad record: per-record tokens derived from the batch's keep a
        redo exactly-once too, and the same records are rejected every time (deterministic)."""
        rows = rejected = 0
        for i, rec in enumerate(records):
            try:
                self._retry("insert", lambda rec=rec, i=i: insert([rec], f"{intent.token}:{i}"), give_up=is_data_error)
                rows += 1
            except DataError:
                rejected += 1
        log_event("records_rejected", logging.ERROR, count=rejected, token=intent.token)
        return rows, rejected

    # -- segments
    def retire(self) -> None:
        """Delete finished segments loaded to their end; claim the segments of dead writers."""
        backlog = 0
        segments = 0
        present = set()
        for seg in spool.list_segments(self.spool_dir):
            present.add(seg.name)
            seg = spool.claim_if_orphaned(seg)
            size = seg.size
            done = self.state.committed.get(seg.name, 0)
            backlog += max(0, size - max(done, len(spool.MAGIC)))
            segments += 1
            if not seg.finished or self.state.pending is not None:
                continue
            if size > max(done, len(spool.MAGIC)):
                # Finished but not all loaded: either new records (next batch takes them) or a tail
                # that never parses (torn by a crash, or corrupted): decide by reading it.
                blocks, _ = spool.read_segment(seg.path, done, 4 * spool.BLOCK_BYTES)
                if blocks:
                    continue
                corrupt = self.spool_dir / "corrupt"
                corrupt.mkdir(exist_ok=True)
                os.rename(seg.path, corrupt / seg.path.name)  # kept for inspection, off the cap
                log_event("segment_tail_ignored", logging.WARNING, segment=seg.name,
                          bytes=size - max(done, len(spool.MAGIC)))
            else:
                seg.path.unlink(missing_ok=True)
            backlog -= max(0, size - max(done, len(spool.MAGIC)))
            segments -= 1
            self.metrics.segments_retired += 1
            present.discard(seg.name)
        spool.remove_abandoned_tmp(self.spool_dir)
        if self.state.pending is None:
            stale = [n for n in self.state.committed if n not in present]
            if stale:
                # Deleted first, forgotten second: a crash in between only leaves a stale name.
                for n in stale:
                    del self.state.committed[n]
                self.state.save()
        self.metrics.backlog_bytes = backlog
        self.metrics.backlog_segments = segments
        if backlog == 0:
            self.metrics.lag_seconds = 0.0
