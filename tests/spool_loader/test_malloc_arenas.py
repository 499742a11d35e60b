"""The loader caps glibc's malloc arenas before chDB starts its threads (settings.loader_malloc_arenas):
the soak's flat RSS depends on it (bench/soak.py)."""

from __future__ import annotations

import subprocess
import sys

from aggregator.loader import limit_malloc_arenas


def test_cap_is_applied_on_glibc_and_zero_keeps_the_default() -> None:
    # In a fresh interpreter: the cap is process-wide and this one's arenas are already made.
    code = "from aggregator.loader import limit_malloc_arenas as f; print(f(2), f(0))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
    assert limit_malloc_arenas(0) is False
