"""Compile the collector's hot modules with mypyc (`make install` runs this; optional).

The compiled extensions land next to their sources (`collector/*.so`, ignored by git) and
`collector/_native.json` records the SHA-256 of the sources they were built from. At import,
`collector/__init__.py` uses them only while every source still has that hash: after an edit the
pure-Python modules run until the next `make install`. A failed build (no C compiler, no mypyc)
leaves the pure-Python modules in use and records why in `collector/_native.json`.

Usage: .venv/bin/python collector/build_native.py [--clean]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The per-request path: parsing, the pipeline steps, pseudonymisation, the ASGI glue, compiled as
# one group (calls between them become C calls); the list and the hashes are collector/__init__.py's.
from collector import NATIVE_MODULES as MODULES  # noqa: E402
from collector import source_hashes  # noqa: E402

PACKAGE = REPO / "collector"
GROUP = "collector._native"  # shared library collector/_native__mypyc.*.so, inside the package
RECORD = PACKAGE / "_native.json"

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="dnma-native",
    ext_modules=mypycify(sys.argv[3:], group_name={group!r}, opt_level="3", target_dir=sys.argv[1] + "/c"),
    script_args=["build_ext", "--inplace", "--build-temp", sys.argv[1] + "/temp", "--build-lib", sys.argv[2]],
)
"""


def clean() -> None:
    for path in PACKAGE.glob("*.so"):
        path.unlink()
    RECORD.unlink(missing_ok=True)


def build() -> int:
    clean()
    work = Path(tempfile.mkdtemp(prefix="dnma-mypyc-"))
    try:
        setup_py = work / "setup_native.py"
        setup_py.write_text(_SETUP.format(group=GROUP), encoding="utf-8")
        sources = [f"collector/{m}.py" for m in MODULES]
        # Run from the repository (mypy finds the packages and pyproject's settings there); the
        # generated C and the objects go to `work`, only the extensions are copied in place.
        cmd = [sys.executable, str(setup_py), str(work), str(work / "lib"), *sources]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            clean()
            reason = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            RECORD.write_text(json.dumps({"compiled": False, "reason": reason}, indent=1) + "\n")
            print("build_native: mypyc build failed, the pure-Python collector will run:", *reason, sep="\n  ")
            return 0  # optional: never fails the install
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RECORD.write_text(json.dumps({"compiled": True, "sources": source_hashes()}, indent=1) + "\n")
    print(f"build_native: compiled {', '.join(MODULES)} ({len(list(PACKAGE.glob('*.so')))} extensions)")
    return 0


if __name__ == "__main__":
    if "--clean" in sys.argv:
        clean()
        raise SystemExit(0)
    raise SystemExit(build())
