"""Runs every benchmark of bench/ one after the other and prints one JSON document.

Each benchmark is its own script printing JSON; options after `--` go to all of them, e.g.
`python bench/run_all.py --only collector_bench model -- --hits 10000000`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, extra arguments) in the order they run; the heavy data-set ones last.
BENCHES: dict[str, list[str]] = {
    "collector_bench": [],
    "sessionizer": [],
    "sessionizer_live": [],
    "checks": [],
    "model": [],
    "dashboards": [],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None, help="benchmarks to run (default: all present)")
    args, passthrough = ap.parse_known_args()
    passthrough = [a for a in passthrough if a != "--"]
    out: dict[str, object] = {}
    for name, extra in BENCHES.items():
        script = HERE / f"{name}.py"
        if (args.only and name not in args.only) or not script.exists():
            continue
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, str(script), *extra, *passthrough], capture_output=True, text=True)
        try:
            out[name] = json.loads(res.stdout[res.stdout.index("{"):])
        except ValueError:
            out[name] = {"error": f"exit {res.returncode}", "stderr": res.stderr[-2000:]}
        print(f"{name}: {time.monotonic() - t0:.0f}s", file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
