"""bench/national_year.py at a toy size, so that it cannot rot: the synthetic referential, the base
rows of the sparsity model, every visit rollup tier, the week of visits, each scenario's chart
queries and the four exports, and its JSON. Figures are not asserted (a benchmark, not a timing
test): only that every stage ran and agrees with the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "national_year.py"


def test_national_year_bench_runs_at_a_toy_size(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--scale", "0.001", "--days", "5", "--runs", "1",
                          "--week", "1", "--dir", str(tmp_path / "ny")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["establishments"] == 60 and out["school_days"] == 5
    assert out["model"]["cells"] > 0 and out["model"]["visits"] > 0
    # The detail tier holds one row per base cell; every tier has rows.
    assert out["tiers"]["visits_daily"]["rows"] == out["model"]["cells"]
    for table in ("visits_territoires_daily", "visits_national_daily", "visits_services_daily",
                  "visits_services_national_daily", "visits_weekly"):
        assert out["tiers"][table]["rows"] > 0, table
    # The week's visits are the model's, one row per visit; the exports have a row per UAI of the week.
    assert out["week"]["visits"] == out["week"]["model_visits"] == out["model"]["visits"]
    exports = {k: v for k, v in out["exports"].items() if not k.startswith("total_")}
    assert len(exports) == 4 and all(v["rows"] == out["week"]["uais"] for v in exports.values()), exports
    # Every scenario timed its dashboards' charts, and the national KPI found the year's visits.
    assert set(out["dashboards"]) == {"national", "academie", "etablissement"}
    national = out["dashboards"]["national"]["dashboards"]["dnma-vue-nationale"]["charts"]
    assert national["nat_visites"]["rows"] == 1
    assert out["dashboards"]["etablissement"]["dashboards"]["dnma-etablissement"]["charts"]["eta_tendance"]["rows"] > 0


def test_national_year_bench_refuses_a_bad_scale() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--scale", "0"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "national_year: need 0 < --scale <= 10, 5 <= --days <= 200, --runs >= 1, --week >= 1"]
