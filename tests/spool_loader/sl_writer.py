"""A collector-like writer process for the spool tests: `concurrency` tasks append records with
ids from `first` on, and print each acknowledged id to `ack_file` only after its append returned.

usage: python sl_writer.py SPOOL_DIR FIRST COUNT CONCURRENCY ACK_FILE [SEGMENT_BYTES]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sl_support import record

from dnma.spool import SpoolWriter


async def main(spool_dir: Path, first: int, count: int, concurrency: int, ack_path: Path, segment_bytes: int) -> None:
    writer = SpoolWriter(spool_dir, max_bytes=10**10, segment_bytes=segment_bytes, commit_interval_ms=2)
    await writer.start()
    next_id = first
    stop_at = first + count
    ack = open(ack_path, "a", buffering=1)  # noqa: SIM115 - line-buffered: a kill -9 keeps every line

    async def worker(size: int) -> None:
        nonlocal next_id
        while next_id < stop_at:
            ids = list(range(next_id, min(stop_at, next_id + size)))
            next_id = ids[-1] + 1
            await writer.append([record(n) for n in ids])
            ack.write("".join(f"{n}\n" for n in ids))

    await asyncio.gather(*(worker(1 + i % 3) for i in range(concurrency)))
    await writer.close()
    ack.write(f"done fsyncs={writer.stats['fsyncs']} records={writer.stats['records']}\n")


if __name__ == "__main__":
    spool_dir, first, count, conc, ack_file = sys.argv[1:6]
    seg = int(sys.argv[6]) if len(sys.argv) > 6 else 256 * 1024
    asyncio.run(main(Path(spool_dir), int(first), int(count), int(conc), Path(ack_file), seg))
