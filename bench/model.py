"""The issue's benchmark of the whole model: N synthetic hits generated inside ClickHouse (about
1000 sites, 10k UAIs from the referential when its files are there, 60-90 days), then
(a) sessionizer throughput (hits -> visits, every day), and that of the whole rebuild with the
six visit rollups, (b) p50/p95 of each dashboard-shaped query of INDICATORS.md, (c) bytes on disk
per hit. Prints JSON; never a pass/fail test.

    .venv/bin/python bench/model.py [--hits 50000000] [--days 75] [--runs 20] [--dir /tmp/dnma-model]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from dnma.vocab import BROWSERS, DEVICES, OSES, SERVICES

UAIS = 10_000
SITES = 1_000
HITS_PER_VISITOR_DAY = 9
CHUNK = 5_000_000  # hits per INSERT ... SELECT: bounded memory


def _array(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "") + "'" for v in values) + "]"


def load_referential(client: Any, settings: Any) -> int:
    from aggregator.referentiel import load_files

    paths = sorted(Path(settings.referentiel_dir).glob("*.csv"))
    if paths:
        load_files(client, settings, paths, replace=True)
        client.command("SYSTEM RELOAD DICTIONARY dnma.etablissements_dict")
    return int(client.query("SELECT count() FROM dnma.etablissements").result_rows[0][0])


def uai_pool(client: Any) -> list[str]:
    """UAIs of the referential (UAIS at most), completed with synthetic valid ones."""
    real = [r[0] for r in client.query(
        f"SELECT uai FROM dnma.etablissements ORDER BY cityHash64(uai) LIMIT {UAIS}").result_rows]
    missing = UAIS - len(real)
    if missing <= 0:
        return real
    synthetic = [r[0] for r in client.query(
        "SELECT concat(leftPad(toString(n), 7, '0'), substring('ABCDEFGHJKLMNPRSTUVWXYZ', n % 23 + 1, 1)) "
        f"FROM (SELECT (1 + number % 95) * 10000 + 5000 + intDiv(number, 95) AS n FROM numbers({missing}))"
    ).result_rows]
    return real + synthetic


def generate(client: Any, hits: int, days: int, first: date, uais: list[str]) -> None:
    """Visitor-days of ~9 hits (weekdays busier), visitors attached to one UAI with a profile and a
    device, each UAI to one ENT site (an establishment uses one ENT); services, actions and pings per hit; a few campaigns, new_visit, gaps."""
    profils = ["ELEVE"] * 12 + ["PARENT"] * 5 + ["ENSEIGNANT"] * 2 + ["ADMIN_VIE_SCOL_TECH", "AUTRE"]
    services = list(SERVICES[:6]) * 4 + list(SERVICES)
    actions = ["pageview"] * 10 + ["ping"] * 4 + ["event"] * 2 + ["download", "outlink", "search", "content"]
    visitors = max(1000, hits // (HITS_PER_VISITOR_DAY * days // 3))  # each active one day in three
    for start in range(0, hits, CHUNK):
        n = min(CHUNK, hits - start)
        client.command(
            f"""
INSERT INTO dnma.hits (ts, received_at, site_id, action, url, title, campaign, uai, service, type, outil,
                       profil, projet, visitor_id, user_hash, new_visit, device, os, browser, pv_id)
WITH {_array(uais)} AS uais, {_array(profils)} AS profils, {_array(services)} AS services,
     {_array(actions)} AS actions, {_array(list(DEVICES))} AS devices, {_array(list(OSES))} AS oses,
     {_array(list(BROWSERS))} AS browsers
SELECT t, t + cityHash64(number, 20) % 30, site, action, concat('https://ent', toString(site), '.example/',
       service, '/', toString(cityHash64(number, 21) % 50)), service, campaign, uai, service, type, outil,
       profil, projet, visitor, user_hash, new_visit, device, os, browser, pv_id
