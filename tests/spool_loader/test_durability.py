"""An acknowledged hit survives an OS crash, not only a process kill (aggregator/durability.py).

The OS cannot be crashed here, so the real loader runs under strace, which records every fsync,
fdatasync, rename and unlink it makes. From that record: (1) the spool offsets never move, and no
spool segment is retired, before the parts that replace them are on disk (files synced, and the
rename that made each part visible synced through its table directory); (2) a crash is simulated by
deleting every part an OS crash could have lost (a part whose files or rename never reached the
disk); the loader started again then finds every record stored, once, in `hits` and its rollups."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sl_support import REPO, hits_counts, loader_env, log_tail, run_loader_once, write_records

from dnma.spool import DONE_SUFFIX, LOADER_STATE_FILE

STRACE = shutil.which("strace")
_SYNC = re.compile(r"^\d+\s+(?:<\.\.\. )?f(?:data)?sync\((\d+)<([^>]*)>")
_RENAME = re.compile(r'^\d+\s+rename(?:at2?)?\((?:[^"]*)"([^"]+)"(?:[^"]*)"([^"]+)"')
_UNLINK = re.compile(r'^\d+\s+unlink(?:at)?\((?:[^"]*)"([^"]+)"')
_TMP_PART = re.compile(r"^tmp_(insert|merge|mut|clone)_(.+)$")


@dataclass
class Trace:
    """The loader's durability-relevant system calls, in order."""

    events: list[tuple[str, str, str]]  # (kind, path, second path): sync / rename / unlink

    @classmethod
    def read(cls, path: Path) -> Trace:
        events = []
        for line in path.read_text(errors="replace").splitlines():
            if "resumed>" in line:
                continue  # the call was recorded at its start
            if m := _SYNC.match(line):
                events.append(("sync", m.group(2).rstrip("/"), ""))
            elif m := _RENAME.match(line):
                if line.rstrip().endswith("= 0") or "<unfinished" in line:  # not a failed rename
                    events.append(("rename", m.group(1).rstrip("/"), m.group(2).rstrip("/")))
            elif m := _UNLINK.match(line):
                events.append(("unlink", m.group(1).rstrip("/"), ""))
        return cls(events)

    def part_renames(self, table_dirs: set[Path]) -> list[tuple[int, Path, Path, str]]:
        """(index, temporary dir, final dir, kind) of every part of these tables made visible by a rename."""
        out = []
        for i, (kind, old, new) in enumerate(self.events):
            if kind != "rename":
                continue
            m = _TMP_PART.match(Path(old).name)
            if m and Path(old).parent in table_dirs and Path(new).parent == Path(old).parent:
                out.append((i, Path(old), Path(new), m.group(1)))
        return out

    def durable_by(self, index: int, tmp: Path, final: Path, until: int) -> bool:
        """The part renamed at `index` is on disk by event `until`: its files were synced before
        the rename, and its table directory after it."""
        files_synced = any(k == "sync" and Path(p).parent == tmp for k, p, _ in self.events[:index])
        rename_synced = any(k == "sync" and Path(p) == final.parent for k, p, _ in self.events[index + 1:until])
        return files_synced and rename_synced


def _traced_loader_once(data_dir: Path, trace: Path) -> None:
    assert STRACE is not None
    log = open(data_dir / "loader.log", "ab")  # noqa: SIM115 - closed below
    try:
        proc = subprocess.run(
            [STRACE, "-f", "-y", "-qq", "--seccomp-bpf", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,"
             "unlink,unlinkat", "-o", str(trace), sys.executable, "-m", "cli", "loader", "--once"],
            cwd=REPO, env=loader_env(data_dir, loader_batch_rows=1000), stdout=log, stderr=log, timeout=300)
    finally:
        log.close()
    assert proc.returncode == 0, log_tail(data_dir)


_SCRIPT = """
import json, sys, clickhouse_connect
c = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
tables = c.query("SELECT name, data_paths, engine_full FROM system.tables "
                 "WHERE database = 'dnma' AND engine LIKE '%MergeTree'").result_rows
print(json.dumps({"rollup_hits": int(c.command("SELECT sum(hits) FROM dnma.hits_daily")),
                  "table_dirs": [p for _, paths, _ in tables for p in paths],
                  "without_fsync": [n for n, _, e in tables
                                    if "fsync_after_insert = 1" not in e or "fsync_part_directory = 1" not in e]}))
"""


def _chdb_facts(data_dir: Path) -> dict[str, Any]:
    """The hits counted by the daily rollup and the dnma MergeTree tables' directories."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str((data_dir / "clickhouse").resolve())],
                         cwd=REPO, capture_output=True, check=True, timeout=120, text=True)
    return dict(json.loads(out.stdout))


@pytest.mark.skipif(STRACE is None, reason="strace is a Debian package of the test machine (make system-deps)")
def test_an_os_crash_loses_no_acknowledged_hit(tmp_path: Path) -> None:
    total = 3000
    write_records(tmp_path / "spool", total, per_append=100, segment_bytes=64 * 1024)
    trace_path = tmp_path / "loader.strace"
    _traced_loader_once(tmp_path, trace_path)
    trace = Trace.read(trace_path)
    facts = _chdb_facts(tmp_path)
    assert facts["without_fsync"] == []  # every MergeTree table writes its parts through
    table_dirs = {Path(p.rstrip("/")) for p in facts["table_dirs"]}
    parts = trace.part_renames(table_dirs)
    inserted = [p for p in parts if p[3] == "insert"]
    assert inserted, "the trace shows no part written: strace saw nothing"

    # (1) Offsets move and segments retire only once the parts replacing them are on disk.
    state = str((tmp_path / "spool" / LOADER_STATE_FILE).resolve())
    checkpoints = [i for i, (k, p, q) in enumerate(trace.events)
                   if (k == "rename" and q == state) or (k == "unlink" and p.endswith(DONE_SUFFIX))]
    assert checkpoints
    # Parts written before the first batch are the migrations' own (their ledger), not spool data.
    inserted = [p for p in inserted if p[0] > checkpoints[0]]
    assert inserted
    for cp in checkpoints:
        early = [(str(final), trace.events[cp]) for i, tmp, final, kind in inserted
                 if i < cp and not trace.durable_by(i, tmp, final, cp)]
        assert not early, f"spool state moved before these parts were on disk: {early[:3]}"

    # (2) The crash: every part whose files or rename never reached the disk is gone.
    lost = [final for i, tmp, final, _ in parts if not trace.durable_by(i, tmp, final, len(trace.events))]
    for final in lost:
        shutil.rmtree(final, ignore_errors=True)
    run_loader_once(tmp_path)  # starts again on what the disk kept; nothing new to load
    assert hits_counts(tmp_path) | {"urls": []} == {"count": total, "uniq": total, "urls": []}, lost
    assert _chdb_facts(tmp_path)["rollup_hits"] == total, lost
