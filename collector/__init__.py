"""The collector: the Matomo-compatible HTTP surface, the per-hit pipeline and the spool writer.

`make install` compiles the per-request modules with mypyc (collector/build_native.py). The compiled group
is used only while it matches its sources exactly; otherwise (edited since, or never built) the
pure-Python modules run, with the same behaviour.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

NATIVE_MODULES = ("protocol", "hit", "context", "steps", "pipeline", "privacy", "body", "app")  # compiled by collector/build_native.py
_HERE = Path(__file__).resolve().parent


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their .py even though a compiled extension sits beside it."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname not in self.names:
            return None
        source = _HERE / f"{fullname.rsplit('.', 1)[1]}.py"
        return importlib.util.spec_from_file_location(
            fullname, source, loader=importlib.machinery.SourceFileLoader(fullname, str(source))
        )


def source_hashes() -> dict[str, str]:
    """SHA-256 of each compiled module's source: what collector/build_native.py records."""
    return {m: hashlib.sha256((_HERE / f"{m}.py").read_bytes()).hexdigest() for m in NATIVE_MODULES}


def _native_is_current() -> bool:
    try:
        record = json.loads((_HERE / "_native.json").read_text(encoding="utf-8"))
        built = record["sources"] if record.get("compiled") else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        built = {}
    # All or nothing: compiled modules of one group call each other directly, in C.
    return bool(built) and built == source_hashes()


NATIVE = _native_is_current()
if not NATIVE and any(_HERE.glob("*.so")):
    sys.meta_path.insert(0, _SourceFinder(frozenset(f"{__name__}.{m}" for m in NATIVE_MODULES)))
