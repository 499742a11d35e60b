"""The spool on a real disk: framing, torn tails, corruption, several writer processes, group commit,
the size cap, and a dead writer's segment claimed as finished."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sl_support import REPO, record, wait_until, write_records

from dnma import spool
from dnma.spool import SpoolFull, SpoolWriter, frame, iter_records, parse_frames

HERE = Path(__file__).parent


def _ids(records: Iterable[bytes]) -> list[int]:
    return [int(orjson.loads(r)["url"].rsplit("/", 1)[1]) for r in records]


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=30), st.data())
@settings(max_examples=200, deadline=None)
def test_framing_round_trip_and_any_truncation_reads_a_prefix(payloads: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(frame(p) for p in payloads)
    records, end = parse_frames(blob)
    assert records == payloads and end == len(blob)
    cut = data.draw(st.integers(0, len(blob)))
    records, end = parse_frames(blob[:cut])
    assert records == payloads[: len(records)]
    assert end <= cut and end == sum(8 + len(p) for p in records)


def test_crc_corruption_stops_at_the_bad_frame() -> None:
    payloads = [f"record-{i}".encode() for i in range(10)]
    blob = bytearray(b"".join(frame(p) for p in payloads))
    where = sum(8 + len(p) for p in payloads[:4]) + 8 + 2  # inside record 4's payload
    blob[where] ^= 0x01
    records, _ = parse_frames(bytes(blob))
    assert records == payloads[:4]
    # A corrupted length is caught by the crc too (it covers the length bytes).
    blob = bytearray(b"".join(frame(p) for p in payloads))
    blob[sum(8 + len(p) for p in payloads[:2])] ^= 0x01
    assert parse_frames(bytes(blob))[0] == payloads[:2]


@pytest.mark.parametrize("tail", [b"\x00" * 64, frame(b"x" * 100)[:50], b"\x05\x00"])
def test_torn_tail_of_a_segment_is_ignored(tmp_path: Path, tail: bytes) -> None:
    write_records(tmp_path, 100, per_append=10)
    (seg,) = spool.list_segments(tmp_path)
    with open(seg.path, "ab") as f:
        f.write(tail)
    assert _ids(iter_records(tmp_path)) == list(range(100))


def test_several_writer_processes_all_records_readable_exactly_once(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    procs, acks = [], []
    for i in range(4):
        ack = tmp_path / f"ack{i}"
        acks.append(ack)
        # small segments: rotation happens many times under concurrency
        procs.append(subprocess.Popen([sys.executable, str(HERE / "sl_writer.py"), str(spool_dir), str(i * 10_000),
                                       "2000", "40", str(ack), "20000"], cwd=REPO))
    for p in procs:
        assert p.wait(timeout=120) == 0
    urls = [r.split(b'"url":"')[1].split(b'"')[0] for r in iter_records(spool_dir)]
    expected = {f"https://t/{i * 10_000 + n}".encode() for i in range(4) for n in range(2000)}
    assert len(urls) == 8000 and set(urls) == expected
    segments = spool.list_segments(spool_dir)
    assert all(s.finished for s in segments)
    assert len({s.name.rsplit("-", 2)[0] for s in segments}) == 4  # one prefix (host-pid) per process
    assert len(segments) > 8  # rotated
    for ack in acks:
        last = ack.read_text().splitlines()[-1]
        fsyncs = int(last.split("fsyncs=")[1].split()[0])
        assert fsyncs < 2000 / 3  # 40 concurrent appenders share commits


def test_group_commit_many_concurrent_appends_few_fsyncs(tmp_path: Path) -> None:
    async def go() -> dict[str, int]:
        w = SpoolWriter(tmp_path, max_bytes=10**9, segment_bytes=10**8, commit_interval_ms=2)
        await w.start()

        async def one(n: int) -> None:
            await asyncio.sleep((n % 50) / 1000)  # spread over ~50 ms, not one burst
            await w.append([record(n)])

        await asyncio.gather(*(one(n) for n in range(3000)))
        await w.close()
        return w.stats

    stats = asyncio.run(go())
    assert stats["records"] == 3000
    assert 1 <= stats["fsyncs"] <= 300, stats  # ≈ one fsync per 2 ms window, not per record
    assert len(list(iter_records(tmp_path))) == 3000


def test_spool_full_refuses_without_writing_and_sees_other_writers(tmp_path: Path) -> None:
    async def go() -> None:
        w = SpoolWriter(tmp_path, max_bytes=20_000, segment_bytes=10**6, commit_interval_ms=1)
        await w.start()
        n = 0
        with pytest.raises(SpoolFull):
            while n < 10_000:
                await w.append([record(n), record(n + 1)])
                n += 2
        before = len(list(iter_records(tmp_path)))
        assert before == n and 20_000 <= spool.spool_bytes(tmp_path) < 21_000
        assert w.is_full() and w.stats["full_refusals"] == 1
        # A second writer process (same dir) sees the first one's bytes at start: full too.
        w2 = SpoolWriter(tmp_path, max_bytes=20_000, segment_bytes=10**6, commit_interval_ms=1)
        await w2.start()
        with pytest.raises(SpoolFull):
            await w2.append([record(99_999)])
        assert len(list(iter_records(tmp_path))) == before
        await w.close()
        await w2.close()
        # Once the loader has loaded them (its committed offsets), the room is free again, even
        # though the bytes still sit in the segments.
        committed = {seg.name: seg.size for seg in spool.list_segments(tmp_path)}
        (tmp_path / spool.LOADER_STATE_FILE).write_bytes(orjson.dumps({"committed": committed, "pending": None}))
        assert spool.backlog_bytes(tmp_path) == 0 and spool.spool_bytes(tmp_path) >= 20_000
        w3 = SpoolWriter(tmp_path, max_bytes=20_000, segment_bytes=10**6, commit_interval_ms=1)
        await w3.start()
        await w3.append([record(1)])
        await w3.close()

    asyncio.run(go())


def test_dead_writer_segment_is_claimed_live_one_is_not(tmp_path: Path) -> None:
    ack = tmp_path / "ack"
    proc = subprocess.Popen([sys.executable, str(HERE / "sl_writer.py"), str(tmp_path / "spool"), "0",
                             "10000000", "20", str(ack)], cwd=REPO)
    try:
        wait_until(lambda: ack.exists() and ack.stat().st_size > 1000, 30, "writer acks")
        (live,) = [s for s in spool.list_segments(tmp_path / "spool") if not s.finished]
        assert spool.claim_if_orphaned(live) == live  # locked by its writer: left alone
    finally:
        proc.kill()
        proc.wait()
    (dead,) = [s for s in spool.list_segments(tmp_path / "spool") if not s.finished]
    claimed = spool.claim_if_orphaned(dead)
    assert claimed.finished and claimed.path.suffix == ".seg" and not dead.path.exists()
    acked = {int(line) for line in ack.read_text().split("\n")[:-1] if line.isdigit()}
    stored = set(_ids(iter_records(tmp_path / "spool")))
    assert acked and acked <= stored
    assert os.listdir(tmp_path / "spool")  # nothing deleted by a reader


def test_abandoned_segment_creation_is_cleaned_but_a_locked_one_kept(tmp_path: Path) -> None:
    import fcntl

    dead, live = tmp_path / ".h-1-a-000001.tmp", tmp_path / ".h-2-b-000001.tmp"
    for p in (dead, live):
        p.write_bytes(spool.MAGIC)
        os.utime(p, (0, 0))  # old enough
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as its writer would hold it
    try:
        assert spool.remove_abandoned_tmp(tmp_path) == 1
        assert not dead.exists() and live.exists()
    finally:
        os.close(fd)


def test_one_append_packs_its_records_into_few_blocks_read_back_in_order(tmp_path: Path) -> None:
    write_records(tmp_path, 5000, per_append=5000)
    (seg,) = spool.list_segments(tmp_path)
    blocks, end = spool.read_segment(seg.path, 0)
    assert end == seg.size
    longest = max(len(record(n)) for n in range(5000))
    assert 1 < len(blocks) <= 5000 * (longest + 1) // spool.BLOCK_BYTES + 1  # one frame per block
    assert all(len(b) <= spool.BLOCK_BYTES + longest for b in blocks)
    assert sum(spool.block_rows(b) for b in blocks) == 5000
    assert _ids(iter_records(tmp_path)) == list(range(5000))


def test_a_record_holding_a_newline_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async def go() -> None:
        w = SpoolWriter(tmp_path, max_bytes=10**9, segment_bytes=10**8, commit_interval_ms=1)
        await w.start()
        with pytest.raises(ValueError, match="newline"):
            await w.append([record(1), b'{"url": "a\nb"}'])
        await w.append([record(2)])
        await w.close()

    asyncio.run(go())
    assert _ids(iter_records(tmp_path)) == [2]
