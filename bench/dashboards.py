"""Time from opening each DNMA dashboard to its last chart rendered, in headless Chromium. Prints
JSON (with the load average before and after: the figures are only comparable at similar loads);
never a pass/fail test.

On the running stack of `make up` (demo data):

    .venv/bin/python bench/dashboards.py [--url URL] [--user admin] [--runs 3]

On another data set, e.g. the chDB directory written by `bench/model.py --dir DIR` (50 million hits
by default; `--hits 2000000` for a quick one): `--data-dir DIR` starts a stack of its own over it
(the read-only ClickHouse endpoint alone, as the loader serves it but without its migrations,
inserts, sessionizer or checks, so the data set is not modified and nothing competes for the CPU;
and a fresh Superset provisioned by `dnma superset provision`, cache warm-up included as after
`make up`; `--no-warm` to time fully cold first loads) on free ports, so the `make up` stack may
keep running; it is all stopped afterwards. DIR is the model's directory (its chDB is DIR/ch) or a
chDB directory itself; nothing else may have it open meanwhile (wait until bench/model.py has
finished). Superset's state goes to a temporary directory, or to
`--stack-dir` (kept: a second run skips the metadata initialisation).

    .venv/bin/python bench/model.py --hits 50000000 --dir /tmp/dnma-model50
    .venv/bin/python bench/dashboards.py --data-dir /tmp/dnma-model50 [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chdb_dir(data_dir: Path) -> Path:
    """The model's directory holds its chDB in ch/; otherwise DIR is the chDB directory."""
    if (data_dir / "ch").is_dir():
        return data_dir / "ch"
    if (data_dir / "metadata").is_dir() or (data_dir / "data").is_dir():
        return data_dir
    raise SystemExit(f"{data_dir}: neither a bench/model.py directory (ch/) nor a chDB directory")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# The loader's read-only endpoint (aggregator/endpoint.py) in a process of its own, until SIGTERM.
ENDPOINT = """
import signal, sys, threading
from aggregator.endpoint import start_endpoint
from dnma.settings import Settings
handle = start_endpoint(Settings(), sys.argv[1])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
handle.stop()
"""


@contextlib.contextmanager
def data_set_stack(data_dir: Path, stack_dir: Path | None, warm: bool = True) -> Iterator[dict[str, str]]:
    """The read-only endpoint over `data_dir`'s chDB and a provisioned Superset, on free ports;
    yields url, user and password of Superset's admin."""
    from dnma_superset import server

    chdb = _chdb_dir(data_dir.resolve())
    tmp = None if stack_dir else tempfile.TemporaryDirectory(prefix="dnma-bench-stack-")
    root = (stack_dir or Path(tmp.name)).resolve()  # type: ignore[union-attr]
    root.mkdir(parents=True, exist_ok=True)
    (root / "log").mkdir(exist_ok=True)
    state = root / "bench-secrets.json"
    keys = json.loads(state.read_text()) if state.exists() else {
        "reader": secrets.token_urlsafe(16), "admin": secrets.token_urlsafe(12), "secret": secrets.token_urlsafe(32)}
    state.write_text(json.dumps(keys))
    ch_port, superset_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env.update({
        "DNMA_DATA_DIR": str(root), "DNMA_CONFIG": str(root / "none.toml"),
        "DNMA_CLICKHOUSE_DSN": f"chdb://{chdb}", "DNMA_HITS_TTL_MONTHS": "1200",  # as bench/model.py
        "DNMA_CH_HTTP_PORT": str(ch_port), "DNMA_CH_HTTP_PASSWORD": keys["reader"],
        "DNMA_UID_SECRET": keys["secret"], "DNMA_LOG_FORMAT": "text",
    })
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (root / "log" / "endpoint.log").open("ab") as out:
            procs.append(subprocess.Popen([sys.executable, "-c", ENDPOINT, str(chdb)], env=env, cwd=REPO,
                                          stdout=out, stderr=out, start_new_session=True))
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{ch_port}/ping", timeout=2).status_code == 200:
                    break
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"endpoint not ready; see {root / 'log' / 'endpoint.log'}")
            time.sleep(0.5)
        if not server.installed():
            server.install()
        home, log = root / "superset", root / "log" / "superset.log"
        senv = server.environment(home, keys["secret"])
        server.init_metadata(home, senv, "admin", keys["admin"], log)
        procs.append(server.start(home, senv, superset_port, log))
        url = f"http://127.0.0.1:{superset_port}"
        server.wait_ready(url, procs[-1], timeout=300)
        subprocess.run([sys.executable, "-m", "cli", "superset", "provision", "--url", url,
                        f"--admin-password={keys['admin']}", "--env-file", str(root / "stack.env"), *([] if warm else ["--no-warm"])],
                       env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=900)
        yield {"url": url, "user": "admin", "password": keys["admin"]}
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if tmp is not None:
            tmp.cleanup()


def measure(url: str, user: str, password: str, runs: int) -> dict[str, object]:
    from dnma_superset.browser import Browser
    from dnma_superset.dashboards import DASHBOARDS

    out: dict[str, object] = {}
    with Browser(url) as browser:
        browser.login(user, password)
        for d in DASHBOARDS:
            loads = [browser.open_dashboard(d.slug, len(d.charts())) for _ in range(runs)]
            times = [x.seconds for x in loads]
            out[d.slug] = {
                "charts": len(d.charts()), "first_s": times[0], "median_s": statistics.median(times),
                "errors": sum(len(x.errors) for x in loads), "rendered": loads[-1].rendered,
            }
    return out


def main() -> int:
    from dnma_superset.provision import read_env

    env = read_env(REPO / "var" / "stack.env")
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=env.get("SUPERSET_URL", "http://127.0.0.1:8088"))
    p.add_argument("--user", default=env.get("SUPERSET_ADMIN_USER", "admin"))
    p.add_argument("--password", default=env.get("SUPERSET_ADMIN_PASSWORD", ""))
    p.add_argument("--runs", type=int, default=3, help="loads per dashboard (the first warms caches)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="bench a stack of its own over this chDB data set (bench/model.py --dir DIR)")
    p.add_argument("--stack-dir", type=Path, default=None, help="with --data-dir: keep Superset's state here")
    p.add_argument("--no-warm", action="store_true",
                   help="with --data-dir: provision without the cache warm-up `make up` does (first loads fully cold)")
    args = p.parse_args()
    out: dict[str, object] = {"runs": args.runs, "loadavg_start": os.getloadavg()}
    if args.data_dir:
        out["data_dir"] = str(args.data_dir)
        out["warmed"] = not args.no_warm
        with data_set_stack(args.data_dir, args.stack_dir, warm=not args.no_warm) as stack:
            out.update(url=stack["url"], user=stack["user"], stack_ready_loadavg=os.getloadavg())
            out["dashboards"] = measure(stack["url"], stack["user"], stack["password"], args.runs)
    else:
        out.update(url=args.url, user=args.user)
        out["dashboards"] = measure(args.url, args.user, args.password, args.runs)
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
