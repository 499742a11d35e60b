"""Benchmark: every quality check over N synthetic hits and M sites in a fresh embedded chDB.
Prints JSON (time per check, total, peak memory). `--hits 50000000 --sites 1000` for the full run."""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hits", type=int, default=5_000_000)
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--days", type=int, default=42, help="days of history the hits spread over")
    p.add_argument("--dir", type=Path, default=None, help="data dir (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(json.dumps(run(Path(tmp), args.hits, args.sites, args.days), indent=2))


def run(data_dir: Path, n_hits: int, n_sites: int, days: int) -> dict[str, object]:
    import clickhouse_connect

    from aggregator.checks.runner import CHECKS, run_checks
    from aggregator.migrate import migrate
    from dnma.clock import PARIS
    from dnma.settings import Settings
    from dnma.sites import dump_sites
    from dnma.uai import check_letter

    deps = ["035", "022", "029", "056", "094", "093", "077", "069"]
    dump_sites(
        [{"id": i, "name": f"ENT {i}", "main_url": f"https://ent{i}.example", "projet": f"P{i % 40}",
          "perimeter": {"degrees": ["1D", "2D"], "departements": [deps[i % len(deps)]]}} for i in range(1, n_sites + 1)],
        data_dir / "sites.yaml",
    )
    settings = Settings(data_dir=data_dir, sites_file=data_dir / "sites.yaml", clickhouse_dsn=f"chdb://{data_dir / 'ch'}",
                        collector_port=1, hits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    # Referential: 2,000 establishments per département.
    uais = [f"{int(d):03d}{n:04d}" for d in deps for n in range(2000)]
    client.insert("dnma.etablissements",
                  [[u + check_letter(u), "1D" if int(u[3:]) < 1500 else "2D", u[:3], "Rennes", "53"] for u in uais],
                  column_names=["uai", "degre", "departement_code", "academie", "region_code"])
    now = datetime(2024, 10, 15, 14, 0, tzinfo=PARIS)
    start = int((now - timedelta(days=days)).timestamp())
    span = days * 86400
    t0 = time.perf_counter()
    # Hits spread over the span, daytime-weighted, a few faults (invalid UAIs, empty services) sprinkled in.
    client.command(
        f"""
        INSERT INTO dnma.hits (ts, received_at, site_id, action, url, uai, service, type, profil, projet,
                               visitor_id, pv_id, flags)
        SELECT toDateTime({start} + intDiv(number * {span}, {n_hits}) + (cityHash64(number) % 600), 'Europe/Paris') AS t,
               t + 1, 1 + cityHash64(number, 1) % {n_sites} AS site, 'pageview',
               concat('/p/', toString(number % 1000)),
               if(number % 97 = 0, '0350000X',
                  concat(leftPad(toString([{', '.join(str(int(d)) for d in deps)}][1 + site % {len(deps)}]), 3, '0'),
                         leftPad(toString(cityHash64(number, 2) % 2000), 4, '0'), 'A')),
               if(number % 89 = 0, '', 'notes'), 'NATIF', 'ELEVE', concat('P', toString(site % 40)),
               cityHash64(number, 3) % 5000000, hex(cityHash64(number)),
               if(number % 97 = 0, ['invalid_uai'], [])
        FROM numbers({n_hits})
        """,
        settings={"max_insert_threads": 2},
    )
    generated_s = time.perf_counter() - t0
    timings: dict[str, float] = {}
    total0 = time.perf_counter()
    opened = 0
    for name in CHECKS:
        t = time.perf_counter()
        opened += sum(1 for tr in run_checks(client, settings, only=[name], now=now) if tr.change == "opened")
        timings[name] = round(time.perf_counter() - t, 3)
    total_s = time.perf_counter() - total0
    peak_query = None
    try:
        client.command("SYSTEM FLUSH LOGS")
        peak_query = client.query("SELECT max(memory_usage) FROM system.query_log WHERE type = 'QueryFinish'").result_rows[0][0]
    except Exception:  # query_log not enabled in this chDB build
        pass
    return {
        "hits": n_hits,
        "sites": n_sites,
        "days": days,
        "generate_s": round(generated_s, 2),
        "checks_total_s": round(total_s, 2),
        "per_check_s": timings,
        "alerts_opened": opened,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_query_memory_mb": round(peak_query / 1024**2, 1) if peak_query else None,
    }


if __name__ == "__main__":
    main()
