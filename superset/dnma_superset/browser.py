"""Headless Chromium (the Debian package, never downloaded) logged into Superset: open a dashboard,
wait for every chart to render, report errors and timings. Used by the browser tests and
bench/dashboards.py."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1400", "--lang=fr-FR")

# Counted in the page: chart holders, those still loading, those showing an error box. Markdown
# components (the maps' legends) use the same holder and are no chart: left out.
_STATE_JS = """
const holders = [...document.querySelectorAll('[data-test="dashboard-component-chart-holder"]')]
  .filter(h => !h.closest('[data-test="dashboard-markdown-editor"]'));
const loading = holders.filter(h => h.querySelector('[data-test="loading-indicator"], .loading'));
const errors = holders.filter(h => h.querySelector('.ant-alert-error, .alert-danger, [data-test="error-tooltip"]'));
const rendered = holders.filter(h => !loading.includes(h) && h.querySelector(
  'canvas, svg, table, .big_number_total, .superset-legacy-chart-big-number, [class*="BigNumber"], ' +
  '.header-line, .empty-state, [data-test="chart-container"] *'));
return {holders: holders.length, loading: loading.length, errors: errors.map(h => h.innerText.slice(0, 300)),
        rendered: rendered.length, empty: holders.filter(h => h.querySelector('.ant-empty, .empty-state')).length};
"""


@dataclass
class DashboardLoad:
    slug: str
    charts: int
    rendered: int
    errors: list[str]
    empty: int
    seconds: float


class SessionLost(RuntimeError):
    """The dashboard's URL redirected to the login page: the browser is not (or no more) logged in."""


class Browser:
    def __init__(self, url: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.url = url.rstrip("/")
        self._profile = tempfile.TemporaryDirectory(prefix="dnma-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self._profile.name}"):
            options.add_argument(flag)
        self.driver: Any = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(120)

    def login(self, username: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        # The login page is a React form: keys typed while it (re)renders can be lost, and the
        # submission is then refused. Leaving /login is not proof either: under load the browser can
        # land on its own error page. So the form is filled again (up to three times) until the
        # fields hold what was typed and Superset itself answers who is logged in (/api/v1/me/).
        for attempt in range(3):
            self.driver.get(f"{self.url}/login/")
            self._wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, "input[name=username], #username"), 60)
            user = self.driver.find_element(By.CSS_SELECTOR, "input[name=username], #username")
            secret = self.driver.find_element(By.CSS_SELECTOR, "input[name=password], #password")
            user.clear()
            user.send_keys(username)
            secret.clear()
            secret.send_keys(password)
            if user.get_attribute("value") != username or secret.get_attribute("value") != password:
                continue
            self.driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
            try:
                self._wait(lambda: "/login" not in self.driver.current_url, 30 if attempt < 2 else 60)
            except TimeoutError:
                if attempt == 2:
                    raise
                continue
            if self.logged_in_as() == username:
                return
        raise TimeoutError(f"could not log in as {username}: Superset answers {self.logged_in_as()!r} "
                           f"at {self.driver.current_url}")

    def logged_in_as(self) -> str | None:
        """The username Superset's session cookie stands for, or None (anonymous or no answer)."""
        from selenium.common.exceptions import WebDriverException

        try:
            self.driver.get(f"{self.url}/api/v1/me/")
            body = self.driver.find_element("css selector", "body").text
            return str(json.loads(body)["result"]["username"])
        except (WebDriverException, ValueError, KeyError, TypeError):  # a 401, a browser error page
            return None

    def open_dashboard(self, slug: str, expected_charts: int, timeout: float = 180,
                       standalone: bool = True) -> DashboardLoad:
        """Open the dashboard and wait until every chart holder has rendered (or shows an error).
        standalone: the dashboard alone, without Superset's menu bar and filter panel."""
        start = time.monotonic()
        self.driver.get(f"{self.url}/superset/dashboard/{slug}/" + ("?standalone=1" if standalone else ""))
        state: dict[str, Any] = {}
        settled_since = None
        while time.monotonic() - start < timeout:
            if "/login" in self.driver.current_url:
                raise SessionLost(f"Superset sent the browser to its login page opening {slug}")
            state = self.driver.execute_script(_STATE_JS)
            done = (state["holders"] >= expected_charts and state["loading"] == 0
                    and state["rendered"] + len(state["errors"]) >= state["holders"])
            if done:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= 1.0:  # no chart re-entered loading meanwhile
                    break
            else:
                settled_since = None
            time.sleep(0.1)
        seconds = (settled_since or time.monotonic()) - start
        return DashboardLoad(slug, state.get("holders", 0), state.get("rendered", 0), state.get("errors", []),
                             state.get("empty", 0), round(seconds, 2))

    def text(self) -> str:
        return str(self.driver.execute_script("return document.body.innerText"))

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        height = self.driver.execute_script("return Math.max(document.body.scrollHeight, 1200)")
        self.driver.set_window_size(1600, min(int(height) + 100, 4000))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1600, 1400)

    def _wait(self, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise TimeoutError(f"browser wait timed out at {self.driver.current_url}")

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
