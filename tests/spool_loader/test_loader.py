"""The real loader process (`python -m cli loader`) on a real spool and a real chDB: exactly
once across kill -9 at random instants, ClickHouse unreachable, a writer killed mid-stream."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sl_support import (
    REPO,
    free_port,
    hits_counts,
    log_events,
    log_tail,
    record,
    run_loader_once,
    start_loader,
    status,
    stop,
    wait_until,
    write_records,
)

from aggregator import loader_batches
from dnma import spool
from dnma.spool import SpoolWriter, iter_records

HERE = Path(__file__).parent


def _acked(ack: Path) -> set[int]:
    # The last line may be torn by the kill: only newline-terminated lines count.
    return {int(line) for line in ack.read_text().split("\n")[:-1] if line.isdigit()}


def test_loads_everything_once_and_retires_segments(tmp_path: Path) -> None:
    write_records(tmp_path / "spool", 3000, per_append=100, segment_bytes=64 * 1024)
    assert len(spool.list_segments(tmp_path / "spool")) > 3
    run_loader_once(tmp_path, loader_batch_rows=1000)
    assert hits_counts(tmp_path) | {"urls": []} == {"count": 3000, "uniq": 3000, "urls": []}
    assert spool.list_segments(tmp_path / "spool") == []  # every finished, loaded segment deleted
    assert (tmp_path / "spool" / loader_batches.BATCH_FILE).stat().st_size == 0  # chDB's copy of the batch emptied
    st = status(tmp_path)
    assert st["rows"] == 3000 and st["batches"] == 3 and st["backlog_bytes"] == 0
    # Logs are structured and carry no hit content: the scan finds the loader's events, not the urls.
    log = log_tail(tmp_path, 10**6)
    assert log_events(tmp_path, "batch_loaded") and '"event": "batch_loaded"' in log
    assert "https://t/" not in log


def test_redo_of_an_inserted_but_uncommitted_batch_is_deduplicated(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    writer = SpoolWriter(spool_dir, max_bytes=10**9, segment_bytes=10**8, commit_interval_ms=1)

    async def write() -> None:  # left open (locked): the loader must not retire the segment
        await writer.start()
        await writer.append([record(n) for n in range(1000)])

    asyncio.run(write())
    run_loader_once(tmp_path)
    assert hits_counts(tmp_path)["count"] == 1000
    state_path = spool_dir / "_loader.state"
    ((name, end),) = json.loads(state_path.read_text())["committed"].items()
    # Exactly the state on disk had the loader been killed after its insert, before the commit.
    state_path.write_text(json.dumps({"committed": {}, "pending": [[name, 0, end]]}))
    run_loader_once(tmp_path)
    assert len(log_events(tmp_path, "pending_redo")) == 1
    counts = hits_counts(tmp_path)
    assert counts["count"] == 1000 and counts["uniq"] == 1000
    assert json.loads(state_path.read_text()) == {"committed": {name: end}, "pending": None}


@pytest.mark.slow
def test_loader_killed_9_repeatedly_stores_each_record_exactly_once(tmp_path: Path) -> None:
    total = 20_000
    ack = tmp_path / "ack"
    writer = subprocess.Popen([sys.executable, str(HERE / "sl_writer.py"), str(tmp_path / "spool"), "0", str(total),
                               "20", str(ack), str(128 * 1024)], cwd=REPO)
    rng = random.Random(20_000)
    seen_at_kill = []
    for _ in range(5):
        before = len(log_events(tmp_path, "batch_loaded")) if (tmp_path / "loader.log").exists() else 0
        proc = start_loader(tmp_path, loader_batch_rows=300)
        # Kill at a random instant once loading is under way (startup alone would test little).
        # (+2: the first batch_loaded of a run may be the redo of a batch already stored)
        wait_until(lambda b=before, p=proc: len(log_events(tmp_path, "batch_loaded")) > b + 1 or p.poll() is not None, 60)
        time.sleep(rng.uniform(0.0, 0.4))
        stop(proc, kill=True)
        counts = hits_counts(tmp_path)
        assert counts["count"] == counts["uniq"], counts  # never a duplicate, even mid-way
        seen_at_kill.append(counts["count"])
    assert writer.wait(timeout=120) == 0
    assert len(_acked(ack)) == total
    run_loader_once(tmp_path)
    counts = hits_counts(tmp_path)
    assert counts == {"count": total, "uniq": total, "urls": []}, (counts, seen_at_kill)
    assert len({c for c in seen_at_kill if 0 < c < total}) >= 3, seen_at_kill  # kills landed mid-load
    print("stored at each kill:", seen_at_kill, "redos:", len(log_events(tmp_path, "pending_redo")))


def test_unreachable_clickhouse_keeps_the_spool_and_retries_then_drains(tmp_path: Path) -> None:
    write_records(tmp_path / "spool", 2000, per_append=200, segment_bytes=64 * 1024)
    before = sorted(p.name for p in (tmp_path / "spool").iterdir())
    proc = start_loader(tmp_path, clickhouse_dsn=f"http://default:@127.0.0.1:{free_port()}/dnma")
    wait_until(lambda: status(tmp_path).get("retries", 0) >= 3, 60, "3 retries")
    st = status(tmp_path)
    assert st["state"] == "retrying" and st["rows"] == 0 and st["last_error"]
    t0 = time.monotonic()
    assert stop(proc) == 0  # SIGTERM cuts the backoff short
    assert time.monotonic() - t0 < 10
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == before  # nothing consumed
    assert len(list(iter_records(tmp_path / "spool"))) == 2000
    failed = log_events(tmp_path, "clickhouse_failed")
    delays = [e["retry_in_s"] for e in failed]
    assert delays[:3] == [0.2, 0.4, 0.5]  # exponential, capped at loader_retry_max_s
    run_loader_once(tmp_path)  # ClickHouse back (embedded DSN): everything drains
    assert hits_counts(tmp_path) | {"urls": []} == {"count": 2000, "uniq": 2000, "urls": []}


@pytest.mark.slow
def test_writer_killed_9_every_acknowledged_record_is_stored(tmp_path: Path) -> None:
    loader = start_loader(tmp_path)
    try:
        wait_until(lambda: status(tmp_path).get("state") == "running", 60, "loader running")
        ack = tmp_path / "ack"
        writer = subprocess.Popen([sys.executable, str(HERE / "sl_writer.py"), str(tmp_path / "spool"), "0",
                                   "10000000", "30", str(ack), str(256 * 1024)], cwd=REPO)
        wait_until(lambda: ack.exists() and ack.stat().st_size > 30_000, 60, "writer acks")
        writer.kill()  # mid-stream, records in flight
        writer.wait()
        acked = _acked(ack)
        # The loader claims the dead writer's open segment, loads it and deletes it.
        wait_until(lambda: not spool.list_segments(tmp_path / "spool"), 60, "spool drained")
        assert stop(loader) == 0
    finally:
        stop(loader, kill=True)
    assert log_events(tmp_path, "loader_stopped")
    counts = hits_counts(tmp_path, with_urls=True)
    stored = {int(u.rsplit("/", 1)[1]) for u in counts["urls"]}
    assert counts["count"] == counts["uniq"] == len(stored)
    assert len(acked) > 3000 and acked <= stored, len(acked - stored)
    print(f"acked {len(acked)}, stored {len(stored)} (stored but unacked: {len(stored - acked)})")


def test_a_record_clickhouse_cannot_parse_is_rejected_alone(tmp_path: Path) -> None:
    """A batch with one bad record falls back to per-record inserts: the others are stored once,
    the bad one is counted as rejected and never blocks the spool."""
    spool_dir = tmp_path / "spool"
    writer = SpoolWriter(spool_dir, max_bytes=10**9, segment_bytes=10**8, commit_interval_ms=1)

    async def write() -> None:
        await writer.start()
        good = [record(n) for n in range(50)]
        await writer.append(good[:20] + [b'{"site_id": "not a number", "url": "https://t/bad"}'] + good[20:])
        await writer.close()

    asyncio.run(write())
    run_loader_once(tmp_path, loader_batch_rows=1000)
    counts = hits_counts(tmp_path, with_urls=True)
    assert counts["count"] == 50 and counts["uniq"] == 50
    assert "https://t/bad" not in counts["urls"]
    assert status(tmp_path)["rejected"] == 1
    assert log_events(tmp_path, "records_rejected")


def test_batches_take_whole_blocks_and_still_read_one_record_frames(tmp_path: Path) -> None:
    """A batch is cut between blocks (one block at least, however big); segments of one record
    per frame (written before blocks existed) load the same way."""
    spool_dir = tmp_path / "spool"
    write_records(spool_dir, 900, per_append=300)  # 3 appends: 3 blocks of 300
    intent, blocks, rows = loader_batches.next_intent(spool_dir, {}, 100)
    assert (len(blocks), rows) == (1, 300)  # more than asked: a block is never split
    intent, blocks, rows = loader_batches.next_intent(spool_dir, {}, 700)
    assert (len(blocks), rows) == (2, 600)
    legacy = spool_dir / "legacy-1-0000-0.seg"
    legacy.write_bytes(spool.MAGIC + b"".join(spool.frame(record(n)) for n in range(900, 1000)))
    run_loader_once(tmp_path, loader_batch_rows=250)
    assert hits_counts(tmp_path) | {"urls": []} == {"count": 1000, "uniq": 1000, "urls": []}
    assert spool.list_segments(spool_dir) == []


# An install from before migration 7 (hits sorted site first) whose loader was killed after
# inserting a batch, before recording it: the batch is inserted and still pending.
_OLD_INSTALL_WITH_PENDING = """
import json, sys
from pathlib import Path
import clickhouse_connect
from aggregator.loader_batches import INSERT_SETTINGS, read_range
from aggregator.loader_state import Intent, Range
from aggregator.migrate import migrate, renderer
from aggregator.migrations import m0007_hits_day_first
from dnma import spool
from dnma.settings import Settings

