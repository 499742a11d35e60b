"""Regenerate superset/assets/ from the bundle's spec in dnma_superset/ (`make superset-assets`);
`--check` (run by `make test`) writes nothing and exits 1 listing each file that is stale."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dnma_superset.assets_yaml import ASSETS, differences, write  # noqa: E402


def _shown(path: Path) -> str:
    """`path` relative to the working directory when under it (superset/assets/..., as in git status)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true",
                   help="compare the YAML the spec renders with the assets directory; exit 1 if any file differs")
    p.add_argument("--assets-dir", type=Path, default=ASSETS, help="the assets directory (default: %(default)s)")
    args = p.parse_args(argv)
    if args.check:
        stale = differences(args.assets_dir)
        for rel, how in stale:
            print(f"{_shown(args.assets_dir / rel)}: {how}")
        if stale:
            print(f"{len(stale)} file(s) stale: run `make superset-assets` and review the diff", file=sys.stderr)
            return 1
        print(f"{_shown(args.assets_dir)} is up to date")
        return 0
    for rel in write(args.assets_dir):
        print("wrote", rel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
