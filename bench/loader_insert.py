"""CPU of inserting spool records into `dnma.hits` on embedded chDB, by the two ways the loader can
(prints JSON): `INSERT ... FORMAT JSONEachRow` (server mode) and the embedded loader's
`INSERT ... SELECT ... FROM file()` into plain columns (aggregator.loader_batches.file_insert_sql).

The records are made by the collector's own pipeline from bench/collector_bench.py's bulk items
(1,000 distinct pages, the demo site), `--rows` of them per insert. Each way inserts them `--repeat`
times, alternating, with a new deduplication token each time and the table truncated now and then;
the figures are CPU µs per row of this process (chDB runs in it): min and median. The machine is
shared: compare the two figures of one run, not runs of different days.

Usage: .venv/bin/python bench/loader_insert.py [--rows 100000] [--repeat 8] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


class _Capture:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    async def append(self, records: list[bytes]) -> None:
        self.records.extend(records)


async def pipeline_records(tmp: Path, rows: int) -> list[bytes]:
    import collector_micro as micro

    from collector.app import Collector

    micro.dump_sites(micro.demo_sites(), tmp / "sites.yaml")
    settings = micro.Settings(data_dir=tmp, sites_file=tmp / "sites.yaml", super_user_token=micro.SUPER_TOKEN,
                              uid_secret="bench-secret")
    app = Collector(settings)
    capture = app.spool = _Capture()
    scope = micro.scope_for("POST", b"", [*micro.BROWSER_HEADERS[:2], (b"content-type", b"application/json")])
    body = micro.bench_bulk_body(1000)
    while len(capture.records) < rows:
        await micro.one(app, scope, body)
    return capture.records[:rows]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    args = ap.parse_args()

    import clickhouse_connect

    from aggregator import loader_batches
    from aggregator.migrate import migrate
    from dnma.settings import Settings

    tmp = args.dir or Path(tempfile.mkdtemp(prefix="dnma-loader-insert-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        records = asyncio.run(pipeline_records(tmp, args.rows))
        block = b"\n".join(records)
        settings = Settings(data_dir=tmp, hits_ttl_months=1200)
        client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
        migrate(client, settings)
        path = tmp / loader_batches.BATCH_FILE
        head, tail = loader_batches.file_insert_sql(client, "dnma", path)

        def direct(token: str) -> None:
            client.raw_insert("dnma.hits", insert_block=block, fmt="JSONEachRow",
                              settings=loader_batches.INSERT_SETTINGS | {"insert_deduplication_token": token})

        def from_file(token: str) -> None:
            path.write_bytes(block)
            client.command(head + loader_batches._sql_string(token) + tail)

        spent: dict[str, list[float]] = {"json_each_row_direct": [], "file_plain_columns": []}
        for i in range(args.repeat):
            for name, insert in (("json_each_row_direct", direct), ("file_plain_columns", from_file)):
                c0 = cpu()
                insert(f"{name}-{i}")
                spent[name].append((cpu() - c0) / len(records) * 1e6)
            if i % 2:
                client.command("TRUNCATE TABLE dnma.hits")
        result: dict[str, Any] = {"rows_per_insert": len(records), "bytes_per_record": round(len(block) / len(records), 1),
                                  "unit": "CPU µs per row"}
        for name, values in spent.items():
            values.sort()
            result[name] = {"min": round(values[0], 2), "median": round(values[len(values) // 2], 2)}
        print(json.dumps(result, indent=1))
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
