"""The tagging debug view's captures are kept `debug_captures_keep_hours`: a worker deletes older
captures and markers as it looks for open views (real files, the recorder's own refresh)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from collector.debug import DebugRecorder


def test_old_captures_are_deleted_fresh_ones_and_open_views_kept(tmp_path: Path) -> None:
    debug = tmp_path / "debug"
    debug.mkdir()
    now = time.time()
    files = {"site-3.jsonl": 3 * 3600, "site-3.jsonl.1": 5 * 3600, "site-3.viewer": 3 * 3600,
             "site-4.jsonl": 60, "site-4.viewer": 60, "notes.txt": 9 * 3600}
    for name, age in files.items():
        (debug / name).write_text("{}\n")
        os.utime(debug / name, (now - age, now - age))
    recorder = DebugRecorder(tmp_path, keep_s=2 * 3600)
    assert recorder.watched_sites(now) == frozenset({4})
    assert sorted(p.name for p in debug.iterdir()) == ["notes.txt", "site-4.jsonl", "site-4.viewer"]
    # 0 keeps them all.
    (debug / "site-5.jsonl").write_text("{}\n")
    os.utime(debug / "site-5.jsonl", (now - 10**6, now - 10**6))
    DebugRecorder(tmp_path, keep_s=0).watched_sites(now)
    assert (debug / "site-5.jsonl").exists()
