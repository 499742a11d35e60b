"""bench/national_day.py at a toy size, so that it cannot rot: the preload inside ClickHouse, the
loader's first pass over it, wrk replaying the simulator's requests through its Lua script, the
markers, and its JSON. Figures are not asserted (a benchmark, not a timing test): only that every
stage ran and that nothing acknowledged was lost.

The toy run starts a whole stack (36 s on a loaded 2-core host): over `make test`'s budget for it,
so it runs with `make test-bench-smoke` (DNMA_BENCH_SMOKE=1); the argument check runs always and
imports the script, so a broken import fails `make test` too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.environ.get("DNMA_BENCH_SMOKE") != "1", reason="make test-bench-smoke runs it")
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by make system-deps")
def test_national_day_bench_runs_at_a_toy_size() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "national_day.py"), "--hits", "2000", "--rate", "200",
         "--minutes", "0.05", "--scale", "0.02", "--aggregate-interval", "1", "--sample-every", "0.5",
         "--marker-every", "0.5", "--connections", "4"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["preload"]["hits"] == 2000
    assert out["requests_file"]["requests"] > 0
    assert out["first_pass_whole_day_s"] >= 0
    assert out["wrk"]["requests"] > 0 and out["wrk"]["non_2xx"] == 0
    assert out["acknowledged_hits"] >= out["wrk"]["requests"] - out["wrk"]["non_2xx"]
    assert out["stored_equals_acknowledged"], out
    assert set(out["targets_met"]) >= {"visits_p95_le_60s", "hits_daily_p95_le_10s", "ack_p99_le_20ms"}


def test_national_day_bench_refuses_a_bad_time_of_day() -> None:
    run = subprocess.run([sys.executable, str(REPO / "bench" / "national_day.py"), "--at", "ten"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["national_day: --at 'ten': expected HH:MM"]
