"""`dnma tag-check URL` when the browser cannot run: a one-line error naming the cause and exit
status 2 (nothing checked), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from harness import REPO


def tag_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "tag-check", *args],
        cwd=REPO, capture_output=True, text=True, timeout=90, env={**os.environ, **env},
    )  # fmt: skip


def test_missing_chromedriver() -> None:
    done = tag_check("http://127.0.0.1:9/", "--wait", "0", DNMA_CHROMEDRIVER="/nonexistent/chromedriver")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("dnma tag-check: http://127.0.0.1:9/: ") and "Exception" in done.stderr


def test_missing_chromium() -> None:
    done = tag_check("http://127.0.0.1:9/", "--wait", "0", DNMA_CHROMIUM="/nonexistent/chromium")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "SessionNotCreatedException" in done.stderr
