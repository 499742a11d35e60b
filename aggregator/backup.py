"""`dnma backup DIR` and `dnma restore DIR --data-dir TARGET`: a consistent copy of an embedded data
directory (ClickHouse, spool and loader offsets, sites, settings, secrets, Superset's metadata).

Consistency, the point of it all. A hit acknowledged by the collector is in the spool; the loader's
offsets (`_loader.state`) say which spool bytes ClickHouse already holds. Restored, the loader
resumes from those offsets: it must find in ClickHouse exactly the batches the offsets say are
committed, no more (a batch inserted after the offsets were copied would be inserted again: the
insert-deduplication log that would drop it is not part of a ClickHouse BACKUP, and the redone
ranges would not even carry the same token) and no less (a batch the offsets count but the
backup lacks would be lost). So `backup` first closes the loader's write gate
(aggregator.write_gate: the current batch and side duty finish, no new one starts), settles a
batch a crash left pending (inserted again under its own token while the source's deduplication
log still knows it, then committed), and only then, with nothing moving: copies the offsets and
the unloaded part of every spool segment, and runs `BACKUP DATABASE ... TO File(...)`. ClickHouse
and the offsets then describe the same instant, every table (hits, the rollups its materialized
views fill, visits, alerts) included, and the restored loader re-inserts nothing. The collector
keeps acknowledging into the spool meanwhile: loading only waits for the backup (its lag grows by
the backup's duration and is caught up afterwards). Records acknowledged after the spool was copied
are not in the backup. `dnma backup` on a live stack is a job the loader runs (its admin channel,
aggregator/jobs.py: `backup_job`, with its gate); with the stack down the command opens chDB itself,
and nothing else writes: no gate is needed.

chDB writes File backups only under `backups.allowed_path` (an engine option every embedded client
of DNMA passes, dnma/chclient.py): the backup is written under `data_dir/backups-staging`, then
moved to DEST (same file system: a rename; otherwise copied). Embedded mode only: a ClickHouse
server has its own backup configuration and tools.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from aggregator.exports import code_version
from aggregator.loader_batches import Batches, DataError, Metrics
from aggregator.loader_state import LoaderState
from aggregator.write_gate import WriteGate
from dnma import clock, spool
from dnma.chclient import BACKUP_STAGING_DIR, backup_staging_dir
from dnma.settings import Settings, get_settings

FORMAT = 1
MANIFEST = "manifest.json"
CLICKHOUSE_DIR = "clickhouse"  # in the backup: ClickHouse's own BACKUP directory
SPOOL_DIR = "spool"  # in the backup: the loader's offsets and the unloaded part of each segment
FILES_DIR = "files"  # in the backup: the data directory's other files, at their relative paths
SUPERSET_DB = "superset/superset.db"  # relative to data_dir (dnma_superset.server), copied with SQLite's backup API
# Entries of the data directory a backup leaves out: process state (pids, the collector's
# per-process metric files), logs, captures, scratch.
NOT_COPIED = frozenset({"clickhouse", "spool", BACKUP_STAGING_DIR, "run", "log", "debug", "prometheus",
                        "loader_status.json"})
NOT_HELD = ("the logs (data_dir/log)", "the tagging debug captures (data_dir/debug)",
            "records acknowledged after the spool was copied",
            "a ClickHouse server's data (embedded mode only)", "Superset's own virtual environment")

Progress = Callable[[str], None]


class BackupError(Exception):
    """What went wrong, in one line for the command line."""


def _quiet(_line: str) -> None:
    pass


# --- what the data directory holds -------------------------------------------------------------


def chdb_in_use(chdb_dir: Path) -> bool:
    """True when a process holds the chDB directory (its `status` lock)."""
    try:
        fd = os.open(chdb_dir / "status", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def running_processes(data_dir: Path, names: tuple[str, ...] | None = None) -> list[str]:
    """The stack's processes alive on `data_dir` (pid files of `dnma up`; only `names` if given),
    or else a process holding its chDB directory."""
    found = []
    for pid_file in sorted((data_dir / "run").glob("*.pid")):
        if names is not None and pid_file.stem not in names:
            continue
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, OSError):
            continue
        found.append(f"{pid_file.stem} (pid {pid})")
    if not found and chdb_in_use(data_dir / "clickhouse"):
        found.append("a process holding its chDB directory")
    return found


def _chdb_dir(settings: Settings) -> Path:
    return Path(settings.resolved_dsn.split("://", 1)[1].split("?", 1)[0])


def _private(root: Path) -> None:
    """Files 0600, directories 0700: the backup holds secrets and every hit."""
    root.chmod(0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o700)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o600)


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# --- the pieces --------------------------------------------------------------------------------


def _copy_spool(spool_dir: Path, dest: Path) -> dict[str, Any]:
    """The offsets file and, of each segment, what the loader has not loaded yet, at the same byte
    offsets (the bytes before them are a hole: the offsets stay valid), cut after the last complete
    frame (a write in progress is not acknowledged). Written as finished segments."""
    dest.mkdir(mode=0o700)
    state = LoaderState.load(spool_dir)
    state_path = spool_dir / spool.LOADER_STATE_FILE
    if state_path.exists():
        shutil.copyfile(state_path, dest / spool.LOADER_STATE_FILE)
    segments = records = copied = 0
    for seg in spool.list_segments(spool_dir):
        start = max(state.committed.get(seg.name, 0), len(spool.MAGIC))
        data = b""
        for path in (seg.path, seg.path.with_name(seg.name + spool.DONE_SUFFIX)):
            try:
                with open(path, "rb") as f:  # an .open segment may be renamed .seg meanwhile
                    f.seek(start)
                    data = f.read()
                break
            except FileNotFoundError:
                continue
        blocks, end = spool.parse_frames(data)
        if not blocks:
            continue  # loaded to its end: nothing the restored loader needs
        with open(dest / (seg.name + spool.DONE_SUFFIX), "wb") as out:
            out.write(spool.MAGIC)
            out.seek(start)
            out.write(data[:end])
        segments += 1
        records += sum(map(spool.block_rows, blocks))
        copied += end
    return {"segments": segments, "unloaded_records": records, "bytes": copied,
            "committed_segments": len(state.committed)}


def _table_sizes(client: Any, database: str) -> dict[str, dict[str, int]]:
    """Each table's rows and bytes. The rows of a table whose merges collapse rows (Replacing,
    Aggregating, Summing… MergeTree) are counted with FINAL: a merge running after the backup, or
    after the restore, must not make equal data look different."""
    rows = client.query(
        "SELECT name, engine, total_rows, total_bytes FROM system.tables WHERE database = {db:String} "
        "AND total_rows IS NOT NULL ORDER BY name", parameters={"db": database}).result_rows
    out = {}
    for name, engine, n, b in rows:
        if str(engine).endswith("MergeTree") and str(engine) not in ("MergeTree", "ReplicatedMergeTree"):
            n = client.query(f"SELECT count() FROM `{database}`.`{name}` FINAL").result_rows[0][0]
        out[str(name)] = {"rows": int(n or 0), "bytes": int(b or 0)}
    return out


def _backup_clickhouse(client: Any, settings: Settings, dest: Path) -> dict[str, Any]:
    staging = backup_staging_dir(settings)
    for stale in staging.glob("backup-*"):
        # Left by a backup killed midway (backups run one at a time: never another's in progress).
        shutil.rmtree(stale, ignore_errors=True)
    target = staging / f"backup-{uuid.uuid4().hex[:12]}"
    database = settings.clickhouse_database
    try:
        client.command(f"BACKUP DATABASE `{database}` TO File('{target}')")
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)
        if "backups.allowed_path" in str(exc):
            raise BackupError("chDB was opened without backups.allowed_path in this process (open it "
                              "with dnma.chclient.get_client first)") from exc
        raise BackupError(f"ClickHouse BACKUP failed: {str(exc).splitlines()[0][:300]}") from exc
    shutil.move(str(target), str(dest))
    return {"database": database, "tables": _table_sizes(client, database), "bytes": _tree_bytes(dest)}


def _copy_files(settings: Settings, dest: Path, exclude: list[Path]) -> list[dict[str, Any]]:
    """The data directory's files but NOT_COPIED (and the backup itself, were it inside), plus a
    sites file or config file kept elsewhere, under their default names. Superset's SQLite
    metadata is copied through SQLite (consistent while Superset writes)."""
    data_dir = settings.data_dir.resolve()
    dest.mkdir(mode=0o700)
    copied: list[dict[str, Any]] = []
    skip = {p.resolve() for p in exclude} | {_chdb_dir(settings).resolve(), settings.resolved_spool_dir.resolve()}

    def keep(src: Path, rel: str) -> None:
        out = dest / rel
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if rel == SUPERSET_DB:
            with sqlite3.connect(src) as source, sqlite3.connect(out) as copy:
                source.backup(copy)
            source.close()
            copy.close()
        else:
            shutil.copyfile(src, out)
        copied.append({"path": rel, "bytes": out.stat().st_size})

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            path = entry.resolve() if not entry.is_symlink() else entry
            rel = str(entry.relative_to(data_dir))
            if path in skip or (directory == data_dir and entry.name in NOT_COPIED):
                continue
            if rel.startswith(SUPERSET_DB + "-") or entry.name.endswith(".tmp"):
                continue  # SQLite's -wal/-shm (the copy holds their content), half-written files
            try:
                if entry.is_dir() and not entry.is_symlink():
                    walk(entry)
                elif entry.is_file():
                    keep(entry, rel)
            except FileNotFoundError:
                continue  # a live stack's temporary file, renamed into place meanwhile

    if data_dir.is_dir():
        walk(data_dir)
    for src, rel in ((settings.resolved_sites_file, "sites.yaml"), (_config_path(settings), "dnma.toml")):
        if src is not None and src.is_file() and not (dest / rel).exists():
            keep(src, rel)
    return copied


def _config_path(settings: Settings) -> Path | None:
    named = os.environ.get("DNMA_CONFIG")
    if named:
        return Path(named)
    default = settings.data_dir / "dnma.toml"
    return default if default.exists() else None


# --- backup ------------------------------------------------------------------------------------


def _settle_pending(client: Any, settings: Settings) -> None:
    """Insert the batch a stopped loader left pending, under its token, and commit it (what the
    loader's start does): ClickHouse drops it if it had stored it, the offsets then say so."""

    def once(_what: str, fn: Any, give_up: Any = None, event: str = "") -> Any:
        try:
            return fn()
        except Exception as exc:
            if give_up is not None and give_up(exc):
                raise DataError(str(exc)[:200]) from exc
            raise BackupError(f"settling the pending batch failed: {str(exc).splitlines()[0][:300]}") from exc

    batches = Batches(settings, Metrics(), once)
    batches.client = client
    batches.redo_pending()



def backup(client: Any, settings: Settings, dest: Path, progress: Progress = _quiet,
           gate: WriteGate | None = None) -> dict[str, Any]:
    """Back the data directory of `settings` up into `dest` (absent or empty; made 0700); returns the
    manifest, also written as dest/manifest.json last (a backup without it is incomplete).

    `client` is a chDB client of this process opened by dnma.chclient.get_client. Inside a running
    loader, `gate` is its write gate (Loader.gate): closed while the offsets, the spool and
    ClickHouse are copied. `progress` gets one line per step; the "paused" line is sent while the
    gate is closed, at the backup point."""
    if not settings.embedded:
        raise BackupError("backup supports the embedded mode (chDB) only; back a ClickHouse server up with its own tools")
    dest = dest.resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} is not an empty directory")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.monotonic()
    progress("pausing the loader's writes" if gate else "no loader running: nothing to pause")
    with (gate or WriteGate()).closed():
        paused_at = time.monotonic()
        created_at = clock.now().isoformat(timespec="seconds")
        if LoaderState.load(settings.resolved_spool_dir).pending is not None:
            if gate is not None:
                # A running loader settles its own batch (and keeps its state in memory).
                raise BackupError("the loader has a batch pending (ClickHouse failing?): try again once it has loaded it")
            progress("settling the batch a crash left pending (inserted again under its token)")
            _settle_pending(client, settings)
        progress(f"paused: backup point {created_at}")
        spool_info = _copy_spool(settings.resolved_spool_dir, dest / SPOOL_DIR)
        progress(f"spool: {spool_info['segments']} segments, {spool_info['unloaded_records']} records not loaded yet")
        clickhouse = _backup_clickhouse(client, settings, dest / CLICKHOUSE_DIR)
        paused_s = time.monotonic() - paused_at
    progress(f"clickhouse: {len(clickhouse['tables'])} tables, {clickhouse['bytes']} bytes"
             + (f"; loading resumed after {paused_s:.1f} s" if gate else ""))
    files = _copy_files(settings, dest / FILES_DIR, exclude=[dest])
    progress(f"files: {len(files)} ({', '.join(f['path'] for f in files[:6])}{', …' if len(files) > 6 else ''})")
    manifest = {
        "format": FORMAT,
        "created_at": created_at,
        "code_version": code_version(),
        "source_data_dir": str(settings.data_dir.resolve()),
        "database": settings.clickhouse_database,
        "clickhouse": clickhouse,
        "spool": spool_info,
        "files": files,
        "superset_metadata": any(f["path"] == SUPERSET_DB for f in files),
        "loading_paused_s": round(paused_s, 3),
        "duration_s": round(time.monotonic() - started, 3),
        "not_held": list(NOT_HELD),
    }
    manifest["bytes"] = _tree_bytes(dest)
    (dest / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    _private(dest)
    progress(f"done: {dest} ({manifest['bytes']} bytes)")
    return manifest


def backup_job(ctx: Any, dir: Path) -> int:  # noqa: A002 - the job's argument name (aggregator/jobs.py)
    """The `backup` job (aggregator/jobs.py): in the live loader, through its write gate (ctx.gate);
    with the stack down, on the chDB the command opened itself."""
    try:
        if not ctx.in_loader and not (_chdb_dir(ctx.settings) / "metadata").is_dir():
            raise BackupError(f"no ClickHouse data under {_chdb_dir(ctx.settings)}: nothing to back up")
        backup(ctx.client(), ctx.settings, dir, progress=ctx.err, gate=ctx.gate)
    except (BackupError, OSError) as exc:
        ctx.err(f"dnma backup: {exc}")
        return 1
    return 0


# --- restore -----------------------------------------------------------------------------------


def read_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = orjson.loads((source / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{source} holds no {MANIFEST}: not a DNMA backup, or an incomplete one") from None
    except orjson.JSONDecodeError as exc:
        raise BackupError(f"{source / MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is a backup of format {manifest.get('format')}; this code restores format {FORMAT}")
    return dict(manifest)


def _link_or_copy(src: str, dst: str) -> None:
    """RESTORE only reads the backup's files: a hard link spares the copy on the same file system."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _clear(target: Path) -> None:
    for entry in target.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _restore_files(source: Path, target: Path) -> int:
    files = source / FILES_DIR
    count = 0
    for src in sorted(files.rglob("*")):
        if not src.is_file():
            continue
        out = target / src.relative_to(files)
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        count += 1
    config = target / "dnma.toml"
    if config.exists():
        # The generated config names its data directory: the restored one is the target.
        lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
        lines = [f'data_dir = "{target}"\n' if line.startswith("data_dir =") else line for line in lines]
        config.write_text("".join(lines), encoding="utf-8")
        elsewhere = [line.split("=", 1)[0].strip() for line in lines
                     if line.split("=", 1)[0].strip() in ("spool_dir", "sites_file", "clickhouse_dsn")]
        if elsewhere:
            print(f"note: {config} sets {', '.join(elsewhere)}: the restore put them under {target}; "
                  "edit those lines", file=sys.stderr)
    return count


def restore(source: Path, target: Path, settings: Settings, force: bool = False,
            progress: Progress = _quiet) -> dict[str, Any]:
    """Rebuild the stopped data directory `target` from the backup `source`. `settings` gives the
    reader's knobs only; the database and the layout come from the backup. Returns a summary."""
    source, target = source.resolve(), target.resolve()
    manifest = read_manifest(source)
    if target == source or target in source.parents:
        raise BackupError(f"the backup {source} lies inside {target}: move it out of the directory to rebuild")
    if target.exists():
        running = running_processes(target)
        if running:
            raise BackupError(f"{target} is in use by {', '.join(running)}: stop it first (dnma down)")
        if any(target.iterdir()):
            if not force:
                raise BackupError(f"{target} is not empty: restore into an empty directory, or pass --force to replace its content")
            progress(f"--force: removing the content of {target}")
            _clear(target)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = _restore_files(source, target)
    progress(f"files: {files} restored")
    shutil.copytree(source / SPOOL_DIR, target / "spool")
    progress("spool: restored with the loader's offsets")

    from dnma.chclient import get_client

    here = settings.model_copy(update={"data_dir": target, "clickhouse_dsn": "", "clickhouse_cluster": ""})
    database = str(manifest["database"])
    client = get_client(here)
    staged = backup_staging_dir(here) / f"restore-{uuid.uuid4().hex[:12]}"
    try:
        shutil.copytree(source / CLICKHOUSE_DIR, staged, copy_function=_link_or_copy)
        try:
            client.command(f"RESTORE DATABASE `{database}` FROM File('{staged}')")
        except Exception as exc:
            raise BackupError(f"ClickHouse RESTORE failed: {str(exc).splitlines()[0][:300]}") from exc
        restored = _table_sizes(client, database)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        client.close()
    wanted = {name: t["rows"] for name, t in manifest["clickhouse"]["tables"].items()}
    got = {name: t["rows"] for name, t in restored.items()}
    if got != wanted:
        differ = sorted(n for n in set(got) | set(wanted) if got.get(n) != wanted.get(n))
        raise BackupError(f"restored tables differ from the backup's manifest: {', '.join(differ)}")
    progress(f"clickhouse: {len(restored)} tables restored, row counts equal to the manifest's")
    _private(target)
    return {"target": str(target), "files": files, "tables": len(restored),
            "rows": sum(got.values()), "backup_created_at": manifest["created_at"]}


# --- command line ------------------------------------------------------------------------------


def add_arguments_backup(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", type=Path, help="directory to create (absent or empty)")


def run_backup(args: argparse.Namespace) -> int:
    """On a live stack the loader takes the backup (its admin channel's `backup` job); stack down,
    this process opens chDB and takes it."""
    if not get_settings().embedded:
        print("dnma backup: backup supports the embedded mode (chDB) only; back a ClickHouse server up "
              "with its own tools", file=sys.stderr)
        return 1
    from aggregator.jobs import run_command

    return run_command("backup", {"dir": str(args.dest.resolve())})


def add_arguments_restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="a directory written by `dnma backup`")
    p.add_argument("--data-dir", type=Path, required=True, help="the stopped data directory to rebuild")
    p.add_argument("--force", action="store_true", help="replace the content of a data directory that is not empty")


def run_restore(args: argparse.Namespace) -> int:
    try:
        summary = restore(args.source, args.data_dir, get_settings(), force=args.force, progress=print)
    except (BackupError, OSError) as exc:
        print(f"dnma restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {summary['tables']} tables ({summary['rows']} rows) and {summary['files']} files into "
          f"{summary['target']}, as of {summary['backup_created_at']}; start it with DNMA_DATA_DIR={summary['target']} dnma up")
    return 0
