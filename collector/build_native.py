"""Compile the collector's hot modules with mypyc (`make install` runs this; optional).

The compiled extensions land next to their sources (`collector/*.so`, ignored by git) and
`collector/_native.json` records the SHA-256 of the sources they were built from. At import,
`collector/__init__.py` uses them only while every source still has that hash: after an edit the
pure-Python modules run until the next `make install`. A failed build (no C compiler, no mypyc)
leaves the pure-Python modules in use and records why in `collector/_native.json`.

The runner's step dispatch (`pipeline._step`, an if-chain: a direct C call per step once
compiled) is generated here from `steps.STEPS`, the one list of the steps, before compiling;
`--check` says whether the committed one is current (tests/collector/test_pipeline_steps.py).

Usage: .venv/bin/python collector/build_native.py [--clean | --check]
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


PIPELINE = PACKAGE / "pipeline.py"
BEGIN, END = "# BEGIN dispatch", "# END dispatch"


def dispatch_block(step_names: list[str]) -> str:
    """`pipeline._step` for these steps, in their order, between its markers."""
    lines = [f"{BEGIN}, generated from steps.STEPS by collector/build_native.py: do not edit",
             "def _step(i: int, hit: Hit, ctx: PipelineContext) -> DropReason | None:",
             '    """Step `i` of STEPS, called directly: compiled, a direct C call instead of a Python-level',
             '    call of the function object (argument boxing and parsing on each of ~10 calls a hit)."""']
    for i, name in enumerate(step_names[:-1]):
        lines += [f"    if i == {i}:", f"        return steps.{name}(hit, ctx)"]
    lines += [f"    return steps.{step_names[-1]}(hit, ctx)", END]
    return "\n".join(lines) + "\n"


def committed_dispatch() -> str:
    text = PIPELINE.read_text(encoding="utf-8")
    start = text.index(BEGIN)
    end = text.index(END, start) + len(END) + 1
    return text[start:end]


def step_names() -> list[str]:
    """The step functions' names in STEPS order (the functions' own names, not their labels)."""
    from collector.steps import STEPS

    return [fn.__name__ for _, fn in STEPS]


def refresh_dispatch() -> bool:
    """Rewrite pipeline._step from STEPS; True when it changed."""
    current, wanted = committed_dispatch(), dispatch_block(step_names())
    if current == wanted:
        return False
    PIPELINE.write_text(PIPELINE.read_text(encoding="utf-8").replace(current, wanted), encoding="utf-8")
    return True


def clean() -> None:
    for path in PACKAGE.glob("*.so"):
        path.unlink()
    RECORD.unlink(missing_ok=True)


def build() -> int:
    if refresh_dispatch():
        print("build_native: pipeline._step regenerated from steps.STEPS")
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
    if "--check" in sys.argv:
        if committed_dispatch() != dispatch_block(step_names()):
            print("collector/pipeline.py: _step does not follow steps.STEPS; run collector/build_native.py")
            raise SystemExit(1)
        raise SystemExit(0)
    raise SystemExit(build())
