"""What each shipped migration renders, as sha256 digests kept in `aggregator/migrations/DIGESTS`
(one line per migration and deployment mode, appended, never rewritten): tests fail on a change.

`dnma migrate --record-digests` appends the lines of migrations not recorded yet."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from aggregator.ddl import Renderer

DIGESTS = Path(__file__).resolve().parent / "migrations" / "DIGESTS"
HEADER = ("# sha256 of each migration's up() statements, rendered for one node and for a cluster.\n"
          "# Append-only: `dnma migrate --record-digests` adds missing lines; never edit a line.\n")
# Fixed renderers: what varies per install (database and cluster names aside) never reaches DDL.
MODES = {"single": Renderer(), "cluster": Renderer(cluster="dnma_cluster")}


class Migration(Protocol):  # aggregator.migrate.Migration, which passes them in (it imports this module)
    @property
    def number(self) -> int: ...
    @property
    def name(self) -> str: ...
    def up(self, r: Renderer) -> list[str]: ...


def key(m: Migration, mode: str) -> str:
    return f"{m.number:04d}_{m.name} {mode}"


def digest(m: Migration, r: Renderer) -> str:
    return hashlib.sha256(";\n".join(m.up(r)).encode()).hexdigest()


def current(migrations: Iterable[Migration]) -> dict[str, str]:
    """Key ('0001_hits single') -> digest of each migration as the code renders it now."""
    return {key(m, mode): digest(m, r) for m in migrations for mode, r in MODES.items()}


def recorded(path: Path = DIGESTS) -> dict[str, str]:
    """Key -> digest as recorded; a key recorded twice is an error (the file is append-only)."""
    found: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        migration, mode, sha = line.split()
        if f"{migration} {mode}" in found:
            raise ValueError(f"{path}: {migration} {mode} recorded twice")
        found[f"{migration} {mode}"] = sha
    return found


def record_missing(migrations: Iterable[Migration], path: Path = DIGESTS) -> list[str]:
    """Append the digests of migrations not recorded yet; returns their keys. Never rewrites a line:
    a changed migration stays a failing test, not a new digest."""
    known = recorded(path)
    missing = [(k, sha) for k, sha in current(migrations).items() if k not in known]
    with path.open("a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write(HEADER)
        for k, sha in missing:
            f.write(f"{k} {sha}\n")
    return [k for k, _ in missing]
