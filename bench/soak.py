"""Soak benchmark (prints JSON): one embedded stack under a realistic ENT day, sped up, for an hour
(`--minutes`), with a share of bad requests, while dashboard-like queries read the read-only
endpoint and the loader's passes (visits, rollups, checks) run as they do in production.

Traffic: the simulator's school days (tagging-sdk, `Simulation.day`), each day's hits replayed in
order with the day's 24 hours squeezed into `--day-seconds`, so the rate follows the daily curve
(night, morning peak, lunch, evening). Each hit keeps its `cdt` (its simulated day, from FIRST_DAY on,
authenticated with the sites' token as a replayed log would be): every simulated day is its own
day in ClickHouse, as in production, rather than six days of traffic piling into one "today".
`--bad-share` of the requests are bad on purpose (missing or unknown site, malformed bulk JSON, too
deep a bulk item, an old `cdt` without a token, an oversized url, bytes that are not UTF-8): each must
get a 4xx, never a 5xx.

Every `--report-every` seconds: RSS and open files of every process (collector workers, loader),
spool bytes, loader lag and backlog, hits acknowledged, 5xx so far. At the end the traffic stops and
the stack drains: `stored_equals_acknowledged` compares count() of dnma.hits with the collector's
own count of acknowledged hits. Targets (issue 19): RSS flat (the peak of the last 10 minutes under
10 % above the peak of minutes 10 to 20; a sixth of a shorter run in place of 10 minutes), nothing
lost, no 5xx. The samples are printed as they come on stderr, and all of them in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.collector_bench import accepted_hits  # noqa: E402
from tests.harness import Stack  # noqa: E402

SITE_TOKEN = "soak-site-token"  # every simulated site's write token
FIRST_DAY = date(2026, 11, 23)  # a Monday in term time in every zone: days cycle from there
DASHBOARD_QUERIES = (
    "SELECT day, sum(hits) FROM dnma.hits_daily GROUP BY day ORDER BY day",
    "SELECT uai, sum(hits), uniqMerge(utilisateurs) FROM dnma.hits_daily GROUP BY uai ORDER BY 2 DESC LIMIT 20",
    "SELECT profil, service, sum(hits) FROM dnma.hits_daily WHERE day >= {since:Date} GROUP BY profil, service",
    "SELECT count(), sum(pageviews) FROM dnma.visits",
)


def _bad_request(rng: random.Random, n: int) -> tuple[str, str, bytes | None]:
    """(method, path with query, body) of one bad request."""
    kinds = [
        ("GET", "/matomo.php?rec=1&url=https%3A%2F%2Fent.example%2Fx", None),  # no idsite
        ("GET", "/matomo.php?idsite=abc&rec=1", None),
        ("GET", "/matomo.php?idsite=999999&rec=1&url=https%3A%2F%2Fent.example%2Fx", None),
        ("POST", "/matomo.php", b'{"requests": ["?idsite=1&rec=1", '),  # truncated JSON
        ("POST", "/matomo.php", b'{"requests": [' + b"[" * 2000 + b"]" * 2000 + b"]}"),  # too deep
        ("GET", f"/matomo.php?idsite=1&rec=1&_id=0123456789abcdef&cdt={int(time.time()) - 30 * 86400}", None),
        ("GET", "/matomo.php?idsite=1&rec=1&url=" + "x" * 60_000, None),  # httpx's own cap is 64 KiB
        ("GET", "/matomo.php?idsite=1&rec=1&action_name=%FF%FE%00&_id=zz", None),
    ]
    return kinds[n % len(kinds)]


class Soak:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: dict[str, int] = {}  # "good 204", "bad 400", ...
        self.server_errors = 0
        self.transport_errors = 0
        self.transport_error_samples: list[str] = []  # which requests failed below HTTP, and why
        self.reader_queries = 0
        self.reader_errors: list[str] = []
        self.work: queue.Queue[tuple[str, str, bytes | None, bool] | None] = queue.Queue(maxsize=2000)

    # --- traffic
    def _count(self, key: str) -> None:
        with self.lock:
            self.statuses[key] = self.statuses.get(key, 0) + 1

    def _sender(self) -> None:
        import httpx

        with httpx.Client(base_url=self.stack.collector_url, timeout=30,
                          headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0"}) as http:
            while True:
                job = self.work.get()
                if job is None:
                    return
                method, path, body, good = job
                try:
                    r = http.request(method, path, content=body)
                except Exception as exc:  # noqa: BLE001 - a refused connection, a client-side refusal: counted
                    with self.lock:
                        self.transport_errors += 1
                        self.transport_error_samples.append(f"{type(exc).__name__} {'good' if good else 'bad'} "
                                                            f"{method} {path[:80]}: {str(exc)[:120]}")
                    continue
                self._count(f"{'good' if good else 'bad'} {r.status_code}")
                if r.status_code >= 500:
                    with self.lock:
                        self.server_errors += 1

    def _producer(self) -> None:
        from dnma_client.simulator import Simulation

        rng = random.Random(7)
        sim = Simulation(scale=self.args.scale, seed=3)
        day_seconds = self.args.day_seconds
        started = time.monotonic()
        n_bad = 0
        for d in range(10_000):
            day = FIRST_DAY + timedelta(days=d)
            day_start = started + d * day_seconds
            midnight = None
            for item in sim.day(day):
                params = dict(parse_qsl(item.lstrip("?"), keep_blank_values=True))
                cdt = int(params.get("cdt", "0") or 0)
                params["token_auth"] = SITE_TOKEN
                midnight = midnight or cdt - cdt % 86400 - 3600  # Paris midnight, near enough for pacing
                due = day_start + (cdt - midnight) % 86400 / 86400 * day_seconds
                wait = due - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return
                if self.stop.is_set():
                    return
                self.work.put(("GET", "/matomo.php?" + urlencode(params) + "&send_image=0", None, True))
                if rng.random() < self.args.bad_share / (1 - self.args.bad_share):
                    self.work.put((*_bad_request(rng, n_bad), False))
                    n_bad += 1
            wait = day_start + day_seconds - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                return

    # --- dashboards
    def _reader(self) -> None:
        client = self.stack.reader()
        since = (FIRST_DAY - timedelta(days=30)).isoformat()
        while not self.stop.wait(self.args.dashboard_every):
            for sql in DASHBOARD_QUERIES:
                try:
                    client.query(sql, parameters={"since": since})
                    self.reader_queries += 1
                except Exception as exc:  # noqa: BLE001 - counted and reported, the soak goes on
                    self.reader_errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")

    # --- sampling
    def sample(self, t0: float) -> dict[str, Any]:
        procs = {"collector": _tree(self.stack.procs["collector"].pid), "loader": [self.stack.procs["loader"].pid]}
        out: dict[str, Any] = {"minute": round((time.monotonic() - t0) / 60, 2)}
        for name, pids in procs.items():
            out[f"{name}_rss_mb"] = round(sum(_rss_mb(p) for p in pids), 1)
            # Anonymous memory (heaps, chDB's allocations) against file-backed pages (the chDB library's
            # code, paged in as new query paths first run: shared, reclaimable, not a leak).
            out[f"{name}_rss_anon_mb"] = round(sum(_rss_mb(p, "RssAnon:") for p in pids), 1)
            out[f"{name}_rss_file_mb"] = round(sum(_rss_mb(p, "RssFile:") for p in pids), 1)
            out[f"{name}_open_files"] = sum(_open_files(p) for p in pids)
        spool_dir = self.stack.data_dir / "spool"
        out["spool_bytes"] = sum(p.stat().st_size for p in spool_dir.glob("*") if p.is_file())
        status = _loader_status(self.stack)
        out["loader_lag_s"] = status.get("lag_seconds")
        out["loader_backlog_bytes"] = status.get("backlog_bytes")
        # The loader's own accounting (aggregator/loader_health.record_memory): chDB's tracked memory
        # and caches, primary keys in memory, Python's heap; what an RSS growth is made of.
        out["loader_memory"] = status.get("memory", {})
        out["acknowledged_hits"] = accepted_hits(self.stack.collector_url)
        out["server_errors"] = self.server_errors
        return out

    def run(self) -> dict[str, Any]:
        senders = [threading.Thread(target=self._sender, daemon=True) for _ in range(self.args.senders)]
        for t in senders:
            t.start()
        producer = threading.Thread(target=self._producer, daemon=True)
        reader = threading.Thread(target=self._reader, daemon=True)
        t0 = time.monotonic()
        producer.start()
        reader.start()
        samples = []
        end = t0 + self.args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(self.args.report_every, max(0.0, end - time.monotonic())))
            samples.append(self.sample(t0))
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
        self.stop.set()
        producer.join(timeout=30)
        for _ in senders:
            self.work.put(None)  # after the queued requests: every one produced is sent
        for t in senders:
            t.join(timeout=60)
        reader.join(timeout=60)
        drained = _wait_drained(self.stack)
        return {"samples": samples, **drained}


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def _rss_mb(pid: int, field: str = "VmRSS:") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _loader_status(stack: Stack) -> dict[str, Any]:
    try:
        return dict(json.loads((stack.data_dir / "loader_status.json").read_text()))
    except (OSError, ValueError):
        return {}


def _wait_drained(stack: Stack, timeout: float = 600) -> dict[str, Any]:
    """Once the traffic stopped: wait until count() of dnma.hits reaches the acknowledged hits."""
    client = stack.reader()
    time.sleep(1.5)  # the collector publishes its counters every second
    acknowledged = accepted_hits(stack.collector_url)
    t0 = time.monotonic()
    stored = 0
    while time.monotonic() - t0 < timeout:
        stored = int(client.command("SELECT count() FROM dnma.hits"))
        if stored >= acknowledged:
            break
        time.sleep(1)
    return {"acknowledged_hits": acknowledged, "stored_hits": stored, "stored_equals_acknowledged": stored == acknowledged,
            "seconds_to_drain": round(time.monotonic() - t0, 1)}


def _growth(samples: list[dict[str, Any]], key: str, warmup_minutes: float, low: bool = False) -> float | None:
    """Growth of the peak: the highest sample of the last `warmup_minutes` against the highest of
    the first `warmup_minutes` after the warm-up. The loader's RSS swings by about a tenth with its
    passes (a sessionizer day, a merge, a check run): one sample against another would measure where
    each fell in that swing; a leak raises the peaks. `low`: the same for the troughs (the lowest
    samples), the memory held between passes."""
    pick = min if low else max
    end = samples[-1]["minute"] if samples else 0.0
    first = [s[key] for s in samples if warmup_minutes <= s["minute"] < 2 * warmup_minutes]
    last = [s[key] for s in samples if s["minute"] > end - warmup_minutes]
    if not first or not last or end < 3 * warmup_minutes or not pick(first):
        return None
    return round((pick(last) - pick(first)) / pick(first), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--day-seconds", type=float, default=600, help="one simulated day lasts this long")
    ap.add_argument("--scale", type=float, default=2.0, help="simulator scale (1.0: ~19k hits per school day)")
    ap.add_argument("--bad-share", type=float, default=0.05)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--report-every", type=float, default=60)
    ap.add_argument("--dashboard-every", type=float, default=5)
    args = ap.parse_args()
    from dnma_client.simulator import demo_sites

    with tempfile.TemporaryDirectory(prefix="dnma-soak-") as tmp, \
            Stack(Path(tmp), sites=demo_sites(SITE_TOKEN), loader_aggregate_interval_s=30,
                  quality_checks_interval_s=120, log_format="json") as stack:
        stack.start_loader()
        stack.start_collector()
        soak = Soak(args, stack)
        result = soak.run()
        samples = result.pop("samples")
        warmup = min(10.0, args.minutes / 6)
        keys = [f"{p}_rss{kind}_mb" for p in ("collector", "loader") for kind in ("", "_anon", "_file")]
        growth = {k: _growth(samples, k, warmup) for k in keys}
        trough_growth = {k: _growth(samples, k, warmup, low=True) for k in keys}
        report = {
            "minutes": args.minutes, "day_seconds": args.day_seconds, "scale": args.scale, "bad_share": args.bad_share,
            "loadavg_end": list(os.getloadavg()),
            "answers": dict(sorted(soak.statuses.items())),
            "server_errors": soak.server_errors, "transport_errors": soak.transport_errors,
            "transport_error_samples": soak.transport_error_samples[:5],
            "reader": {"queries": soak.reader_queries, "errors": len(soak.reader_errors),
                       "first_errors": soak.reader_errors[:5]},
            "warmup_minutes": warmup, "rss_growth_after_warmup": growth,
            "rss_trough_growth_after_warmup": trough_growth,
            **result,
            "targets_met": {
                "rss_flat": all((g := growth[k]) is not None and g < 0.10 for k in ("collector_rss_mb", "loader_rss_mb")),
                "nothing_lost": result["stored_equals_acknowledged"],
                "no_5xx": soak.server_errors == 0,
            },
            "samples": samples,
        }
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
