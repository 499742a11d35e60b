"""Hardening: what the stack's processes write under the data directory is their owner's alone
(`dnma`'s umask, cli/main.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from harness import DEMO_SITE_ID, Stack


def test_what_the_processes_write_is_their_owners_alone(tmp_path: Path) -> None:
    """Files the stack's processes create under the data directory (chDB's, the spool's, the
    loader's status, the collector's metrics) are 0600 and their directories 0700: a reader
    password or a hit is never world-readable. (The harness's own files, written by the test
    process, are not the stack's.)"""
    with Stack(tmp_path, loader_aggregate_interval_s=1) as stack:
        stack.start_loader()
        stack.start_collector()
        assert httpx.get(f"{stack.collector_url}/matomo.php", params={"idsite": DEMO_SITE_ID, "rec": 1,
                         "url": "https://ent.demo.example/x", "send_image": 0}, timeout=10).status_code == 204
        stack.wait_for("SELECT count() FROM dnma.hits", lambda v: v[0][0] == 1)
        harness_files = {stack.config_path, stack.data_dir / "sites.yaml", stack.data_dir / "loader.log",
                         stack.data_dir / "collector.log"}
        checked, loose = 0, []
        for path in stack.data_dir.rglob("*"):
            if path in harness_files or path.is_symlink():
                continue
            mode = stat.S_IMODE(path.lstat().st_mode)
            checked += 1
            if mode & 0o077:
                loose.append(f"{oct(mode)} {path.relative_to(stack.data_dir)}")
        assert checked > 20 and (stack.data_dir / "spool").is_dir() and (stack.data_dir / "clickhouse").is_dir()
        assert loose == [], loose[:20]
