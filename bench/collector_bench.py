"""Ingest benchmark (prints JSON): a raw ASGI hello-world and the collector with its durable spool,
side by side on the same uvicorn stack, driven by wrk on loopback with 256 connections.

What is measured, in order, on one embedded stack:

1. `hello_asgi`: bench/hello_asgi.py under the same uvicorn options (uvloop, httptools).
2. `collector_single_get` and `latency_at_half_rate`: single-hit GETs with the loader NOT running
   (one uvicorn worker). Every answer is an acknowledgement: the hit is fsynced in the spool
   (group commit) before the 204 is sent. The latency run paces wrk to half the rate just measured.
3. `collector_single_get_while_loader_drains`: the loader is started on the backlog of step 2 and
   the same single-GET run repeats while it inserts into chDB on the same cores.
4. `single_get_stored`: then, once the loader has drained, `stored_hits` (count of dnma.hits) must
   equal `acknowledged_hits`, the collector's own count of hits fsynced in its spool (its
   /metrics); `wrk_answered_hits` (wrk's 2xx answers, without its calibration runs) is a lower
   bound of it: requests in flight when wrk stops are spooled but not counted by wrk.
5. `bulk_end_to_end`: the collector restarted with one worker per core (`--bulk-workers`); once its
   workers and the loader are idle (`wait_idle`), 1,000-item bulk POSTs (32 connections) with the
   loader running; hits/s from the first request until `count()` of dnma.hits reaches the
   acknowledged hits.
6. `freshness_ack_to_daily_rollup`, one hit at a time.

`loadavg` (start, end) is the machine's 1/5/15-minute load: figures taken under other load are not
comparable; compare before/after runs taken back to back. `host_speed_probe_s` (start, end) times
a fixed pure-Python loop in this process: on this shared machine the same loop has taken from
one to two times its best time within a day, and every figure here moves with the host.
`native` tells whether the collector ran its mypyc-compiled modules (collector/build_native.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import DEMO_SITE_ID, SUPER_TOKEN, Stack, free_port  # noqa: E402

HIT_QUERY = (
    f"/matomo.php?idsite={DEMO_SITE_ID}&rec=1&apiv=1&url=https%3A%2F%2Fent.demo.example%2Fnotes"
    "&action_name=Notes&_id=0123456789abcdef&dimension1=0350122T&dimension2=NOTES&dimension3=NATIF"
    "&dimension5=ELEVE&send_image=0"
)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def wrk(url: str, *, seconds: int, connections: int, script: Path | None = None, threads: int = 1) -> dict:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
           "-H", f"User-Agent: {UA}"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    lat = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            value, unit = float(m.group(1)), m.group(2)
            lat[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return {"rps": rps, "requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "", **lat}


def wrk_answers(url: str, *, seconds: int, connections: int) -> int:
    res = wrk(url, seconds=seconds, connections=connections)
    return int(res["requests"] - res["non_2xx"])


def accepted_hits(base_url: str) -> int:
    """Hits the collector appended to its spool (fsynced: acknowledged), from its /metrics."""
    import httpx

    text = httpx.get(base_url + "/metrics", timeout=10).text
    return int(sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("dnma_collector_hits_accepted_total")))


def wait_stored(client: Any, before: int, base_url: str, accepted_before: int) -> tuple[int, int, float]:
    """Poll count() of dnma.hits (less `before`) every 0.1 s until it holds every hit the collector
    acknowledged since `accepted_before`. The collector publishes its counters every second, so
    they are read 1.5 s after the call; the end time is the first poll that saw every acknowledged
    hit stored, not that wait. Returns (acknowledged, stored, end time on the monotonic clock)."""
    counted_at = time.monotonic() + 1.5
    acked = None
    deadline = time.monotonic() + 600
    seen: list[tuple[float, int]] = []
    while time.monotonic() < deadline:
        seen.append((time.monotonic(), int(client.command("SELECT count() FROM dnma.hits")) - before))
        if acked is None and time.monotonic() >= counted_at:
            acked = accepted_hits(base_url) - accepted_before
        if acked is not None and seen[-1][1] >= acked:
            break
        time.sleep(0.1)
    stored = seen[-1][1]
    return acked or 0, stored, next(at for at, n in seen if n >= stored)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out] or [parent]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: list[int], *, timeout: float = 60.0) -> float:
    """Wait until these processes together use under 5 % of a core over half a second: a worker
    still starting (uvicorn answers /healthz as soon as one worker is up, while another may still
    be loading device-detector's regexes) or a loader still sessionizing the previous stage's
    hits would take CPU from the run that follows. Returns the seconds waited."""
    t0 = time.monotonic()
    last = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        now = sum(cpu_seconds(p) for p in pids)
        if now - last < 0.025:
            break
        last = now
    return round(time.monotonic() - t0, 1)


def host_speed_probe() -> float:
    """Seconds of a fixed pure-Python loop (20 million additions): how fast the host runs now."""
    t0 = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return round(time.perf_counter() - t0, 2)


def bench_hello(seconds: int, connections: int) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.hello_asgi:app", "--port", str(port), "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=REPO,
    )
    try:
        time.sleep(2)
        return wrk(f"http://127.0.0.1:{port}/", seconds=seconds, connections=connections)
    finally:
        proc.terminate()
        proc.wait()


def delay_script(tmp: Path, delay_ms: float) -> Path:
    """A wrk script making each connection wait `delay_ms` after each response."""
    script = tmp / "pace.lua"
    script.write_text(f"function delay() return {max(delay_ms, 0.0):.3f} end\n")
    return script


def paced(url: str, tmp: Path, rate: float, *, seconds: int, connections: int = 64) -> dict:
    """wrk is closed-loop; pace it to about `rate` req/s: each connection's cycle is the delay
    plus the response time, so a short calibration run measures the latter and the delay is
    shortened by it."""
    delay = 1000.0 * connections / rate
    probe = wrk(url, seconds=3, connections=connections, script=delay_script(tmp, delay))
    overhead = 1000.0 * connections / probe["rps"] - delay
    return wrk(url, seconds=seconds, connections=connections, script=delay_script(tmp, delay - overhead))


def bulk_script(tmp: Path, items: int) -> Path:
    """1,000 items dated yesterday (`cdt`, the super-user token in the body), as a log import sends
    them: the loader's sessionizer passes hold that past day back while it grows (Settling) and
    rebuild its 1,000 visitors once it is quiet, not today's, where the single-hit runs left
    hundreds of thousands of hits of one visitor."""
    cdt = int(time.time()) - 86_400
    body = json.dumps({
        "requests": [f"?idsite={DEMO_SITE_ID}&rec=1&url=https%3A%2F%2Fent.demo.example%2Fp{i}"
                     f"&_id=00000000000{i:05x}&dimension1=0350122T&dimension2=NOTES&dimension5=ELEVE&cdt={cdt}"
                     for i in range(items)],
        "token_auth": SUPER_TOKEN,
    })
    script = tmp / "bulk.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body}]]\n"
    )
    return script


def freshness(stack: Stack, samples: int) -> dict:
    """Seconds from a hit's acknowledgement to its being counted in the daily hit rollup, one hit
    at a time on a site of its own, polled through the read-only endpoint every 50 ms."""
    import httpx

    client = stack.reader()
    sql = "SELECT sum(hits) FROM dnma.hits_daily WHERE site_id = 2"
    delays = []
    with httpx.Client(base_url=stack.collector_url, headers={"User-Agent": UA}) as http:
        for i in range(samples):
            before = int(client.command(sql) or 0)
            res = http.get("/matomo.php", params={"idsite": 2, "rec": 1, "url": f"https://ent-dnt.example/f{i}",
                                                  "dimension1": "0350122T", "dimension2": "NOTES",
                                                  "dimension5": "ELEVE", "send_image": 0})
            acked = time.monotonic()
            assert res.status_code == 204, res.text
            while int(client.command(sql) or 0) <= before:
                if time.monotonic() - acked > 60:
                    raise TimeoutError("hit never reached hits_daily")
                time.sleep(0.05)
            delays.append(time.monotonic() - acked)
    delays.sort()
    return {"samples": samples, "p50_s": round(delays[len(delays) // 2], 3),
            "p95_s": round(delays[int(len(delays) * 0.95) - 1], 3), "max_s": round(delays[-1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--bulk-items", type=int, default=1000)
    ap.add_argument("--bulk-seconds", type=int, default=30,
                    help="length of the bulk run: the loader's last batch (gathered until the spool falls quiet, then "
                         "inserted) weighs less in a longer one")
    ap.add_argument("--bulk-workers", type=int, default=os.cpu_count() or 1,
                    help="collector workers for the bulk run (default: one per core)")
    ap.add_argument("--freshness-samples", type=int, default=40)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (make system-deps)")
    tmp = Path(tempfile.mkdtemp(prefix="dnma-bench-"))
    import collector

    result: dict = {"connections": args.connections, "seconds": args.seconds, "native": getattr(collector, "NATIVE", False),
                    "loadavg": loadavg(), "host_speed_probe_s": [host_speed_probe()]}
    try:
        result["hello_asgi"] = bench_hello(args.seconds, args.connections)
        with Stack(tmp) as stack:
            stack.start_collector()
            url = stack.collector_url + HIT_QUERY
            answered = wrk_answers(url, seconds=2, connections=16)  # warm the UA cache and the spool
            single = wrk(url, seconds=args.seconds, connections=args.connections)
            pids = worker_pids(stack.procs["collector"].pid)
            single["rss_mb_per_worker"] = max(rss_mb(p) for p in pids)
            result["collector_single_get"] = single
            result["ratio_to_hello"] = round(single["rps"] / result["hello_asgi"]["rps"], 3)
            half = single["rps"] / 2
            latency = paced(url, tmp, half, seconds=args.seconds)
            result["latency_at_half_rate"] = {"target_rps": round(half), **latency}
            answered += sum(r["requests"] - r["non_2xx"] for r in (single, latency))

            stack.start_loader()
            draining = wrk(url, seconds=args.seconds, connections=args.connections)
            draining["ratio_to_hello"] = round(draining["rps"] / result["hello_asgi"]["rps"], 3)
            result["collector_single_get_while_loader_drains"] = draining
            answered += draining["requests"] - draining["non_2xx"]
            client = stack.reader()
            t0 = time.monotonic()
            accepted, stored, drained_at = wait_stored(client, 0, stack.collector_url, 0)
            result["single_get_stored"] = {
                "acknowledged_hits": accepted,  # fsynced in the spool (the collector's own count)
                "wrk_answered_hits": answered,  # a lower bound: wrk's calibration runs are not counted
                "stored_hits": stored,
                "stored_equals_acknowledged": stored == accepted,
                "seconds_to_drain_after_last_request": round(drained_at - t0, 2),
            }

            # Bulk with one collector worker per core (the single-hit figures above are per worker):
            # the collector, at ~10 µs of CPU an item, is then no longer capped at one core while the
            # loader and ClickHouse use the other one.
            stack.stop("collector")
            stack.start_collector("--workers", str(args.bulk_workers))
            pids = worker_pids(stack.procs["collector"].pid)
            loader_pid = stack.procs["loader"].pid
            idle_wait = wait_idle([*pids, loader_pid])
            client = stack.reader()
            before = int(client.command("SELECT count() FROM dnma.hits"))
            accepted_before = accepted_hits(stack.collector_url)
            cpu0 = {"collector": sum(map(cpu_seconds, pids)), "loader": cpu_seconds(loader_pid)}
            t0 = time.monotonic()
            bulk_seconds = args.bulk_seconds
            bulk = wrk(stack.collector_url + "/matomo.php", seconds=bulk_seconds, connections=32,
                       script=bulk_script(tmp, args.bulk_items))
            # The collector's own count: requests still in flight when wrk stops are acknowledged
            # (and stored) but not counted by wrk.
            acked, stored, stored_at = wait_stored(client, before, stack.collector_url, accepted_before)
            cpu1 = {"collector": sum(map(cpu_seconds, pids)), "loader": cpu_seconds(loader_pid)}
            elapsed = stored_at - t0
            result["bulk_end_to_end"] = {
                "collector_workers": args.bulk_workers,
                "seconds_waited_for_idle_stack": idle_wait,
                "items_per_request": args.bulk_items,
                "seconds": bulk_seconds,
                "acknowledged_hits": acked,
                "stored_hits": stored,
                "stored_equals_acknowledged": stored == acked,
                "seconds_until_stored": round(elapsed, 2),
                "wrk_answered_hits": (bulk["requests"] - bulk["non_2xx"]) * args.bulk_items,
                "hits_per_s_acknowledged": round(acked / bulk_seconds),
                "hits_per_s_end_to_end": round(stored / elapsed),
                # CPU of the collector's workers and of the loader (chDB included) per stored hit,
                # from the first request until a little after the last hit was counted.
                "cpu_us_per_hit": {k: round((cpu1[k] - cpu0[k]) / max(stored, 1) * 1e6, 2) for k in cpu0},
            }
            result["collector_rss_mb_per_worker_after_bulk"] = max(rss_mb(p) for p in pids)
            result["freshness_ack_to_daily_rollup"] = freshness(stack, args.freshness_samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_end"] = loadavg()
    result["host_speed_probe_s"].append(host_speed_probe())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
