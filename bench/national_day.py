"""National school day benchmark (issue 21; prints JSON): one embedded stack holding a large school
day so far (`--hits`, 30 M: generated inside ClickHouse as bench/model.py does, before the loader
starts), then the real collector driven at a national peak rate (`--rate`, 5,000 hits/s) for
`--minutes` while the loader's periodic passes (incremental visits, today's rollups) run.

Traffic: the simulator's school day (tagging-sdk, `Simulation.day`: its profiles, services, tools,
devices, pings and events, in the order of the day) is written once into a file and replayed by
`wrk` with a Lua script (bench/national_day.lua): a Python generator would take one of the two
cores. Each replay of the file is a new cycle of visitors (the first 4 hex digits of `_id` and the
start of `uid` carry the cycle number), sent without `cdt`: the hits are stamped by the collector,
as a national morning would. The stack's clock is set so that the live traffic starts at `--at`
(Paris time of the host's date; the preloaded hits end before it): the morning peak by default,
whatever time the benchmark runs.

Freshness: a marker hit (its own site and UAI, `new_visit=1`: one visit each) is sent every
`--marker-every` s; every `--sample-every` s the read-only endpoint is asked how many markers each
table holds (hits, visits, visits_daily, hits_daily). The age of a table at a sample is the time
since the newest marker it holds was acknowledged; `behind_newest_hit` subtracts the age of `hits`
at the same sample (what the loader has not inserted yet). Also: ack latency from wrk, loader lag
(its status file), the loader's passes from its log (seconds, CPU not separable from its inserts),
CPU per process over the run (collector workers, loader, wrk apart, this script), and whether the
hits stored equal the hits acknowledged once the traffic stopped.

    .venv/bin/python bench/national_day.py [--hits 30000000] [--rate 5000] [--minutes 10] [--scale 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.collector_bench import accepted_hits, cpu_seconds  # noqa: E402
from bench.soak import _loader_status, _tree  # noqa: E402
from tests.harness import Stack  # noqa: E402

PARIS = ZoneInfo("Europe/Paris")
LUA = Path(__file__).with_suffix(".lua")
SITE_TOKEN = "national-day-token"
SIM_DAY = date(2026, 11, 23)  # a Monday in term time in every zone: the replayed day's content
MARKER_SITE = 9999
MARKER_VISITOR = "feedfacecafebeef"
HITS_PER_VISITOR_DAY = 9
SITES = 1_000  # the preloaded day's sites (bench/model.py's)
CHUNK = 5_000_000  # hits per INSERT ... SELECT: bounded memory


# --- the preloaded day, generated inside ClickHouse (in a child process: one chDB owner at a time)
def preload(config: str, hits: int, day: date, until: datetime) -> dict[str, Any]:
    """`hits` hits of `day`, all before `until`: visitor-days of ~9 hits from 05:30, model.py's mix
    (1,000 sites, 10k UAIs, profiles, services, actions and pings, campaigns, new_visit, gaps)."""
    os.environ["DNMA_CONFIG"] = config
    import clickhouse_connect

    from aggregator.migrate import migrate
    from bench.model import _array, uai_pool
    from dnma.settings import Settings
    from dnma.vocab import BROWSERS, DEVICES, OSES, SERVICES

    settings = Settings()
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    uais = uai_pool(client)
    profils = ["ELEVE"] * 12 + ["PARENT"] * 5 + ["ENSEIGNANT"] * 2 + ["ADMIN_VIE_SCOL_TECH", "AUTRE"]
    services = list(SERVICES[:6]) * 4 + list(SERVICES)
    actions = ["pageview"] * 10 + ["ping"] * 4 + ["event"] * 2 + ["download", "outlink", "search", "content"]
    first = int(datetime.combine(day, dtime(5, 30), PARIS).timestamp())
    last = int(until.timestamp()) - 60
    span = max(60, last - first - 3 * 3600)  # visits start early enough to end before `until`, mostly
    t0 = time.monotonic()
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
    cityHash64(vd, 0) % {max(1, hits // HITS_PER_VISITOR_DAY)} AS visitor,
    toDateTime(least({last} - cityHash64(number, 22) % 600,
      {first} + cityHash64(vd, 3) % {span}
      + (number % {HITS_PER_VISITOR_DAY}) * (20 + cityHash64(number, 4) % 600)
      + if(cityHash64(number, 5) % 12 = 0, 1800, 0)), 'Europe/Paris') AS t,
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
    arrayStringConcat(arrayMap(i -> substring(
      '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
      1 + bitShiftRight(cityHash64(vd, intDiv(number % {HITS_PER_VISITOR_DAY}, 2)), 6 * i) % 62, 1), range(6))) AS pv_id
  FROM numbers({start}, {n})
)
""",
            settings={"max_insert_threads": 2, "max_query_size": 10_000_000},
        )
    generate_s = time.monotonic() - t0
    # The day's hits merged as they would be by mid-morning, rather than merging on the run's cores.
    client.command("OPTIMIZE TABLE dnma.hits FINAL")
    stored = int(client.query("SELECT count() FROM dnma.hits").result_rows[0][0])
    newest = client.query("SELECT max(ts) FROM dnma.hits").result_rows[0][0]
    client.close()
    return {"hits": stored, "generate_s": round(generate_s, 1), "optimize_s": round(time.monotonic() - t0 - generate_s, 1),
            "newest_hit": str(newest)}


