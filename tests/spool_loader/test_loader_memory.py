"""The loader's memory section (aggregator/loader_health): where its memory is (bench/soak.py reads it
to tell chDB's caches and query memory, Python's heap and the library's pages apart in an RSS)."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect

from aggregator import loader_health


def test_memory_section_reads_chdb_and_python(tmp_path: Path) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    try:
        client.command("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
        client.command("INSERT INTO t SELECT number FROM numbers(100000)")
        loader_health.record_memory(client)
    finally:
        client.close()
    memory = loader_health.snapshot()["memory"]
    assert memory["chdb_memory_tracking"] > 0
    assert memory["active_parts"] >= 1 and memory["primary_key_bytes"] > 0
    assert memory["python_allocated_blocks"] > 1000
    assert {"chdb_mark_cache_bytes", "chdb_query_cache_bytes"} <= memory.keys()
