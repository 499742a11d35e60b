"""`dnma up` on a running stack restarts what runs older code, and only that: each process it
starts records the digest of the code it runs (var/run/<name>.code); a process whose digest is
not the current one (an update was pulled, or a release that recorded none started it) is
stopped and started again, the loader first, whose start applies new migrations. Hits sent
before, between and after are all stored, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import clockpin
import httpx
from harness import free_port

from cli.stack import code_digest, running_pid


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)


def test_up_restarts_only_the_processes_whose_code_changed(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env.update(DNMA_DATA_DIR=str(data_dir), DNMA_COLLECTOR_PORT=str(free_port()),
               DNMA_CH_HTTP_PORT=str(free_port()), DNMA_LOG_FORMAT="text")
    if clockpin.OFFSET:
        env["DNMA_NOW"] = clockpin.OFFSET

    def dnma(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    sent: list[str] = []

    def send(label: str, n: int = 20) -> None:
        url = _env_file(data_dir / "stack.env")["COLLECTOR_URL"]
        for i in range(n):
            page = f"https://ent-bretagne.example/{label}/{i}"
            r = httpx.get(f"{url}/matomo.php", params={"idsite": "1", "rec": "1", "url": page, "send_image": "0"}, timeout=10)
            assert r.status_code == 204, r.text
            sent.append(page)

    def stored() -> list[str]:
        stack = _env_file(data_dir / "stack.env")
        r = httpx.post(stack["CLICKHOUSE_HTTP_URL"], auth=(stack["CLICKHOUSE_USER"], stack["CLICKHOUSE_PASSWORD"]),
                       content="SELECT url FROM dnma.hits WHERE url LIKE 'https://ent-bretagne.example/%' FORMAT TSV",
                       timeout=30)
        assert r.status_code == 200, r.text
        return sorted(r.text.split())

    try:
        dnma("up", "--no-superset", "--no-demo")
        pids = {name: running_pid(data_dir, name) for name in ("loader", "collector")}
        assert (data_dir / "run" / "loader.code").read_text() == code_digest()
        send("first")

        # Nothing changed: nothing restarts.
        out = dnma("up", "--no-superset", "--no-demo")
        assert "restarting" not in out
        assert {name: running_pid(data_dir, name) for name in pids} == pids

        # The loader runs code older than the repository's: it alone restarts.
        (data_dir / "run" / "loader.code").write_text("digest of an older release")
        send("second")
        out = dnma("up", "--no-superset", "--no-demo")
        assert "restarting loader" in out and "restarting collector" not in out, out
        assert running_pid(data_dir, "loader") not in (None, pids["loader"])
        assert running_pid(data_dir, "collector") == pids["collector"]
        assert (data_dir / "run" / "loader.code").read_text() == code_digest()
        send("third")
        deadline = time.monotonic() + 60
        while len(stored()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert stored() == sorted(sent)
    finally:
        dnma("down")
