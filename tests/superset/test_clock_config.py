"""Superset's side of DNMA's clock without a Superset server: superset_config.py, loaded by
Superset's own interpreter, gives the datasets' Jinja (`{{ dnma_today() }}`) the Paris day of the
injected instant (DNMA_NOW), not the host's. The full suite also checks, on a running Superset,
that the rendered SQL carries it (test_provision.py)."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import clockpin
from dnma_superset import server

from dnma import clock

FALLBACK = clockpin.DATES["new-year-eve"]  # 23:30 in Paris: the host's UTC day would be a day early


def test_datasets_today_is_dnma_clock_day(tmp_path: Path) -> None:
    offset = clockpin.OFFSET or clock.as_offset(FALLBACK)
    env = server.environment(tmp_path / "home", "test-secret-key-not-used")
    env["DNMA_NOW"] = offset
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('superset_config', {str(server.CONFIG)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.JINJA_CONTEXT_ADDONS['dnma_today']())\n"
    )
    out = subprocess.run([str(server.BIN / "python"), "-c", script], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = datetime.fromtimestamp(time.time() + float(offset), clock.PARIS).date().isoformat()
    assert out.stdout.strip().splitlines()[-1] == expected


def test_active_weeks_reach_the_datasets_from_the_settings(tmp_path: Path) -> None:
    """`{{ dnma_active_weeks() }}` in the coverage datasets is settings.active_school_weeks, as `dnma up`
    passes it (DNMA_ACTIVE_SCHOOL_WEEKS), else dnma/indicators.py's default."""
    from dnma.indicators import ACTIVE_SCHOOL_WEEKS

    script = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('superset_config', {str(server.CONFIG)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.JINJA_CONTEXT_ADDONS['dnma_active_weeks']())\n"
    )
    for value, expected in (("7", 7), ("", ACTIVE_SCHOOL_WEEKS)):
        env = server.environment(tmp_path / "home", "test-secret-key-not-used")
        env.pop("DNMA_ACTIVE_SCHOOL_WEEKS", None)
        if value:
            env["DNMA_ACTIVE_SCHOOL_WEEKS"] = value
        out = subprocess.run([str(server.BIN / "python"), "-c", script], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == str(expected)
