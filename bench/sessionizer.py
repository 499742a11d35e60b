"""Benchmark of the sessionizer: synthetic hits generated inside ClickHouse, then every day
rebuilt through `rebuild_days`; prints JSON (hits/s, CPU µs per hit). Never a pass/fail test.

    .venv/bin/python bench/sessionizer.py --hits 5000000 [--days 7] [--dir /tmp/dnma-bench]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def generate(client, hits: int, days: int, first: date) -> None:  # type: ignore[no-untyped-def]
    """About 8 hits per visitor-day, spread over `days` Paris days, with pings, new_visit, campaigns
    and boundary gaps; 30 sites, 50 UAIs per site."""
    visitor_days = max(1, hits // 8)
    client.command(
        f"""
INSERT INTO dnma.hits (ts, received_at, site_id, action, campaign, uai, service, type, profil, visitor_id,
                       user_hash, new_visit, device, os, browser, url)
SELECT t, t, site, action, campaign, uai, service, type, profil, visitor, user_hash, new_visit, device, os, browser, url
FROM (
  SELECT
    intDiv(number, 8) AS vd,
    toDateTime(toDate('{first.isoformat()}') + vd % {days}, 'Europe/Paris') + 7 * 3600
      + cityHash64(vd) % 50000 + (number % 8) * (60 + cityHash64(number) % 1800) AS t,
    toUInt32(1 + cityHash64(vd, 1) % 30) AS site,
    ['pageview', 'pageview', 'pageview', 'ping', 'event', 'download', 'pageview', 'ping'][1 + cityHash64(number, 2) % 8] AS action,
    if(cityHash64(number, 3) % 50 = 0, 'rentree', '') AS campaign,
    concat('03500', toString(10 + cityHash64(vd, 4) % 50), 'A') AS uai,
    ['notes', 'absences', 'cahier_textes', 'accueil', 'manuel_numerique'][1 + cityHash64(number, 5) % 5] AS service,
    ['NATIF', 'TIERS'][1 + cityHash64(number, 6) % 2] AS type,
    ['ELEVE', 'PARENT', 'ENSEIGNANT'][1 + cityHash64(vd, 7) % 3] AS profil,
    intDiv(vd, {days}) AS visitor,
    if(cityHash64(vd, 8) % 2 = 0, cityHash64(visitor, 9), 0) AS user_hash,
    cityHash64(number, 10) % 100 = 0 AS new_visit,
    ['smartphone', 'ordinateur', 'tablette'][1 + cityHash64(vd, 11) % 3] AS device,
    ['android', 'windows', 'ios'][1 + cityHash64(vd, 11) % 3] AS os,
    ['chromemobile', 'chrome', 'safari'][1 + cityHash64(vd, 11) % 3] AS browser,
    concat('https://ent.example/', toString(number % 1000)) AS url
  FROM numbers({visitor_days * 8})
)
""",
        settings={"max_insert_threads": 2},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=7, help="Paris days the hits spread over")
    parser.add_argument("--dir", default="", help="chDB directory (default: a fresh temporary one)")
    args = parser.parse_args()

    import clickhouse_connect

    from aggregator.migrate import migrate
    from aggregator.sessionizer import rebuild_days
    from dnma import clock
    from dnma.settings import Settings

    root = Path(args.dir or tempfile.mkdtemp(prefix="dnma-bench-"))
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}", hits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    first = clock.today() - timedelta(days=args.days + 1)
    t0 = time.monotonic()
    generate(client, args.hits, args.days, first)
    client.command("OPTIMIZE TABLE dnma.hits FINAL")
    generated = time.monotonic() - t0
    hits = int(client.query("SELECT count() FROM dnma.hits").result_rows[0][0])

    t0, c0 = time.monotonic(), time.process_time()  # chDB runs in this process: its threads' CPU too
    result = rebuild_days(client, settings)  # every day dirty: a full build, rollups included
    build, build_cpu = time.monotonic() - t0, time.process_time() - c0
    t0 = time.monotonic()
    dirty_scan = rebuild_days(client, settings)  # nothing dirty: the cost of the fingerprint scan
    scan = time.monotonic() - t0
    one_day = date.fromisoformat(result["days"][0])
    t0, c0 = time.monotonic(), time.process_time()
    rebuild_days(client, settings, [one_day])
    one, one_cpu = time.monotonic() - t0, time.process_time() - c0
    day_hits = int(client.query(
        "SELECT count() FROM dnma.hits WHERE toDate(ts) = {d:Date}", parameters={"d": one_day}).result_rows[0][0])
    print(json.dumps({
        "hits": hits,
        "days": len(result["days"]),
        "visits": result["visits"],
        "generate_s": round(generated, 2),
        "rebuild_all_s": round(build, 2),
        "hits_per_s": round(hits / build),  # visits and rollups
        "visits_s": result["visits_seconds"],
        "visits_hits_per_s": round(hits / result["visits_seconds"]),  # the sessionizer itself
        "dirty_scan_s": round(scan, 3),
        "dirty_days_after_build": len(dirty_scan["days"]),
        "one_day_hits": day_hits,
        "one_day_s": round(one, 2),
        "one_day_hits_per_s": round(day_hits / one),
        # CPU (all threads) per hit: what a change costs, steadier than wall time on a shared host.
        "cpu_us_per_hit": {"rebuild_all": round(build_cpu / hits * 1e6, 3),
                           "one_day": round(one_cpu / max(day_hits, 1) * 1e6, 3)},
        "max_threads": int(client.query("SELECT getSetting('max_threads')").result_rows[0][0]),
    }))
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
