"""Rewrites tests/referentiel_exports/golden/*.csv from the hand-made visits; review the diff.
Run: `.venv/bin/python tests/referentiel_exports/regen_golden.py` (one chDB in a temp dir)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import clickhouse_connect
    from refexp_data import GOLDEN_DIR, export_texts, setup_database

    with tempfile.TemporaryDirectory() as tmp:
        client = clickhouse_connect.get_client(dsn=f"chdb://{Path(tmp) / 'ch'}")
        setup_database(client, Path(tmp))
        texts = export_texts(client)
        client.close()
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, text in texts.items():
        (GOLDEN_DIR / f"{name}.csv").write_text(text, encoding="utf-8")
        print(f"{name}.csv: {text.count(chr(10)) - 1} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
