"""Benchmark of the loader's pass over the day under way: a day of synthetic hits (bench/sessionizer.py's
generator, all on today), built whole by a first pass; then, `--passes` times, `--arrivals` hits for
visitors of the day (their visits extended or new ones started) and one incremental pass
(`aggregate_once`, as the loader runs it), against rebuilding the day whole, which every pass cost
before. Prints JSON; never a pass/fail test.

    .venv/bin/python bench/sessionizer_live.py --hits 1000000 [--arrivals 2000] [--passes 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sessionizer import generate  # noqa: E402  (bench/ is not a package)

CHECKSUM = ("SELECT count(), sum(cityHash64(visit_id, start, `end`, hits, actions, uai, profil, services)) "
            "FROM dnma.visits WHERE day = {d:Date}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=1_000_000, help="hits of the day under way")
    parser.add_argument("--arrivals", type=int, default=2000, help="hits arriving before each pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--dir", default="", help="chDB directory (default: a fresh temporary one)")
    args, _ = parser.parse_known_args()  # bench/run_all.py passes every benchmark the same options

    import clickhouse_connect

    from aggregator.migrate import migrate
    from aggregator.sessionizer import Settling, aggregate_once, rebuild_days
    from dnma import clock
    from dnma.settings import Settings

    root = Path(args.dir or tempfile.mkdtemp(prefix="dnma-bench-"))
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}", hits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    today = clock.today()
    generate(client, args.hits, 1, today)
    day_hits = int(client.query("SELECT count() FROM dnma.hits WHERE toDate(ts) = {d:Date}",
                                parameters={"d": today}).result_rows[0][0])
    settling = Settling()  # the loader's: its first pass builds the day whole
    t0 = time.monotonic()
    first = aggregate_once(client, settings, None, settling)
    first_s = time.monotonic() - t0
    passes = []
    for n in range(args.passes):
        # Hits of visitors already seen today, ten minutes after one of theirs: visits extended or
        # started again, spread over the whole day's visitors (the worst case for locality).
        client.command(
            f"INSERT INTO dnma.hits SELECT * REPLACE (ts + 600 + {n} AS ts) FROM dnma.hits "
            f"WHERE toDate(ts) = '{today}' AND toHour(ts) < 20 AND cityHash64(visitor_id, ts, {n}) % 97 = 0 "
            f"LIMIT {args.arrivals}")
        t0, c0 = time.monotonic(), time.process_time()  # chDB runs in this process: its CPU too
        result = aggregate_once(client, settings, None, settling)
        passes.append({"incremental": result["incremental_days"] == [today.isoformat()],
                       "pass_s": round(time.monotonic() - t0, 3), "pass_cpu_s": round(time.process_time() - c0, 3),
                       "visits_s": result["visits_seconds"]})
    incremental = client.query(CHECKSUM, parameters={"d": today}).result_rows[0]
    t0, c0 = time.monotonic(), time.process_time()
    whole = rebuild_days(client, settings, [today])  # what each pass cost before
    whole_s, whole_cpu = time.monotonic() - t0, time.process_time() - c0
    rebuilt = client.query(CHECKSUM, parameters={"d": today}).result_rows[0]
    print(json.dumps({
        "day_hits": day_hits,
        "visits": int(rebuilt[0]),
        "arrivals_per_pass": args.arrivals,
        "first_pass_whole_s": round(first_s, 3),
        "incremental_passes": passes,
        "whole_rebuild_s": round(whole_s, 3),
        "whole_rebuild_cpu_s": round(whole_cpu, 3),
        "whole_visits_s": whole["visits_seconds"],
        "identical_to_whole_rebuild": incremental == rebuilt,
        "first_pass_days": first["days"],
    }))
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