def _preload_child(out: Any, *args: Any) -> None:
    out.put(preload(*args))


# --- the replayed requests
def write_requests(path: Path, scale: float, seed: int) -> int:
    """The simulator's school day as wrk's Lua script reads it: one request a line, in three parts
    split where the cycle number goes (`_id`'s first 4 hex digits, then the start of `uid`)."""
    from dnma_client.simulator import Simulation

    n = 0
    with path.open("w", encoding="ascii") as f:
        for item in Simulation(scale=scale, seed=seed).day(SIM_DAY):
            query = re.sub(r"&cdt=\d+", "", item.lstrip("?"))  # stamped by the collector: live hits
            m = re.search(r"_id=[0-9a-f]{4}([0-9a-f]{12})&uid=", query)
            if m is None:
                continue
            f.write(f"/matomo.php?{query[:m.start()]}_id=\t{m.group(1)}&uid=\t{query[m.end():]}&send_image=0\n")
            n += 1
    return n


def marker_sites() -> list[dict[str, Any]]:
    from dnma.sites import hash_token

    return [{"id": MARKER_SITE, "name": "Marqueurs du banc", "main_url": "https://marqueurs.example",
             "timezone": "Europe/Paris", "token_sha256": hash_token(SITE_TOKEN)}]


def marker_uai() -> str:
    from dnma.uai import check_letter

    return "0359999" + check_letter("0359999")


# --- the run
class Run:
    def __init__(self, args: argparse.Namespace, stack: Stack, day: date) -> None:
        self.args = args
        self.stack = stack
        self.day = day
        self.uai = marker_uai()
        self.stop = threading.Event()
        self.acks: list[float] = []  # monotonic time each marker was acknowledged, in order
        self.marker_errors = 0
        self.samples: list[dict[str, Any]] = []
        self.sample_errors: list[str] = []

    def markers(self) -> None:
        import httpx

        with httpx.Client(base_url=self.stack.collector_url, timeout=10) as http:
            k = 0
            while not self.stop.wait(self.args.marker_every):
                k += 1
                r = http.get(f"/matomo.php?idsite={MARKER_SITE}&rec=1&_id={MARKER_VISITOR}&new_visit=1"
                             f"&url=https%3A%2F%2Fmarqueurs.example%2F{k}&action_name=m{k}&dimension1={self.uai}"
                             "&dimension2=NOTES&dimension3=NATIF&dimension5=ELEVE&send_image=0")
                if r.status_code == 204:
                    self.acks.append(time.monotonic())
                else:
                    self.marker_errors += 1

    def sampler(self, t0: float) -> None:
        client = self.stack.reader()
        day = self.day.isoformat()
        sql = (f"SELECT (SELECT count() FROM dnma.hits WHERE toDate(ts) = '{day}' AND site_id = {MARKER_SITE}), "
               f"(SELECT count() FROM dnma.visits WHERE day = '{day}' AND site_id = {MARKER_SITE}), "
               f"(SELECT sum(visites) FROM dnma.visits_daily WHERE day = '{day}' AND site_id = {MARKER_SITE} "
               f"AND uai = '{self.uai}'), "
               f"(SELECT sum(hits) FROM dnma.hits_daily WHERE site_id = {MARKER_SITE} AND day = '{day}' "
               f"AND uai = '{self.uai}')")
        while not self.stop.wait(self.args.sample_every):
            try:
                at = time.monotonic()
                acked = list(self.acks)
                counts = [int(v or 0) for v in client.query(sql).result_rows[0]]
                sample: dict[str, Any] = {"t": round(at - t0, 1), "markers_acked": len(acked)}
                for table, n in zip(("hits", "visits", "visits_daily", "hits_daily"), counts, strict=True):
                    # Before the first marker is stored the age is that of the run: ages from then on.
                    sample[f"{table}_age_s"] = round(at - acked[n - 1], 2) if 0 < n <= len(acked) else None
                sample["loader_lag_s"] = _loader_status(self.stack).get("lag_seconds")
                sample["acknowledged_hits"] = accepted_hits(self.stack.collector_url)
                self.samples.append(sample)
            except Exception as exc:  # noqa: BLE001 - a missed sample is reported, the run goes on
                self.sample_errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")


