"""In-process micro-benchmark of the collector's hot path (prints JSON).

No sockets, no uvicorn: the ASGI app is called directly with a scope shaped like uvicorn's
(httptools), so the figures are the cost of *our* code. Times are CPU time of the event-loop
thread (the machine is shared: wall-clock time would count the neighbours), best of --repeat.

- single_get_us: one GET /matomo.php hit (as bench/collector_bench.py sends it), null spool.
- bulk_item_us: one item of a 1,000-item bulk POST (bench/collector_bench.py's body), null spool;
  bulk_mixed_item_us: the same with varied UAs, sites, events, uids, object items, invalid items.
- harness_hello_asgi_us: bench/hello_asgi.py called the same way (this harness's own cost).
- single_get_real_spool: 256 concurrent clients into a real SpoolWriter (group commit, fsync).
- bulk_real_spool: 32 concurrent bulk requests into a real SpoolWriter: items/s, the longest
  event-loop turn (a ticker task measures the gaps: 32 requests' chunks can share one turn) and
  the resident memory before / at peak.

Usage: .venv/bin/python bench/collector_micro.py [--seconds 2] [--repeat 3] [--profile single|bulk]
       [--src DIR]   # DIR/collector instead of this checkout's (e.g. a copy of the code before a change)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
if "--src" in sys.argv:  # another copy of the `collector` package (e.g. the code before a change)
    sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1])

for _k in [k for k in os.environ if k.startswith("DNMA_")]:
    del os.environ[_k]

from dnma.settings import Settings  # noqa: E402
from dnma.sites import dump_sites  # noqa: E402
from tests.harness import DEMO_SITE_ID, SUPER_TOKEN, demo_sites  # noqa: E402

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
HIT_QUERY = (
    f"idsite={DEMO_SITE_ID}&rec=1&apiv=1&url=https%3A%2F%2Fent.demo.example%2Fnotes"
    "&action_name=Notes&_id=0123456789abcdef&dimension1=0350122T&dimension2=NOTES&dimension3=NATIF"
    "&dimension5=ELEVE&send_image=0"
).encode()
BROWSER_HEADERS = [
    (b"host", b"stats.example.org"),
    (b"user-agent", UA.encode()),
    (b"accept", b"image/avif,image/webp,*/*"),
    (b"accept-language", b"fr-FR,fr;q=0.9,en;q=0.8"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"referer", b"https://ent.demo.example/notes"),
    (b"connection", b"keep-alive"),
    (b"sec-fetch-dest", b"image"),
]
UAS = [
    UA,
    "Mozilla/5.0 (Linux; Android 10; SM-G975F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
]


def bench_bulk_body(items: int) -> bytes:
    return json.dumps(
        {
            "requests": [
                f"?idsite={DEMO_SITE_ID}&rec=1&url=https%3A%2F%2Fent.demo.example%2Fp{i}"
                f"&_id=00000000000{i:05x}&dimension1=0350122T&dimension2=NOTES&dimension5=ELEVE"
                for i in range(items)
            ],
            "token_auth": SUPER_TOKEN,
        }
    ).encode()


def mixed_bulk_body(items: int) -> bytes:
    reqs: list[Any] = []
    for i in range(items):
        ua = UAS[i % len(UAS)]
        q = (
            f"?idsite={1 + i % 2}&rec=1&url=https%3A%2F%2Fent.demo.example%2Fp{i}%3Fmtm_campaign%3Drentree"
            f"&action_name=Page%20{i}&ua={ua.replace(' ', '%20')}&uid=user{i % 50}"
            f"&dimension1=035012{i % 10}T&dimension2=notes&dimension3=natif&dimension5=eleve&dimension9=x{i}"
        )
        if i % 7 == 0:
            q += "&e_c=Cat&e_a=Act&e_n=Name&e_v=3.5"
        if i % 11 == 0:
            q += "&search=devoirs&search_cat=ent&search_count=4"
        if i % 97 == 0:
            q = "?rec=1&url=x"  # invalid: no idsite
        reqs.append(
            q
            if i % 5
            else {"idsite": 1, "rec": 1, "url": f"https://ent.demo.example/d{i}", "cdt": time.time() - 60}
        )
    return json.dumps({"requests": reqs, "token_auth": SUPER_TOKEN}).encode()


class NullSpool:
    async def append(self, records: list[bytes], other_kind: list[bytes] | None = None) -> None:
        return None  # other_kind: the quarantine records of refused requests (dnma/quarantine.py)


def scope_for(method: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("203.0.113.7", 51234),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": "/matomo.php",
        "raw_path": b"/matomo.php",
        "query_string": query,
        "headers": headers,
        "state": {},
    }


class Sink:
    __slots__ = ("status", "body")

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


def receiver(body: bytes):  # noqa: ANN201
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def one(app: Any, scope: dict[str, Any], body: bytes) -> Sink:
    sink = Sink()
    await app(dict(scope), receiver(body), sink)
    return sink


async def per_call_us(app: Any, scope: dict[str, Any], body: bytes, seconds: float, expect: int) -> float:
    sink = await one(app, scope, body)
    assert sink.status == expect, (sink.status, sink.body[:300])
    # CPU time of this thread: the machine is shared, wall-clock time would count the neighbours.
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    deadline = t0 + seconds
    while True:
        for _ in range(20):
            await app(dict(scope), receiver(body), Sink())
        n += 20
        if time.perf_counter() >= deadline:
            return (time.thread_time() - c0) / n * 1e6


async def real_spool_bulk(
    app: Any, scope: dict[str, Any], body: bytes, items: int, tmp: Path, seconds: float, concurrency: int = 32
) -> dict[str, Any]:
    from dnma.spool import SpoolWriter

    s = app.settings
    spool = SpoolWriter(
        tmp / "spool",
        max_bytes=s.spool_max_bytes,
        segment_bytes=s.spool_segment_bytes,
        commit_interval_ms=s.spool_commit_interval_ms,
    )
    await spool.start()
    app.spool = spool
    max_gap = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal max_gap
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            max_gap = max(max_gap, now - last)
            last = now

    done = 0
    deadline = time.perf_counter() + seconds
    rss0 = rss_mb()

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            sink = await one(app, scope, body)
            assert sink.status == 200, sink.status
            done += 1

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    stop = True
    await tick
    await spool.close()
    app.spool = NullSpool()
    return {
        "concurrency": concurrency,
        "items_per_s": round(done * items / elapsed),
        "max_loop_block_ms": round(max_gap * 1000, 2),
        "rss_mb_before": rss0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def real_spool_single(
    app: Any, scope: dict[str, Any], tmp: Path, seconds: float, concurrency: int = 256
) -> dict[str, Any]:
    """256 concurrent clients sending single GETs into a real SpoolWriter (group commit)."""
    from dnma.spool import SpoolWriter

    s = app.settings
    spool = SpoolWriter(
        tmp / "spool-single",
        max_bytes=s.spool_max_bytes,
        segment_bytes=s.spool_segment_bytes,
        commit_interval_ms=s.spool_commit_interval_ms,
    )
    await spool.start()
    app.spool = spool
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            sink = await one(app, scope, b"")
            assert sink.status == 204, sink.status
            done += 1

    t0, c0 = time.perf_counter(), time.thread_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    await spool.close()
    app.spool = NullSpool()
    return {
        "concurrency": concurrency,
        "hits_per_s": round(done / elapsed),
        "loop_thread_cpu_us_per_hit": round(cpu / done * 1e6, 2),
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from collector.app import Collector

    tmp = Path(tempfile.mkdtemp(prefix="dnma-micro-"))
    dump_sites(demo_sites(), tmp / "sites.yaml")
    settings = Settings(
        data_dir=tmp, sites_file=tmp / "sites.yaml", super_user_token=SUPER_TOKEN, uid_secret="bench-secret"
    )
    app = Collector(settings)
    app.ua.warm()
    app.spool = NullSpool()
    get_scope = scope_for("GET", HIT_QUERY, BROWSER_HEADERS)
    post_headers = [
        *BROWSER_HEADERS[:2],
        (b"content-type", b"application/json"),
        (b"origin", b"https://ent.demo.example"),
    ]
    post_scope = scope_for("POST", b"", post_headers)
    bulk = bench_bulk_body(args.items)
    mixed = mixed_bulk_body(args.items)
    for ua in UAS:
        app.ua.classify(ua)

    if args.profile:
        import cProfile
        import pstats

        scope, body = (get_scope, b"") if args.profile == "single" else (post_scope, bulk)
        prof = cProfile.Profile()
        prof.enable()
        await per_call_us(app, scope, body, args.seconds, 204 if args.profile == "single" else 200)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return {}

    gc.collect()
    import collector

    out: dict[str, Any] = {
        "collector": str(Path(collector.__file__).parent),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "unit": "CPU µs of this thread per request (single) or per bulk item",
    }
    results = {}
    for name, scope, body, expect, per in (
        ("single_get_us", get_scope, b"", 204, 1),
        ("bulk_item_us", post_scope, bulk, 200, args.items),
        ("bulk_mixed_item_us", post_scope, mixed, 200, args.items),
    ):
        runs = []
        for _ in range(args.repeat):
            runs.append(await per_call_us(app, scope, body, args.seconds, expect) / per)
        results[name] = round(min(runs), 2)
    out.update(results)
    from bench.hello_asgi import app as hello

    runs = [await per_call_us(hello, get_scope, b"", args.seconds, 200) for _ in range(args.repeat)]
    out["harness_hello_asgi_us"] = round(min(runs), 2)  # this harness's own cost per request
    out["single_get_real_spool"] = await real_spool_single(app, get_scope, tmp, args.seconds)
    out["bulk_real_spool"] = await real_spool_bulk(app, post_scope, bulk, args.items, tmp, args.seconds)
    out["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--profile", choices=["single", "bulk"], default=None)
    ap.add_argument("--src", default=None, help="directory holding the collector package to measure")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(main_async(args))
    if out:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