FROM (
  SELECT number,
    intDiv(number, {HITS_PER_VISITOR_DAY}) AS vd,
    cityHash64(vd, 0) % {visitors} AS visitor,
    -- weekdays carry 5 times the weekend traffic
    toDate('{first.isoformat()}') + cityHash64(vd, 1) % {days} AS d0,
    if(toDayOfWeek(d0) >= 6 AND cityHash64(vd, 2) % 5 != 0, d0 - (toDayOfWeek(d0) - 5), d0) AS d,
    toDateTime(d, 'Europe/Paris') + 7 * 3600 + cityHash64(vd, 3) % (14 * 3600)
      + (number % {HITS_PER_VISITOR_DAY}) * (20 + cityHash64(number, 4) % 900)
      + if(cityHash64(number, 5) % 12 = 0, 1800, 0) AS t,
    toUInt32(1 + cityHash64(uai, 6) % {SITES}) AS site,
    uais[1 + cityHash64(visitor, 7) % length(uais)] AS uai,
    profils[1 + cityHash64(visitor, 8) % length(profils)] AS profil,
    services[1 + cityHash64(number, 9) % length(services)] AS service,
    actions[1 + cityHash64(number, 10) % length(actions)] AS action,
    ['NATIF', 'NATIF', 'TIERS'][1 + cityHash64(number, 11) % 3] AS type,
    if(type = 'TIERS', ['PRONOTE', 'EDUCONNECT', 'LALILO'][1 + cityHash64(number, 12) % 3], '') AS outil,
    concat('ENT', toString(site % 25)) AS projet,
    if(cityHash64(number, 13) % 200 = 0, 'rentree', '') AS campaign,
    if(cityHash64(visitor, 14) % 3 != 0, cityHash64(visitor, 15), 0) AS user_hash,
    cityHash64(number, 16) % 150 = 0 AS new_visit,
    devices[1 + cityHash64(visitor, 17) % length(devices)] AS device,
    oses[1 + cityHash64(visitor, 18) % length(oses)] AS os,
    browsers[1 + cityHash64(visitor, 19) % length(browsers)] AS browser,
    -- matomo.js page view ids: 6 random [0-9A-Za-z]; the hits after a page view (events, pings,
    -- downloads...) carry its id, about two hits per id here
    arrayStringConcat(arrayMap(i -> substring(
      '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
      1 + bitShiftRight(cityHash64(vd, intDiv(number % {HITS_PER_VISITOR_DAY}, 2)), 6 * i) % 62, 1), range(6))) AS pv_id
  FROM numbers({start}, {n})
)
""",
            settings={"max_insert_threads": 2, "max_query_size": 10_000_000},
        )


def dashboard_queries(year_start: date, year_end: date, last_day: date, one_uai: str,
                      one_academie: str = "") -> dict[str, str]:
    """The dashboard charts of INDICATORS.md, as Superset would ask them of the rollups: each reads
    the coarsest rollup holding what it groups and filters by (aggregator.rollups.rollup_for)."""
    from aggregator.rollups import BY_TABLE, rollup_for

    year = f"day BETWEEN '{year_start}' AND '{year_end}'"
    weeks = f"debutsemaine BETWEEN '{year_start}' AND '{year_end}'"

    def kpis(table: str) -> str:
        # Aliases differ from the rollup columns: an alias named like a column would shadow it.
        return (f"sum(visites) AS nb_visites, {BY_TABLE[table].users_merge}(utilisateurs) AS nb_utilisateurs, "
                "sum(pages_vues) AS nb_pages_vues, sum(duree) / sum(visites) AS duree_moyenne FROM dnma." + table)

    national = kpis(rollup_for({"profil", "device"}))
    return {
        "national_kpis": f"SELECT {national} WHERE {year}",
        "weekly_trend": f"SELECT toMonday(day) AS semaine, {national} WHERE {year} GROUP BY semaine ORDER BY semaine",
        "by_departement": f"SELECT departement, {kpis(rollup_for({'departement'}))} WHERE {year} "
                          "GROUP BY departement ORDER BY nb_visites DESC",
        "by_service": f"SELECT service, {kpis(rollup_for({'service'}))} WHERE {year} "
                      "GROUP BY service ORDER BY nb_visites DESC",
        "by_service_one_academie": (
            f"SELECT service, {kpis(rollup_for({'service', 'academie'}))} WHERE {year} "
            f"AND academie = '{one_academie}' GROUP BY service ORDER BY nb_visites DESC"
        ),
        "by_profil": f"SELECT profil, {national} WHERE {year} GROUP BY profil",
        "by_device": f"SELECT device, {national} WHERE {year} GROUP BY device",
        "deployment_coverage": (
            "SELECT e.departement, e.etablissements, ifNull(a.actifs, 0) AS nb_actifs, "
            "round(100 * ifNull(a.actifs, 0) / e.etablissements, 1) AS taux FROM "
            "(SELECT departement, count() AS etablissements FROM dnma.etablissements FINAL GROUP BY departement) e "
            "LEFT JOIN (SELECT departement, uniqExact(uai) AS actifs FROM dnma.visits_daily "
            f"WHERE day > '{last_day - timedelta(days=30)}' AND uai != '' GROUP BY departement) a "
            "ON a.departement = e.departement ORDER BY e.departement"
        ),
        "uai_page": (
            f"SELECT debutsemaine, profil, {kpis(rollup_for({'uai', 'profil'}, 'debutsemaine'))} "
            f"WHERE uai = '{one_uai}' AND {weeks} GROUP BY debutsemaine, profil ORDER BY debutsemaine, profil"
        ),
        # One establishment's services: straight from visits (exact), few rows for one UAI.
        "uai_services": (
            "SELECT service, count() AS nb_visites, uniqExact(if(user_hash != 0, user_hash, visitor_id)) "
            "AS nb_utilisateurs, sum(pageviews) AS nb_pages_vues, avg(duration) AS duree_moyenne "
            f"FROM dnma.visits ARRAY JOIN services AS service WHERE uai = '{one_uai}' AND {year} "
            "GROUP BY service ORDER BY nb_visites DESC"
        ),
    }


def timed(client: Any, sql: str, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.query(sql)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 1)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=50_000_000)
    parser.add_argument("--days", type=int, default=75, help="days the hits spread over (60-90)")
    parser.add_argument("--runs", type=int, default=20, help="runs of each dashboard query")
    parser.add_argument("--dir", default="", help="chDB directory (default: a fresh temporary one)")
    args = parser.parse_args()

    import clickhouse_connect

    from aggregator.migrate import migrate
    from aggregator.sessionizer import rebuild_days
    from dnma import clock
    from dnma.settings import Settings

    root = Path(args.dir or tempfile.mkdtemp(prefix="dnma-model-"))
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}", hits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    out: dict[str, Any] = {"hits_requested": args.hits, "loadavg_start": os.getloadavg()}
    out["referential_uais"] = load_referential(client, settings)
    uais = uai_pool(client)
    last = clock.today() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    t0 = time.monotonic()
    generate(client, args.hits, args.days, first, uais)
    client.command("OPTIMIZE TABLE dnma.hits FINAL")
    out["generate_s"] = round(time.monotonic() - t0, 1)
    hits = int(client.query("SELECT count() FROM dnma.hits").result_rows[0][0])

    # (a) every day dirty: rebuild_days builds the visits of each chunk of days (the sessionizer;
    # it times these phases), then rebuilds the six visit rollups from them.
    t0, c0 = time.monotonic(), cpu_seconds()
    built = rebuild_days(client, settings)
    wall, cpu = time.monotonic() - t0, cpu_seconds() - c0
    out["sessionizer"] = {  # hits -> visits
        "hits": hits, "days": len(built["days"]), "visits": built["visits"],
        "seconds": built["visits_seconds"], "hits_per_s": round(hits / built["visits_seconds"]),
    }
    out["rebuild_with_rollups"] = {  # hits -> visits -> every visit rollup, whole rebuild_days
        "seconds": round(wall, 2), "hits_per_s": round(hits / wall),
        "rollups_seconds": round(wall - built["visits_seconds"], 2),
        "cpu_s": round(cpu, 2), "hits_per_cpu_s": round(hits / cpu), "loadavg_after": os.getloadavg(),
    }

    # (b) dashboards
    year_start = date(last.year if last.month >= 8 else last.year - 1, 8, 1)
    one_uai = client.query("SELECT uai FROM dnma.visits_daily GROUP BY uai ORDER BY sum(visites) DESC "
                           "LIMIT 1 OFFSET 10").result_rows[0][0]
    one_academie = client.query("SELECT academie FROM dnma.visits_territoires_daily WHERE academie != '' "
                                "GROUP BY academie ORDER BY sum(visites) DESC LIMIT 1").result_rows
    queries = dashboard_queries(year_start, date(year_start.year + 1, 7, 31), last, one_uai,
                                one_academie[0][0] if one_academie else "")
    out["dashboards"] = {name: timed(client, sql, args.runs) for name, sql in queries.items()}
    out["dashboards_max_p95_ms"] = max(q["p95_ms"] for q in out["dashboards"].values())
    out["loadavg_after_dashboards"] = os.getloadavg()

    # (c) storage
    rows = client.query(
        "SELECT table, sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND database = 'dnma' "
        "GROUP BY table ORDER BY table").result_rows
    tables = {t: {"bytes": int(b), "rows": int(n)} for t, b, n in rows if int(b) > 0}
    # hits + visits + every rollup (hit and visit rollups); not the referential nor bookkeeping.
    counted = [t for t in tables if (t.startswith("hits") or t.startswith("visits"))
               and t != "visits_fingerprints" and "_stage" not in t]
    out["storage"] = {
        "tables": tables,
        "bytes_per_hit_hits": round(tables["hits"]["bytes"] / hits, 2),
        "bytes_per_hit_total": round(sum(tables[t]["bytes"] for t in counted) / hits, 2),
    }
    print(json.dumps(out))
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
