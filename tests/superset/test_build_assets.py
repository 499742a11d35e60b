"""`build_assets.py --check` (run by `make test`): the committed superset/assets are what the spec
renders, and a hand-edited YAML file is caught, named on its own line, without a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from harness import REPO

SCRIPT = REPO / "superset" / "build_assets.py"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_the_committed_assets_are_up_to_date() -> None:
    out = _check()
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_altered_yaml_file_fails_the_check_and_is_named(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(REPO / "superset" / "assets", assets)
    assert _check("--assets-dir", str(assets)).returncode == 0
    chart = assets / "charts" / "nat_visites.yaml"
    chart.write_text(chart.read_text(encoding="utf-8").replace("Visites", "Visits", 1), encoding="utf-8")
    out = _check("--assets-dir", str(assets))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [f"{chart}: differs"]
    assert "Traceback" not in out.stderr and "make superset-assets" in out.stderr
    assert (REPO / "superset" / "assets" / "charts" / "nat_visites.yaml").read_text(encoding="utf-8") != \
        chart.read_text(encoding="utf-8")  # the repo's own file untouched
