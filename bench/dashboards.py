"""Time from opening each DNMA dashboard to its last chart rendered, in headless Chromium, on the
running stack of `make up` (demo data). Prints JSON; never a pass/fail test.

    .venv/bin/python bench/dashboards.py [--url URL] [--user admin] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    from dnma_superset import bundle
    from dnma_superset.browser import Browser
    from dnma_superset.provision import read_env

    env = read_env(REPO / "var" / "stack.env")
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=env.get("SUPERSET_URL", "http://127.0.0.1:8088"))
    p.add_argument("--user", default=env.get("SUPERSET_ADMIN_USER", "admin"))
    p.add_argument("--password", default=env.get("SUPERSET_ADMIN_PASSWORD", ""))
    p.add_argument("--runs", type=int, default=3, help="loads per dashboard (the first warms caches)")
    args = p.parse_args()
    out: dict[str, object] = {"url": args.url, "user": args.user, "runs": args.runs, "dashboards": {}}
    with Browser(args.url) as browser:
        browser.login(args.user, args.password)
        for d in bundle.DASHBOARDS:
            loads = [browser.open_dashboard(d.slug, len(d.charts())) for _ in range(args.runs)]
            times = [x.seconds for x in loads]
            out["dashboards"][d.slug] = {  # type: ignore[index]
                "charts": len(d.charts()), "first_s": times[0], "median_s": statistics.median(times),
                "errors": sum(len(x.errors) for x in loads), "rendered": loads[-1].rendered,
            }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
