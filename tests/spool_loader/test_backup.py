"""`dnma backup` / `dnma restore` (aggregator/backup.py): after a restore and the drain of the
restored spool, every hit acknowledged before the backup is stored exactly once and every table's
FINAL aggregates equal the source's at the backup point; with the stack down, and while a loader
keeps loading what a writer keeps acknowledging."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from sl_backup import digests
from sl_support import (
    REPO,
    hits_counts,
    loader_env,
    run_loader_once,
    start_loader,
    stop,
    wait_until,
    write_records,
)

HERE = Path(__file__).resolve().parent


def _dnma(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=loader_env(data_dir),
                          capture_output=True, text=True, timeout=120)


def _write(spool_dir: Path, first: int, count: int) -> None:
    """Records first..first+count-1 (unique urls), by a writer process of their own."""
    subprocess.run([sys.executable, str(HERE / "sl_writer.py"), str(spool_dir), str(first), str(count), "4",
                    str(spool_dir.parent / "acks.txt")], cwd=HERE, check=True, timeout=60)


def _modes(root: Path) -> set[str]:
    """The loose modes under root: what is neither a 0600 file nor a 0700 directory."""
    loose = set()
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode != (0o700 if p.is_dir() else 0o600):
            loose.add(f"{p.relative_to(root)} {oct(mode)}")
    return loose


def test_backup_restore_with_the_stack_down(tmp_path: Path) -> None:
    """Backed up with the stack down, restored into a new directory (refusals on the way), drained
    by a loader (on which `dnma backup` then runs live): each record once, tables equal."""
    src, dst, dest = tmp_path / "src", tmp_path / "dst", tmp_path / "backup"
    src.mkdir()
    write_records(src / "spool", 3000)
    run_loader_once(src)
    _write(src / "spool", 3000, 1000)  # acknowledged, not loaded yet: only the spool holds them
    (src / "sites.yaml").write_text("sites: []\n")
    (src / "secrets.env").write_text("UID_SECRET=s3cret\n")
    (src / "superset").mkdir()
    with sqlite3.connect(src / "superset" / "superset.db") as db:
        db.execute("CREATE TABLE dashboards (name TEXT)")
        db.execute("INSERT INTO dashboards VALUES ('national')")
    db.close()
    (src / "log").mkdir()
    (src / "log" / "loader.log.1").write_text("not backed up\n")
    before = digests(src)
    assert before["hits"][0] == 3000 and before["hits_daily"][0] > 0

    done = _dnma(src, "backup", str(dest))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["clickhouse"]["tables"]["hits"]["rows"] == 3000
    assert manifest["spool"]["unloaded_records"] == 1000 and manifest["superset_metadata"]
    assert {"sites.yaml", "secrets.env"} <= {f["path"] for f in manifest["files"]}
    assert not (dest / "files" / "log").exists()
    assert _modes(dest) == set()

    done = _dnma(dst, "restore", str(dest), "--data-dir", str(dst))
    assert done.returncode == 0, done.stderr
    assert digests(dst) == before  # restored: the source at the backup point, table by table
    assert (dst / "secrets.env").read_text() == "UID_SECRET=s3cret\n"
    with sqlite3.connect(dst / "superset" / "superset.db") as db:
        assert db.execute("SELECT name FROM dashboards").fetchall() == [("national",)]
    db.close()

    # A second restore over it is refused (one line), and so is one while a loader runs on it.
    again = _dnma(dst, "restore", str(dest), "--data-dir", str(dst))
    assert again.returncode != 0 and "not empty" in again.stderr and len(again.stderr.splitlines()) == 1
    nothing = _dnma(dst, "restore", str(src), "--data-dir", str(tmp_path / "other"))  # not a backup
    assert nothing.returncode != 0 and "manifest.json" in nothing.stderr and len(nothing.stderr.splitlines()) == 1
    inside = _dnma(dst, "restore", str(dest), "--data-dir", str(tmp_path), "--force")  # would delete the backup
    assert inside.returncode != 0 and "inside" in inside.stderr and (dest / "manifest.json").exists()
    loader = start_loader(dst, quality_checks_interval_s=0)  # its checks would add rows the source lacks
    try:
        wait_until(lambda: stored_rows(dst) == 4000, timeout=60, what="the restored spool drained")
        busy = _dnma(dst, "restore", str(dest), "--data-dir", str(dst), "--force")
        assert busy.returncode != 0 and "in use" in busy.stderr and len(busy.stderr.splitlines()) == 1
        # On the live stack `dnma backup` is a job of the loader (its admin channel): it succeeds.
        live = _dnma(dst, "backup", str(tmp_path / "live"))
        assert live.returncode == 0, live.stderr
        assert "loading resumed" in live.stderr  # the loader paused its writes for the snapshot
        assert json.loads((tmp_path / "live" / "manifest.json").read_text())["clickhouse"]["tables"]["hits"]["rows"] == 4000
    finally:
        assert stop(loader) == 0

    counts = hits_counts(dst)
    assert counts["count"] == counts["uniq"] == 4000  # every record once: parts and spool do not overlap
    run_loader_once(src)
    assert digests(dst) == digests(src)  # both drained: the same tables, FINAL


def stored_rows(data_dir: Path) -> int | None:
    """The loader's own status says how many rows it loaded (chDB is its own while it runs)."""
    try:
        doc = json.loads((data_dir / "loader_status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return 3000 + int(doc.get("rows", 0))


def test_backup_while_the_source_keeps_ingesting(tmp_path: Path) -> None:
    """The backup runs in the loader's process (as a job of its admin channel would) while the loader
    loads and a writer acknowledges records, before, during and after the backup."""
    src, dst, dest = tmp_path / "src", tmp_path / "dst", tmp_path / "backup"
    src.mkdir()
    acks = tmp_path / "acks.txt"
    acks.touch()
    count = 20000
    live = subprocess.run([sys.executable, str(HERE / "sl_backup.py"), "live-backup", str(dest), str(acks), str(count)],
                          cwd=REPO, env=loader_env(src, quality_checks_interval_s=0), capture_output=True, text=True,
                          timeout=180)
    assert live.returncode == 0, live.stderr[-3000:] + (src / "loader.log").read_text()[-3000:] if (src / "loader.log").exists() else live.stderr[-3000:]
    noted = json.loads((tmp_path / "noted.json").read_text())
    acked_before = set(noted["acked"])
    # The writer went on acknowledging while loading was paused, and after; the loader caught up.
    assert len(acked_before) < noted["acked_after_backup"] < noted["acked_at_end"] == 3000 + count
    assert noted["loaded_at_end"] == 3000 + count
    assert noted["manifest"]["spool"]["unloaded_records"] > 0  # parts and spool both hold some

    done = _dnma(dst, "restore", str(dest), "--data-dir", str(dst))
    assert done.returncode == 0, done.stderr
    assert digests(dst) == noted["digests"]  # every table as it was at the backup point
    run_loader_once(dst)
    counts = hits_counts(dst, with_urls=True)
    stored = {url.rsplit("/", 1)[1] for url in counts["urls"]}
    assert counts["count"] == counts["uniq"]  # nothing stored twice
    assert acked_before <= stored  # everything acknowledged before the backup point
    assert stored <= {str(n) for n in range(3000 + count)}


def test_a_batch_left_pending_by_a_crash_is_settled_before_the_backup(tmp_path: Path) -> None:
    """A loader killed between a batch's insert and its commit leaves the batch in ClickHouse and
    pending in its state. The backup inserts it again under its token first (ClickHouse, whose
    deduplication log knows the token, drops it) and commits it: the restored loader, whose
    ClickHouse has no deduplication log, has nothing to redo. Copied as it was, the redo would
    store those records twice."""
    src, dst, dest = tmp_path / "src", tmp_path / "dst", tmp_path / "backup"
    src.mkdir()
    write_records(src / "spool", 2000)
    run_loader_once(src)
    _write(src / "spool", 2000, 1000)
    crash = subprocess.run([sys.executable, str(HERE / "sl_backup.py"), "crash-after-insert"], cwd=REPO,
                           env=loader_env(src), capture_output=True, text=True, timeout=120)
    assert crash.returncode == 3, crash.stderr[-3000:]
    assert json.loads((src / "spool" / "_loader.state").read_text())["pending"]

    done = _dnma(src, "backup", str(dest))
    assert done.returncode == 0, done.stderr
    assert "settling the batch" in done.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["clickhouse"]["tables"]["hits"]["rows"] == 3000  # stored once, in the source too
    assert manifest["spool"]["unloaded_records"] == 0
    restored = _dnma(dst, "restore", str(dest), "--data-dir", str(dst))
    assert restored.returncode == 0, restored.stderr
    run_loader_once(dst)
    counts = hits_counts(dst)
    assert counts["count"] == counts["uniq"] == 3000


def test_table_sizes_do_not_move_when_a_merge_collapses_rows(tmp_path: Path) -> None:
    """What backup records and restore compares: a row replaced in a second part is two rows of
    system.tables until a merge makes it one; the figure for such a table is its FINAL count, the
    same before and after the merge (a restore once failed on quality_alerts so)."""
    import clickhouse_connect

    from aggregator.backup import _table_sizes
    from aggregator.migrate import migrate
    from dnma.settings import Settings

    settings = Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    try:
        migrate(client, settings)
        for name in ("Un", "Deux"):  # two parts, one key: ReplacingMergeTree keeps the latest
            client.command("INSERT INTO dnma.etablissements (uai, nom) VALUES ('0350002M', {n:String})",
                           parameters={"n": name})
        raw = client.query("SELECT total_rows FROM system.tables WHERE database = 'dnma' "
                           "AND name = 'etablissements'").result_rows[0][0]
        before = _table_sizes(client, "dnma")
        client.command("OPTIMIZE TABLE dnma.etablissements FINAL")
        after = _table_sizes(client, "dnma")
    finally:
        client.close()
    assert raw == 2
    assert before["etablissements"]["rows"] == after["etablissements"]["rows"] == 1
    assert {n: t["rows"] for n, t in before.items()} == {n: t["rows"] for n, t in after.items()}
