"""`dnma tag-check` as an editor's CI runs it (the real CLI in a subprocess): on the demo pages
loaded in headless Chromium against the real collector, and on HAR files built here from the
requests a real browser sent (recorded in the page, independently of tag-check's own capture)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from e2e_support import CHECK_SITE
from harness import REPO, Stack
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Installed before any page script: keeps what each sendBeacon/fetch to the collector carried.
RECORDER_JS = """
window.__sent = [];
const keep = (url, body) => {
  if (!/matomo\\.php/.test(String(url))) return;
  window.__sent.push(Promise.resolve(body && body.text ? body.text() : String(body || ''))
    .then((text) => ({ url: String(url), text })));
};
const beacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, body) => { keep(url, body); return beacon(url, body); };
"""


def tag_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "tag-check", *args],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def page_url(stack: Stack, pages_url: str, name: str) -> str:
    return (
        f"{pages_url}/{name}.html?endpoint={stack.collector_url}/matomo.php&idsite={CHECK_SITE}&heartbeat=0"
    )


def test_good_page_passes(stack: Stack, pages_url: str) -> None:
    done = tag_check(page_url(stack, pages_url, "good"), "--wait", "1.5", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and doc["requests"] >= 1
    [hit] = doc["hits"]
    assert hit["action"] == "pageview"
    checks = {c["prop"]: c for c in hit["checks"]}
    assert {p: c["status"] for p, c in checks.items()} == {p: "ok" for p in checks}
    assert (checks["UAI"]["value"], checks["UAI"]["slot"]) == ("0350122T", "dimension1")
    assert (checks["PROFIL"]["value"], checks["PROFIL"]["slot"]) == ("ENSEIGNANT", "dimension5")


def test_bad_page_fails(stack: Stack, pages_url: str) -> None:
    done = tag_check(page_url(stack, pages_url, "bad"), "--wait", "1.5")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    uai_line = next(line for line in out.splitlines() if " UAI " in line)
    assert "INVALIDE" in uai_line and "0450822X" in uai_line and "lettre de contrôle Z attendue" in uai_line
    profil_line = next(line for line in out.splitlines() if " PROFIL " in line)
    assert "MANQUANT" in profil_line and "dimension5" in profil_line
    service_line = next(line for line in out.splitlines() if " SERVICE " in line)
    assert "INCONNU" in service_line and "CANTINE" in service_line
    assert "plan de marquage NON respecté" in out


def _record(driver: Any, url: str, *clicks: str) -> list[dict[str, str]]:
    driver.get(url)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.dnmaReady === true"))
    for element_id in clicks:
        driver.find_element(By.ID, element_id).click()
    time.sleep(1.0)  # past the tag's 500 ms queue
    sent = driver.execute_async_script("Promise.all(window.__sent).then(arguments[arguments.length - 1])")
    assert sent, "the page sent nothing"
    return sent


def _entry(method: str, url: str, post: dict[str, Any] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": method,
        "url": url,
        "httpVersion": "HTTP/1.1",
        "headers": [],
        "queryString": [],
    }
    if post is not None:
        request["postData"] = post
    return {
        "startedDateTime": "2025-01-06T08:30:00.000Z",
        "time": 1,
        "request": request,
        "response": {"status": 204},
    }


def _har(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "e2e"}, "entries": entries}}))
    return path


def test_har_files(stack: Stack, pages_url: str, chrome: Any, tmp_path: Path) -> None:
    driver = chrome()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER_JS})
    good = _record(driver, page_url(stack, pages_url, "good"))  # one page view, a form POST
    good += _record(driver, page_url(stack, pages_url, "good"), "download", "open-tool")  # + a bulk
    bad = _record(driver, page_url(stack, pages_url, "bad"))
    assert any(s["text"].startswith("{") for s in good), "a bulk body was expected"
    form = next(s for s in good if not s["text"].startswith("{"))

    entries = [_entry("GET", pages_url + "/good.html")]  # not a tracking request: ignored
    entries += [_entry("POST", s["url"], {"mimeType": "text/plain", "text": s["text"]}) for s in good]
    entries.append(_entry("GET", form["url"] + "?" + form["text"]))  # an image request
    params = [{"name": k, "value": v} for k, v in parse_qsl(form["text"])]
    entries.append(
        _entry("POST", form["url"], {"mimeType": "application/x-www-form-urlencoded", "params": params})
    )
    done = tag_check(str(_har(tmp_path / "good.har", entries)), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    actions = sorted(h["action"] for h in doc["hits"])
    assert actions == ["download", "pageview", "pageview", "pageview", "pageview", "pageview"], actions
    tool = next(h for h in doc["hits"] if any(c["value"] == "PRONOTE" for c in h["checks"]))
    assert {c["prop"]: c["value"] for c in tool["checks"]}["TYPE"] == "TIERS"

    # The bad page's request, and a third-party hit stripped of its OUTIL.
    no_outil = dict(parse_qsl(form["text"]))
    no_outil.update(dimension3="TIERS")
    no_outil.pop("dimension4", None)
    entries += [_entry("POST", s["url"], {"mimeType": "text/plain", "text": s["text"]}) for s in bad]
    entries.append(_entry("POST", form["url"], {"mimeType": "text/plain", "text": urlencode(no_outil)}))
    done = tag_check(str(_har(tmp_path / "mixed.har", entries)), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    failed = [h for h in doc["hits"] if not h["ok"]]
    assert len(failed) == 2 and doc["ok"] is False
    bad_checks = {c["prop"]: c for c in failed[0]["checks"]}
    assert (bad_checks["UAI"]["status"], bad_checks["UAI"]["value"]) == ("invalid", "0450822X")
    assert bad_checks["PROFIL"]["status"] == "missing"
    assert bad_checks["SERVICE"]["status"] == "unknown"
    tiers_checks = {c["prop"]: c for c in failed[1]["checks"]}
    assert tiers_checks["OUTIL"]["status"] == "missing" and "TIERS" in tiers_checks["OUTIL"]["message"]
    # a HAR without any tracking request: nothing to check is not a pass
    done = tag_check(str(_har(tmp_path / "empty.har", entries[:1])))
    assert done.returncode == 2 and "aucune requête de suivi" in done.stdout
