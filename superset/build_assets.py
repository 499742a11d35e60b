"""Regenerate superset/assets/ from the spec in dnma_superset/bundle.py (`make superset-assets`);
`--check` exits 1 when the committed YAML is stale."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dnma_superset.bundle import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
