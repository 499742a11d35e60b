"""End to end on the real embedded stack: `dnma checks run` writes alerts, the loader serves them
read-only, `dnma checks list` and GET /api/quality/alerts (real uvicorn) read them back by token."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from collector.quality_routes import build_router
from dnma.settings import Settings
from tests.harness import SUPER_TOKEN, Stack, free_port
from tests.quality.conftest import TOKENS, sites

SEED = """
from datetime import timedelta
import clickhouse_connect
from aggregator.migrate import migrate
from dnma.settings import get_settings
from tests.quality.conftest import *
s = get_settings()
c = clickhouse_connect.get_client(dsn=s.resolved_dsn)
migrate(c, s)
load_referential(c)
now = paris(2024, 10, 15, 12)
bad = [hit(1, now - timedelta(hours=1, seconds=i), uai='0350000X', flags=['invalid_uai'], visitor_id=i, url=f'/{i}')
       for i in range(60)]
insert_hits(c, clean_hits(1, now - timedelta(hours=20), 200) + clean_hits(2, now - timedelta(hours=20), 200) + bad)
"""


def _cli(stack: Stack, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=stack.env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_alerts_api_by_token(tmp_path: Path) -> None:
    # The loader's own checks are off: run at the real date, they would resolve the alerts of 2024
    # between the listing and the API call.
    with Stack(tmp_path, sites=sites(), hits_ttl_months=1200, quality_checks_interval_s=0) as stack:
        subprocess.run([sys.executable, "-c", SEED], env=stack.env, check=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[2])
        out = _cli(stack, "checks", "run", "--now", "2024-10-15T12:00", "--check", "invalid_uai", "--check", "coverage")
        assert "opened" in out and "invalid_uai" in out
        stack.start_loader()
        listing = _cli(stack, "checks", "list")
        assert "invalid_uai" in listing and "open alert(s)" in listing

        settings = Settings(data_dir=stack.data_dir, sites_file=stack.data_dir / "sites.yaml", ch_http_port=stack.ch_http_port,
                            ch_http_user=stack.ch_user, ch_http_password=stack.ch_password, super_user_token=SUPER_TOKEN)
        app = FastAPI()
        app.include_router(build_router(settings))  # default client: the loader's read-only endpoint
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port}/api/quality/alerts"
            everything = httpx.get(url, params={"token_auth": SUPER_TOKEN}).json()
            assert {(a["check"], a["scope_value"]) for a in everything["alerts"]} >= {("invalid_uai", "1")}
            mine = httpx.get(url, headers={"Authorization": f"Bearer {TOKENS[1]}"}).json()
            assert mine["count"] >= 1 and {a["scope_value"] for a in mine["alerts"]} == {"1"}
            invalid = [a for a in mine["alerts"] if a["check"] == "invalid_uai"][0]
            assert invalid["observed"] == round(60 / 260, 6) and invalid["details"]["faulty"] == 60
            theirs = httpx.get(url, params={"token_auth": TOKENS[2]}).json()
            assert all(a["scope_value"] == "2" for a in theirs["alerts"])
            assert httpx.get(url, params={"token_auth": "nope"}).status_code == 401
            assert httpx.get(url).status_code == 401
        finally:
            server.should_exit = True
            thread.join(timeout=10)
