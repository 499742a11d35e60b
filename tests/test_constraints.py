"""Every installed distribution is in its environment's committed constraints, at the same
version, and nothing stale is left there: a drift (a package upgraded or added by hand, a
constraints file not regenerated) is seen here. `make lock` regenerates both files, `make install`
and `make superset-install` install with them."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What `pip freeze` leaves out: the installers themselves, and the project (editable).
NOT_LOCKED = {"pip", "setuptools", "wheel", "distribute", "dnma"}
LIST_DISTRIBUTIONS = (
    "import json, importlib.metadata as m; "
    "print(json.dumps([(d.metadata['Name'], d.version) for d in m.distributions()]))"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, ver = line.partition("==")
            assert sep and ver, f"{path.name}: {line!r} is not name==version"
            found[canonical(name)] = ver.strip()
    return found


def drift(installed: list[tuple[str, str]], locked: dict[str, str]) -> list[str]:
    have = {canonical(n): v for n, v in installed if canonical(n) not in NOT_LOCKED}
    problems = [f"{n} {v} installed, {locked[n] if n in locked else 'absent'} in the constraints"
                for n, v in sorted(have.items()) if locked.get(n) != v]
    problems += [f"{n} {v} in the constraints, not installed" for n, v in sorted(locked.items()) if n not in have]
    return problems


def test_project_venv_matches_constraints() -> None:
    installed = [(d.metadata["Name"], d.version) for d in distributions()]
    problems = drift(installed, pinned(REPO / "constraints.txt"))
    assert not problems, "the venv and constraints.txt differ (make install, or make lock): " + "; ".join(problems)


def test_superset_venv_matches_constraints() -> None:
    python = REPO / "superset" / ".venv" / "bin" / "python"
    if not (REPO / "superset" / ".venv" / ".installed").exists():
        pytest.skip("superset/.venv not installed (make superset-install)")
    out = subprocess.run([str(python), "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True, check=True)
    installed = [(n, v) for n, v in json.loads(out.stdout)]
    problems = drift(installed, pinned(REPO / "superset" / "constraints.txt"))
    assert not problems, "superset/.venv and superset/constraints.txt differ: " + "; ".join(problems)


def test_superset_requirements_are_locked() -> None:
    locked = pinned(REPO / "superset" / "constraints.txt")
    for line in (REPO / "superset" / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = canonical(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0])
            assert name in locked, f"superset/requirements.txt: {name} is not in superset/constraints.txt"
            if "==" in line:
                assert locked[name] == line.split("==", 1)[1].strip(), line

