"""Makes tests/harness.py importable as `harness` from every test folder, and sets the session's
clock (tests/clockpin.py: DNMA_TEST_NOW) before any test module reads it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clockpin  # noqa: E402

clockpin.install()


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
