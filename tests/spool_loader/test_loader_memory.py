"""The loader's memory section (aggregator/loader_health): where its memory is, and the C heap's
free pages given back (trim_heap), which kept its resident memory from creeping up with its peaks."""

from __future__ import annotations

import ctypes
from pathlib import Path

import clickhouse_connect

from aggregator import loader_health


def test_trim_heap_gives_back_freed_c_heap() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(20_000)]  # below the mmap threshold: in the heap
    for block in blocks:
        ctypes.memset(block, 1, 4096)  # touched: resident
    for block in blocks:
        libc.free(block)
    # glibc keeps most of the 80 MB freed in the middle of its heap; trim gives it back.
    assert loader_health.trim_heap() > 40 * 2**20


def test_memory_section_reads_chdb_and_python(tmp_path: Path) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    try:
        client.command("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
        client.command("INSERT INTO t SELECT number FROM numbers(100000)")
        loader_health.record_memory(client, trimmed=123)
    finally:
        client.close()
    memory = loader_health.snapshot()["memory"]
    assert memory["chdb_memory_tracking"] > 0
    assert memory["active_parts"] >= 1 and memory["primary_key_bytes"] > 0
    assert memory["python_allocated_blocks"] > 1000
    assert memory["trimmed_bytes"] == 123
    assert {"chdb_mark_cache_bytes", "chdb_query_cache_bytes"} <= memory.keys()
