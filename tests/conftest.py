"""Makes tests/harness.py importable as `harness` from every test folder, and sets the session's
clock (tests/clockpin.py: DNMA_TEST_NOW) before any test module reads it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clockpin  # noqa: E402
from hypothesis import settings  # noqa: E402

clockpin.install()

# Property tests draw the same examples on every run (`make test` passes or fails on the code, never
# on the draw); DNMA_HYPOTHESIS_EXPLORE=1 draws new ones, and keeps what it finds in .hypothesis/.
settings.register_profile("dnma", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("DNMA_HYPOTHESIS_EXPLORE") == "1" else "dnma")


def pytest_report_header(config: object) -> list[str]:
    return [clockpin.describe()]



@pytest.hookimpl(specname="pytest_report_header")  # its own hook function: others may add theirs
def pytest_report_header_collector_build() -> str:
    """Which collector the tests run: mypyc-compiled or pure Python (collector/__init__.py picks,
    and the collector subprocesses pick alike from the same files)."""
    import collector.pipeline

    built = Path(collector.pipeline.__file__ or "")
    if built.suffix == ".so":
        return f"collector build: mypyc-compiled ({built.name})"
    stale = any(built.parent.glob("*.so"))
    return f"collector build: pure Python ({'sources edited since the build' if stale else 'not compiled'})"
