"""Fixtures of the collector tests: one real collector (uvicorn subprocess, real spool) per
session, and helpers to read back what it spooled."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ct_support import Collector, start  # noqa: E402


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    stack = start(tmp_path_factory.mktemp("collector"))
    try:
        yield Collector(stack)
    finally:
        stack.stop_all()


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex[:12]