data_dir = Path(sys.argv[1])
settings = Settings(data_dir=data_dir)
client = clickhouse_connect.get_client(dsn="chdb://" + str((data_dir / "clickhouse").resolve()))
migrate(client, settings, until=6)
for stmt in m0007_hits_day_first.rekey(renderer(settings), m0007_hits_day_first.OLD_ORDER_BY):
    client.command(stmt)
(seg,) = spool.list_segments(data_dir / "spool")
intent = Intent([Range(seg.name, 0, seg.size)])
client.raw_insert("dnma.hits", insert_block=b"\\n".join(read_range(seg, intent.ranges[0])), fmt="JSONEachRow",
                  settings=INSERT_SETTINGS | {"insert_deduplication_token": intent.token})
(data_dir / "spool" / "_loader.state").write_text(json.dumps(
    {"committed": {}, "pending": [[seg.name, 0, seg.size]]}))
print(client.command("SELECT sorting_key FROM system.tables WHERE database = 'dnma' AND name = 'hits'"))
client.close()
"""


def test_the_day_first_rekey_settles_the_pending_batch_before_copying(tmp_path: Path) -> None:
    """The rekeyed table has no insert-deduplication log: redone after it, the pending batch would
    be stored twice. The migration redoes it first, on the old table, which recognises its token."""
    write_records(tmp_path / "spool", 1000, segment_bytes=10**8)
    out = subprocess.run([sys.executable, "-c", _OLD_INSTALL_WITH_PENDING, str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "site_id, toDate(ts), visitor_id, ts"
    assert hits_counts(tmp_path)["count"] == 1000
    run_loader_once(tmp_path)
    assert len(log_events(tmp_path, "pending_redo")) == 1
    counts = hits_counts(tmp_path)
    assert counts["count"] == 1000 and counts["uniq"] == 1000
    assert json.loads((tmp_path / "spool" / "_loader.state").read_text())["pending"] is None
    key = subprocess.run([sys.executable, "-c", (
        "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1]); "
        "print(c.command(\"SELECT sorting_key FROM system.tables WHERE database = 'dnma' AND name = 'hits'\"))"),
        str((tmp_path / "clickhouse").resolve())], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert key.stdout.strip() == "toDate(ts), site_id, visitor_id, ts"


@pytest.mark.parametrize(
    ("declared", "plain"),
    [
        ("LowCardinality(String)", "String"),
        ("Map(LowCardinality(String), String)", "Map(String, String)"),
        ("Array(LowCardinality(String))", "Array(String)"),
        ("LowCardinality(Nullable(String))", "Nullable(String)"),
        ("DateTime('Europe/Paris')", "DateTime('Europe/Paris')"),
        ("Nullable(Float64)", "Nullable(Float64)"),
    ],
)
def test_the_batch_structure_drops_only_low_cardinality(declared: str, plain: str) -> None:
    assert loader_batches._without_low_cardinality(declared) == plain


def test_a_batch_read_from_file_stores_what_a_direct_insert_stores(tmp_path: Path) -> None:
    """The embedded loader's insert (JSONEachRow read by `file()` into plain columns, converted on
    the way into `hits`) stores exactly the rows that `INSERT ... FORMAT JSONEachRow` of the same
    records stores (the server-mode path), every column type included, and deduplicates by token."""
    import clickhouse_connect

    from aggregator.migrate import migrate
    from dnma.settings import Settings

    settings = Settings(data_dir=tmp_path, hits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    ts = 1_790_000_000
    records = [
        {"ts": ts, "received_at": ts + 1, "site_id": 1, "action": "pageview", "visitor_id": 1,
         "url": "https://ent.example/é?x='y'\\z", "uai": "0350122T", "service": "notes", "profil": "ELEVE",
         "device": "smartphone", "flags": ["missing_type", "unknown_service"], "dimensions": {"dimension9": "x\ty"}},
        {"ts": ts + 60, "received_at": ts + 61, "site_id": 2, "action": "event", "visitor_id": 2**64 - 1,
         "user_hash": 2**63, "new_visit": 1, "event_category": "Cat", "event_action": "Act", "event_name": "n",
         "event_value": 3.5, "title": "Titre « guillemets »", "campaign": "rentree"},
        {"ts": ts + 120, "received_at": ts + 121, "site_id": 1, "action": "search", "visitor_id": 3,
         "search_keyword": "devoirs", "search_category": "ent", "search_count": None, "event_value": None},
        {"ts": ts + 180, "received_at": ts + 181, "site_id": 1, "action": "goal", "visitor_id": 4, "goal_id": 7,
         "revenue": 12.25, "pv_id": "abc123", "referrer": "https://moteur.example/"},
        {"ts": ts + 240, "received_at": ts + 241, "site_id": 3, "action": "pageview", "visitor_id": 5},
    ]
    block = b"\n".join(json.dumps(r, ensure_ascii=False).encode() for r in records)
    path = tmp_path / loader_batches.BATCH_FILE
    head, tail = loader_batches.file_insert_sql(client, "dnma", path)
    path.write_bytes(block)
    for _ in range(2):  # the same token twice (a redo): stored once
        client.command(head + loader_batches._sql_string("token-1") + tail)
    client.command("CREATE TABLE dnma.hits_direct AS dnma.hits")
    client.raw_insert("dnma.hits_direct", insert_block=block, fmt="JSONEachRow")

    def rows(table: str) -> list[tuple]:
        return client.query(f"SELECT * FROM dnma.{table} ORDER BY ts").result_rows

    assert len(rows("hits")) == len(records)
    assert rows("hits") == rows("hits_direct")
    assert rows("hits")[0][3] == "pageview" and rows("hits")[1][16] == 2**64 - 1


def test_the_tail_of_a_burst_is_inserted_once_the_spool_falls_quiet(tmp_path: Path) -> None:
    """After a partial batch the loader gathers for up to loader_insert_interval_ms, but a spool
    that gets nothing new for a poll interval ends the wait: the end of a burst is stored at once."""
    spool_dir = tmp_path / "spool"
    proc = start_loader(tmp_path, loader_insert_interval_ms=20_000, loader_poll_interval_ms=100)
    try:
        write_records(spool_dir, 100)
        wait_until(lambda: len(log_events(tmp_path, "batch_loaded")) == 1, what="first batch")
        t0 = time.monotonic()
        write_records(spool_dir, 100)  # arrives while the loader gathers for the next batch
        wait_until(lambda: len(log_events(tmp_path, "batch_loaded")) == 2, timeout=15, what="second batch")
        assert time.monotonic() - t0 < 10  # not the 20 s interval
    finally:
        stop(proc)


def test_steady_traffic_is_still_gathered_into_few_batches(tmp_path: Path) -> None:
    """Records every 50 ms for 3 s (never a quiet poll interval): batches of about one interval."""
    spool_dir = tmp_path / "spool"
    proc = start_loader(tmp_path, loader_insert_interval_ms=1500, loader_poll_interval_ms=100)

    async def trickle() -> None:
        writer = SpoolWriter(spool_dir, max_bytes=10**9, segment_bytes=10**8, commit_interval_ms=1)
        await writer.start()
        for n in range(60):
            await writer.append([record(n)])
            await asyncio.sleep(0.05)
        await writer.close()

    try:
        asyncio.run(trickle())
        wait_until(lambda: sum(e["rows"] for e in log_events(tmp_path, "batch_loaded")) == 60, what="all rows")
        assert len(log_events(tmp_path, "batch_loaded")) <= 5  # one a poll would be ~30
    finally:
        stop(proc)
