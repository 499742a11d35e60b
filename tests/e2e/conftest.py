"""Fixtures of the end-to-end tests: one real embedded stack (collector with two workers, loader
running the sessionizer every second), a static server for the demo pages of tagging-sdk/js, and
headless Chromium through Selenium (the system's chromium and chromedriver, never a download)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_support import PAGES, TAG, e2e_sites  # noqa: E402
from harness import Stack  # noqa: E402

from cli.tagcheck import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS  # noqa: E402


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not TAG.is_file():
        pytest.fail("tagging-sdk/js/dist/dnma.iife.js missing: run `make js` first")
    with Stack(tmp_path_factory.mktemp("e2e"), sites=e2e_sites(), loader_aggregate_interval_s=1) as s:
        s.start_collector("--workers", "2")
        s.start_loader()
        yield s


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def pages_url() -> Iterator[str]:
    """Base URL of a static server for tagging-sdk/js/test/pages (another origin than the collector)."""
    handler = functools.partial(_QuietHandler, directory=str(PAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def chrome() -> Iterator[Callable[..., Any]]:
    """Factory of headless Chromium drivers (fresh profile each), all quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    drivers: list[Any] = []
    profiles: list[str] = []

    def make(*, performance_log: bool = False) -> Any:
        profile = tempfile.mkdtemp(prefix="dnma-e2e-chrome-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        if performance_log:
            options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    try:
        yield make
    finally:
        for driver in drivers:
            try:
                driver.quit()
            except Exception:
                pass
        for profile in profiles:
            shutil.rmtree(profile, ignore_errors=True)
