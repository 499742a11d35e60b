"""`dnma up` loads the referential from `referentiel_dir` (DNMA_REFERENTIEL_DIR), not from a path of
its own: given a directory holding fifty rows of one annuaire, that is all it loads."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect
from harness import REPO, free_port


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)


def test_up_loads_the_referential_of_referentiel_dir(tmp_path: Path) -> None:
    name = "annuaire-education-35-2023.csv"
    ref = tmp_path / "referentiel"
    ref.mkdir()
    with (REPO / "deploy" / "referentiel" / name).open(encoding="utf-8-sig", newline="") as src, \
            (ref / name).open("w", encoding="utf-8", newline="") as dst:
        lines = [next(src) for _ in range(51)]  # the header and fifty establishments
        dst.writelines(lines)
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    uai_column = next(c for c in next(csv.reader(lines[:1], delimiter=delimiter)) if "uai" in c.lower()
                      or "identifiant" in c.lower())
    uais = {row[uai_column] for row in csv.DictReader(lines, delimiter=delimiter)}

    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env.update(DNMA_DATA_DIR=str(data_dir), DNMA_COLLECTOR_PORT=str(free_port()),
               DNMA_CH_HTTP_PORT=str(free_port()), DNMA_LOG_FORMAT="text", DNMA_REFERENTIEL_DIR=str(ref))

    def dnma(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "cli", *args], env=env, check=True, timeout=300)

    try:
        dnma("up", "--no-superset", "--no-demo")
        stack = _env_file(data_dir / "stack.env")
        url = urlsplit(stack["CLICKHOUSE_HTTP_URL"])
        client = clickhouse_connect.get_client(host=url.hostname, port=url.port, username=stack["CLICKHOUSE_USER"],
                                               password=stack["CLICKHOUSE_PASSWORD"], database="dnma")
        loaded = {r[0] for r in client.query("SELECT uai FROM dnma.etablissements").result_rows}
    finally:
        dnma("down")
    assert loaded and loaded <= uais, (len(loaded), sorted(loaded - uais)[:5])
