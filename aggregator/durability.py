"""An acknowledged hit survives an OS crash, not only a process kill: the parts an insert writes
are on disk before the loader commits the spool offsets they replace.

ClickHouse does not fsync inserted parts by default. Two MergeTree settings make it write a part's
files and directory through (`fsync_after_insert`, `fsync_part_directory`); they are table settings,
set here on every MergeTree table of the database (the insert into `hits` writes parts into the
rollups' tables too, through their materialized views), after migrating, like the TTLs
(aggregator/retention.py). What those settings leave in the page cache is the rename of the part's
temporary directory to its final name, and the insert-deduplication log (the redo of an uncommitted
batch relies on it): in embedded mode the loader fsyncs the tables' directories and their
deduplication logs itself (`TableDirs.sync`) after each insert, before the offsets move. On a
ClickHouse server those live on the server's machine: its own settings and replication cover them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from aggregator.ddl import Renderer

SETTINGS = {"fsync_after_insert": 1, "fsync_part_directory": 1}
DEDUP_LOG_DIR = "deduplication_logs"


def _has_settings(engine_full: str) -> bool:
    return all(re.search(rf"\b{name} = {value}\b", engine_full) for name, value in SETTINGS.items())


def apply_durability(client: Any, r: Renderer) -> list[str]:
    """Give every MergeTree table of the database the fsync settings; returns the tables altered
    (only those that lacked them)."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree' "
        "ORDER BY name", parameters={"db": r.database}).result_rows
    altered = []
    assignments = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
    for name, engine_full in rows:
        if _has_settings(str(engine_full)):
            continue
        client.command(f"ALTER TABLE {r.database}.{name}{r.on_cluster} MODIFY SETTING {assignments}")
        altered.append(str(name))
    return altered


class TableDirs:
    """The data directories of the database's MergeTree tables (embedded mode), fsynced after each
    insert: the renames that made its parts visible, and the deduplication logs that recorded them."""

    def __init__(self, client: Any, database: str) -> None:
        rows = client.query(
            "SELECT data_paths FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree'",
            parameters={"db": database}).result_rows
        self.dirs = [Path(p) for (paths,) in rows for p in paths]

    def sync(self) -> int:
        """fsync every table directory and its deduplication log files; returns how many."""
        synced = 0
        for directory in self.dirs:
            dedup = directory / DEDUP_LOG_DIR
            targets = [directory]
            if dedup.is_dir():
                targets.append(dedup)
                targets.extend(p for p in dedup.iterdir() if p.is_file())
            for path in targets:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:  # a log file rotated away meanwhile: nothing left to sync
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                synced += 1
        return synced
