"""Helpers of the backup tests: every table's FINAL aggregates (a row count and a summed hash of its
rows, aggregate states finalized), and a loader run in-process that takes a backup while it loads.

usage: python sl_backup.py digests CHDB_DIR
       python sl_backup.py live-backup DEST ACK_FILE COUNT   (DNMA_* settings from the environment)
       python sl_backup.py crash-after-insert                (idem)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def table_digests(client: Any, database: str = "dnma") -> dict[str, list[int]]:
    """Per MergeTree table: [rows, summed cityHash64 of each row's text] as FINAL reads them."""
    tables = client.query("SELECT name, engine FROM system.tables WHERE database = {db:String} "
                          "AND engine LIKE '%MergeTree' ORDER BY name", parameters={"db": database}).result_rows
    out = {}
    for table, engine in tables:
        columns = client.query("SELECT name, type FROM system.columns WHERE database = {db:String} "
                               "AND table = {t:String} ORDER BY position",
                               parameters={"db": database, "t": table}).result_rows
        exprs = ", ".join(f"finalizeAggregation(`{n}`)" if t.startswith("AggregateFunction") else f"`{n}`"
                          for n, t in columns)
        final = "" if engine == "MergeTree" else " FINAL"
        rows, digest = client.query(f"SELECT count(), sum(cityHash64(toString(tuple({exprs})))) "
                                    f"FROM {database}.`{table}`{final}").result_rows[0]
        out[str(table)] = [int(rows), int(digest or 0)]
    return out


def digests(data_dir: Path) -> dict[str, list[int]]:
    """table_digests of a stopped data directory, read by a short-lived process."""
    out = subprocess.run([sys.executable, __file__, "digests", str((data_dir / "clickhouse").resolve())],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout))


def _print_digests(chdb_dir: str) -> None:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_dir}")
    print(json.dumps(table_digests(client)))
    client.close()


def _writer(spool_dir: Path, first: int, count: int, ack_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE / "sl_writer.py"), str(spool_dir), str(first), str(count), "8",
                             str(ack_file)], cwd=HERE)


def _acked(ack_file: Path) -> list[str]:
    return [line for line in ack_file.read_text().splitlines() if line.isdigit()]


def _live_backup(dest: Path, ack_file: Path, count: int) -> None:
    """A loader loading in a thread of this process, a backup taken from this thread through its
    write gate while a writer process keeps appending `count` records to its spool. At the backup
    point (the "paused" progress line) the ids acknowledged so far and the tables' digests are
    noted, written beside DEST with the manifest once the writer is done and the loader stopped."""
    from aggregator.backup import backup
    from aggregator.loader import Loader
    from dnma.chclient import get_client
    from dnma.settings import get_settings

    settings = get_settings()
    spool_dir = settings.resolved_spool_dir
    loader = Loader(settings)
    thread = threading.Thread(target=loader.run, name="loader")
    thread.start()
    assert _writer(spool_dir, 0, 3000, ack_file).wait(timeout=60) == 0
    deadline = time.monotonic() + 60
    while loader.metrics.rows < 1000:  # loading: some records in ClickHouse, others in the spool
        assert time.monotonic() < deadline and thread.is_alive(), "the loader loaded nothing"
        time.sleep(0.05)
    client = get_client(settings)
    writer = _writer(spool_dir, 3000, count, ack_file)
    deadline = time.monotonic() + 60
    while len(_acked(ack_file)) < 3500:  # the writer is under way
        assert time.monotonic() < deadline and writer.poll() is None, "the writer acknowledged nothing"
        time.sleep(0.01)
    noted: dict[str, Any] = {}

    def progress(line: str) -> None:
        print(line, flush=True)
        if line.startswith("paused"):
            noted.update(acked=_acked(ack_file), digests=table_digests(client), loaded_rows=loader.metrics.rows)
        if line.startswith("clickhouse"):  # the gate is open again
            noted.update(acked_after_backup=len(_acked(ack_file)))

    try:
        manifest = backup(client, settings, dest, progress, gate=loader.gate)
        assert writer.wait(timeout=120) == 0
        deadline = time.monotonic() + 60
        while loader.metrics.rows < 3000 + count and time.monotonic() < deadline:
            time.sleep(0.05)  # loading resumed after the backup
        noted.update(loaded_at_end=loader.metrics.rows, acked_at_end=len(_acked(ack_file)))
    finally:
        loader.stop.set()
        thread.join(timeout=60)
        client.close()
    (dest.parent / "noted.json").write_text(json.dumps(noted | {"manifest": manifest}))


def _crash_after_insert() -> None:
    """Load the next batch, then die before its offsets move (exit 3): ClickHouse holds the batch,
    the loader's state still says it is pending (a kill -9 between the insert and the commit)."""
    from aggregator.loader_batches import Batches, Metrics
    from dnma.chclient import get_client
    from dnma.settings import get_settings

    def retry(what: str, fn: Any, give_up: Any = None, event: str = "") -> Any:
        if what == "commit":
            sys.stdout.flush()
            os._exit(3)
        return fn()

    settings = get_settings()
    batches = Batches(settings, Metrics(), retry)
    batches.connect(get_client(settings))
    batches.load_once()


if __name__ == "__main__":
    if sys.argv[1] == "digests":
        _print_digests(sys.argv[2])
    elif sys.argv[1] == "crash-after-insert":
        _crash_after_insert()
    elif sys.argv[1] == "live-backup":
        _live_backup(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