def wrk_run(url: str, requests: Path, args: argparse.Namespace, seconds: float, out: Path) -> dict[str, Any]:
    """wrk paced by the Lua script to `--rate` over every connection; returns its figures and its
    own CPU (rusage of the reaped child)."""
    cmd = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{max(1, round(seconds))}s",
           "--latency", "--timeout", "10s", "-s", str(LUA), url, "--", str(requests), str(args.rate),
           str(args.wrk_threads), "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"]
    t0 = time.monotonic()
    with out.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    text = out.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {text[-2000:]}")
    res: dict[str, Any] = {"seconds": round(wall, 1)}
    total = re.search(r"(\d+) requests in", text)
    res["requests"] = int(total.group(1)) if total else 0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(rps.group(1)) if rps else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: (.*)", text)
    res["socket_errors"] = errors.group(1) if errors else ""
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", text)
        if m:
            value, unit = float(m.group(1)), m.group(2)
            res[f"p{pct}_ms"] = round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)
    res["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    res["cores"] = round(res["cpu_s"] / wall, 3) if wall else None
    return res


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    s = sorted(values)
    return {"p50": round(statistics.median(s), 1), "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 1),
            "max": round(s[-1], 1), "n": len(s)}


def aggregated_events(stack: Stack) -> list[dict[str, Any]]:
    """The loader's sessionizer passes that built something ('aggregated' events of its JSON log)."""
    out = []
    for line in stack.log_tail("loader", 1 << 30).splitlines():
        if '"aggregated"' not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "aggregated" and isinstance(doc.get("result"), dict):
            out.append(doc)
    return out


def passes_from_log(stack: Stack, t_start_wall: float, t_end_wall: float) -> list[dict[str, Any]]:
    """The passes that ended during the run: wall time, the sessionizer's share, incremental or not."""
    out = []
    for doc in aggregated_events(stack):
        at = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp()
        if not t_start_wall <= at <= t_end_wall:
            continue
        result = doc["result"]
        out.append({"t": round(at - t_start_wall, 1), "pass_s": round(doc.get("ms", 0) / 1000, 2),
                    "sessionizer_s": result.get("seconds"), "visits_s": result.get("visits_seconds"),
                    "incremental": bool(result.get("incremental_days")), "days": result.get("days"),
                    "visits": result.get("visits")})
    return out


def wait_first_pass(stack: Stack, day: date, timeout: float) -> float:
    """Wait until the loader's first pass has built the preloaded day whole."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(day.isoformat() in doc["result"].get("days", ()) for doc in aggregated_events(stack)):
            return round(time.monotonic() - t0, 1)
        if stack.procs["loader"].poll() is not None:
            raise RuntimeError(f"loader exited: {stack.log_tail('loader')}")
        time.sleep(0.5)
    raise TimeoutError(f"the loader's first pass did not finish in {timeout} s")


def wait_drained(stack: Stack, expected_before: int, timeout: float = 900) -> dict[str, Any]:
    client = stack.reader()
    time.sleep(1.5)  # the collector publishes its counters every second
    acknowledged = accepted_hits(stack.collector_url)
    t0 = time.monotonic()
    stored = 0
    while time.monotonic() - t0 < timeout:
        stored = int(client.command("SELECT count() FROM dnma.hits")) - expected_before
        if stored >= acknowledged:
            break
        time.sleep(1)
    return {"acknowledged_hits": acknowledged, "stored_hits": stored, "stored_equals_acknowledged": stored == acknowledged,
            "seconds_to_drain": round(time.monotonic() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hits", type=int, default=30_000_000, help="hits of the day so far, preloaded")
    ap.add_argument("--rate", type=float, default=5000, help="hits/s sent to the collector")
    ap.add_argument("--minutes", type=float, default=10, help="minutes of live traffic")
    ap.add_argument("--scale", type=float, default=10, help="simulator scale of the replayed day (10: ~200k requests)")
    ap.add_argument("--at", default="10:00", help="Paris time of day at which the live traffic starts (HH:MM)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="collector worker processes")
    ap.add_argument("--aggregate-interval", type=float, default=30, help="seconds between the loader's passes")
    ap.add_argument("--checks-every", type=float, default=0, help="quality checks interval (0: off)")
    ap.add_argument("--marker-every", type=float, default=1.0)
    ap.add_argument("--sample-every", type=float, default=2.0)
    ap.add_argument("--first-pass-timeout", type=float, default=3600)
    ap.add_argument("--passes", action="store_true", help="also print every pass and sample")
    args = ap.parse_args()
    from dnma_client.simulator import demo_sites

    from dnma import clock

    try:
        hour, minute = (int(x) for x in args.at.split(":"))
        day = clock.now(PARIS).date()  # the host's date, or DNMA_NOW's (tests pin it)
        at = datetime.combine(day, dtime(hour, minute), PARIS)
    except ValueError:
        print(f"national_day: --at {args.at!r}: expected HH:MM", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("national_day: wrk not found (make system-deps installs it)", file=sys.stderr)
        return 2
    started = time.monotonic()
    stages: dict[str, float] = {}  # when each stage ended, seconds from the start

    def stage(name: str) -> None:
        stages[name] = round(time.monotonic() - started, 1)

    out: dict[str, Any] = {"args": vars(args), "day": day.isoformat(), "loadavg_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="dnma-national-") as tmp:
        root = Path(tmp)
        requests = root / "requests.tsv"
        t0, c0 = time.monotonic(), time.process_time()
        out["requests_file"] = {"requests": write_requests(requests, args.scale, 3),
                                "bytes": requests.stat().st_size, "seconds": round(time.monotonic() - t0, 1),
                                "cpu_s": round(time.process_time() - c0, 1)}
        stage("requests_file")
        # The stack's clock reads `at` now (then runs on): the day so far is the preloaded one.
        offset = at.timestamp() - time.time()  # the stack's `now` is an offset from the host clock
        with Stack(root, sites=[*demo_sites(SITE_TOKEN), *marker_sites()], loader_aggregate_interval_s=args.aggregate_interval,
                   quality_checks_interval_s=args.checks_every, publication_schedule="off", log_format="json",
                   collector_workers=args.workers, now=f"{offset:+.0f}") as stack:
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            t0 = time.monotonic()
            child = ctx.Process(target=_preload_child, args=(queue, str(stack.config_path), args.hits, day, at))
            child.start()
            out["preload"] = queue.get()
            child.join()
            out["preload"]["seconds"] = round(time.monotonic() - t0, 1)
            stage("preload")
            stack.start_loader()
            stage("loader_started")
            out["first_pass_whole_day_s"] = wait_first_pass(stack, day, args.first_pass_timeout)
            stage("first_pass")
            stack.start_collector()
            stage("collector_started")
            loader_pid = stack.procs["loader"].pid
            collector = _tree(stack.procs["collector"].pid)
            cpu0 = {"collector": sum(cpu_seconds(p) for p in collector), "loader": cpu_seconds(loader_pid),
                    "bench": time.process_time()}
            run = Run(args, stack, day)
            t_start, wall_start = time.monotonic(), time.time()
            threads = [threading.Thread(target=run.markers, daemon=True),
                       threading.Thread(target=run.sampler, args=(t_start,), daemon=True)]
            for t in threads:
                t.start()
            out["wrk"] = wrk_run(stack.collector_url + "/matomo.php", requests, args, args.minutes * 60, root / "wrk.txt")
            seconds = time.monotonic() - t_start
            stage("traffic")
            cpu = {"collector": sum(cpu_seconds(p) for p in collector) - cpu0["collector"],
                   "loader": cpu_seconds(loader_pid) - cpu0["loader"], "bench": time.process_time() - cpu0["bench"]}
            run.stop.set()
            for t in threads:
                t.join(timeout=30)
            wall_end = time.time()
            out["cpu_cores"] = {**{k: round(v / seconds, 3) for k, v in cpu.items()}, "wrk": out["wrk"]["cores"]}
            out["cpu_s"] = {**{k: round(v, 1) for k, v in cpu.items()}, "wrk": out["wrk"]["cpu_s"]}
            out["loadavg_end"] = list(os.getloadavg())
            out.update(wait_drained(stack, out["preload"]["hits"]))
            stage("drained")
            passes = passes_from_log(stack, wall_start, wall_end)
    stage("stack_stopped")
    out["stages_s"] = stages
    samples = run.samples
    out["ack_latency_ms"] = {k: out["wrk"].get(k) for k in ("p50_ms", "p90_ms", "p99_ms")}
    out["rate_achieved"] = round(out["wrk"]["requests"] / out["wrk"]["seconds"]) if out["wrk"]["seconds"] else 0
    out["loader_lag_s"] = stats([s["loader_lag_s"] for s in samples if s.get("loader_lag_s") is not None])
    for table in ("hits", "visits", "visits_daily", "hits_daily"):
        ages = [s[f"{table}_age_s"] for s in samples if s.get(f"{table}_age_s") is not None]
        out[f"{table}_age_s"] = stats(ages)
        if table != "hits":
            behind = [s[f"{table}_age_s"] - s["hits_age_s"] for s in samples
                      if s.get(f"{table}_age_s") is not None and s.get("hits_age_s") is not None]
            out[f"{table}_behind_newest_hit_s"] = stats(behind)
    for p in passes:  # the day's size when the pass ended: the preload and what was acknowledged so far
        before = [s["acknowledged_hits"] for s in samples if s["t"] <= p["t"]]
        p["day_hits"] = out["preload"]["hits"] + (before[-1] if before else 0)
    live = [p for p in passes if p["incremental"]]
    third = max(1, len(live) // 3)
    out["passes"] = {
        "count": len(passes), "incremental": len(live),
        "pass_s": stats([p["pass_s"] for p in live]),
        "first_third_mean_s": round(statistics.mean(p["pass_s"] for p in live[:third]), 2) if live else None,
        "last_third_mean_s": round(statistics.mean(p["pass_s"] for p in live[-third:]), 2) if live else None,
        "day_hits_first_last": [live[0]["day_hits"], live[-1]["day_hits"]] if live else None,
    }
    out["marker_errors"] = run.marker_errors
    out["sample_errors"] = run.sample_errors[:5]
    def within(figure: float | None, limit: float) -> bool:
        return figure is not None and figure <= limit

    out["targets_met"] = {
        "rate": out["rate_achieved"] >= args.rate * 0.98,
        "visits_p95_le_60s": within(out["visits_behind_newest_hit_s"]["p95"], 60),
        "visits_daily_p95_le_60s": within(out["visits_daily_behind_newest_hit_s"]["p95"], 60),
        "hits_daily_p95_le_10s": within(out["hits_daily_behind_newest_hit_s"]["p95"], 10),
        "ack_p99_le_20ms": within(out["wrk"].get("p99_ms"), 20),
        "stored_equals_acknowledged": out["stored_equals_acknowledged"],
    }
    if args.passes:
        out["pass_list"] = passes
        out["samples"] = samples
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
