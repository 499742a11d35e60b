"""`dnma tag-check` never stores a hit (issue 20, item 3): real pages with the dnma.js and the
`_paq` tag, loaded in one real headless Chromium (reused across the cases), their tracking requests
intercepted and sent to the real collector's validation route; the site's stored hits and the
collector's accepted-hits counter are read before and after, and a real hit sent afterwards shows
the count could move. Also: a UAI outside the site's perimeter fails the check, a 404 page is
"not loaded" (exit 3), apart from a page without any tag (exit 2)."""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import CHECK_SITE, SITE_TOKENS
from harness import REPO, Stack

from cli import tagcheck
from dnma import uai

OUTSIDE_UAI = "0130001" + uai.check_letter("0130001")  # Bouches-du-Rhône: the site covers 035 and 094

# A page tagged as docs/tagging.md shows it (_paq, matomo.js served by the collector).
PAQ_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Vie scolaire</title>
<script>
  var _paq = window._paq = window._paq || [];
  _paq.push(['setTrackerUrl', '{collector}/matomo.php']);
  _paq.push(['setSiteId', '{site}']);
  _paq.push(['setCustomDimension', 1, '{uai}']);
  _paq.push(['setCustomDimension', 2, 'NOTES']);
  _paq.push(['setCustomDimension', 3, 'NATIF']);
  _paq.push(['setCustomDimension', 5, 'PARENT']);
  _paq.push(['setCustomDimension', 6, 'ENT_BRETAGNE']);
  _paq.push(['setCustomDimension', 7, 'Exploitant Démo']);
  _paq.push(['setCustomDimension', 8, 'Plateforme Démo']);
  _paq.push(['trackPageView']);
  (function () {{
    var g = document.createElement('script'); g.async = true; g.src = '{collector}/matomo.js';
    document.head.appendChild(g);
  }})();
</script></head><body><h1>Vie scolaire</h1>{frame}</body></html>
"""
# The outside page also embeds the inside one from another origin (localhost, not 127.0.0.1): a
# cross-origin iframe runs in a process of its own, and its hits must be intercepted too.
FRAME = ("<iframe id='framed'></iframe><script>document.getElementById('framed').src = "
         "'http://localhost:{port}/inside.html' + location.search;</script>")
UNTAGGED_PAGE = "<!doctype html><html><head><title>Sans marquage</title></head><body>Rien.</body></html>"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site_pages(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A test HTTP server serving this test's own pages (another origin than the collector)."""
    root = tmp_path_factory.mktemp("tag-check-pages")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    port = server.server_port
    for name, value, frame in (("inside", "0350122T", ""), ("outside", OUTSIDE_UAI, FRAME)):
        (root / f"{name}.html").write_text(PAQ_PAGE.replace("{frame}", frame).format(
            collector=stack.collector_url, site=CHECK_SITE, uai=value, port=port), encoding="utf-8")
    (root / "untagged.html").write_text(UNTAGGED_PAGE, encoding="utf-8")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[tagcheck.Browser]:
    with tagcheck.Browser() as b:
        yield b


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(SITE_TOKENS[CHECK_SITE] + "\n")
    return path


def _args(token_file: Path | None, **over: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"wait": 0.5, "json": True, "dimension": [], "token_file": token_file,
                                 "collector": "", "referentiel": False, **over})


def _accepted(stack: Stack) -> float:
    text = httpx.get(f"{stack.collector_url}/metrics", timeout=10).text
    found = re.search(r"^dnma_collector_hits_accepted_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _stored(stack: Stack, marker: str) -> int:
    client = stack.reader()
    try:
        return int(client.query("SELECT count() FROM dnma.hits WHERE site_id = {s:UInt32} AND position(url, {m:String}) > 0",
                                parameters={"s": CHECK_SITE, "m": marker}).result_rows[0][0])
    finally:
        client.close()


def test_tag_check_stores_nothing_and_reports_the_perimeter(
    stack: Stack, site_pages: str, browser: tagcheck.Browser, token_file: Path
) -> None:
    marker = uuid.uuid4().hex[:12]
    time.sleep(1.1)  # past the workers' last metrics flush
    accepted = _accepted(stack)

    outside = tagcheck.check(f"{site_pages}/outside.html?run={marker}", _args(token_file), browser)
    assert len(outside.reports) == 2, tagcheck.render_text(outside)  # the page's hit and its iframe's
    assert outside.load is not None and outside.load.status == 200 and outside.validated
    framed = next(r for r in outside.reports if r.url.startswith("http://localhost:"))
    assert framed.ok and framed.collector is not None and framed.collector["verdict"] == "accepted"
    assert framed.collector["counted"] and framed.collector["properties"]["uai"] == "0350122T"
    hit = next(r for r in outside.reports if r is not framed)
    checks = {c.prop: c for c in hit.checks}
    # The UAI is valid: only the collector, which knows the site's perimeter, can say it is outside.
    assert checks["UAI"].status == tagcheck.OUTSIDE and checks["UAI"].value == OUTSIDE_UAI
    assert "hors du périmètre" in checks["UAI"].message
    assert outside.exit_status() == tagcheck.EXIT_PLAN_NOT_MET
    assert "HORS PÉRIM." in tagcheck.render_text(outside)
    # The local checks alone (what tag-check does without a token) let this UAI pass.
    local = tagcheck.check_requests(outside.requests, tagcheck._mapping([]))
    assert all({c.prop: c.status for c in r.checks}["UAI"] == tagcheck.OK for r in local)

    # Nothing of the page's and its iframe's hits was stored, nor counted as accepted.
    time.sleep(1.1)
    assert _accepted(stack) == accepted
    # A real hit of the same page, sent afterwards, is stored: the counts above could move.
    control = httpx.get(f"{stack.collector_url}/matomo.php", timeout=10, params={
        "idsite": CHECK_SITE, "rec": 1, "url": f"{site_pages}/inside.html?run={marker}", "send_image": 0})
    assert control.status_code == 204
    deadline = time.monotonic() + 30
    while _stored(stack, marker) < 1:
        assert time.monotonic() < deadline, "the control hit never reached dnma.hits"
        time.sleep(0.2)
    assert _stored(stack, marker) == 1
    time.sleep(1.1)
    assert _accepted(stack) == accepted + 1


def test_not_loaded_is_not_untagged(site_pages: str, browser: tagcheck.Browser, token_file: Path) -> None:
    missing = tagcheck.check(f"{site_pages}/missing.html", _args(token_file), browser)
    assert missing.load is not None and (missing.load.status, missing.load.loaded) == (404, False)
    assert missing.exit_status() == tagcheck.EXIT_NOT_LOADED
    assert "page non chargée (HTTP 404)" in tagcheck.render_text(missing)
    untagged = tagcheck.check(f"{site_pages}/untagged.html", _args(token_file), browser)
    assert untagged.load is not None and (untagged.load.status, untagged.load.loaded) == (200, True)
    assert untagged.reports == [] and untagged.exit_status() == tagcheck.EXIT_NOTHING
    assert "aucune requête de suivi" in tagcheck.render_text(untagged)
    assert json.loads(tagcheck.render_json(missing))["page"] == {
        "url": f"{site_pages}/missing.html", "status": 404, "error": "", "loaded": False}


def test_har_validated_and_a_wrong_token_refused(stack: Stack, tmp_path: Path, token_file: Path) -> None:
    """A HAR file (no browser) gets the collector's verdict too; the command as a CI runs it, with a
    wrong token in the environment, is a one-line error, exit 2, nothing checked."""
    hit = (f"{stack.collector_url}/matomo.php?idsite={CHECK_SITE}&rec=1&url=https%3A%2F%2Fent4.example%2Fhar"
           f"&dimension1={OUTSIDE_UAI}&dimension2=NOTES&dimension3=NATIF&dimension5=ELEVE")
    har = tmp_path / "page.har"
    har.write_text(json.dumps({"log": {"entries": [{"request": {"method": "GET", "url": hit, "headers": []}}]}}))
    doc = json.loads(tagcheck.render_json(tagcheck.check(str(har), _args(token_file))))
    assert doc["validated"] is True and doc["page"] is None and doc["ok"] is False
    (h,) = doc["hits"]
    assert {c["prop"]: c["status"] for c in h["checks"]}["UAI"] == "outside_perimeter"
    env = {**os.environ, tagcheck.TOKEN_ENV: "not-the-token"}
    refused = subprocess.run([sys.executable, "-m", "cli", "tag-check", str(har), "--json"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "HTTP 401" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_uai_missing_from_the_referential() -> None:
    """--referentiel: a well-formed UAI that the annuaire does not hold is UNKNOWN (the lookup itself,
    referential_uais, reads this machine's DNMA storage and is not exercised here)."""
    params = {"idsite": "4", "rec": "1", "dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF",
              "dimension5": "ELEVE"}
    reports = [tagcheck.check_hit(1, params, "GET", tagcheck._mapping([]))]
    tagcheck.check_referential(reports, {"0350122T"})
    assert {c.prop: c.status for c in reports[0].checks}["UAI"] == tagcheck.OK
    tagcheck.check_referential(reports, set())
    uai_check = {c.prop: c for c in reports[0].checks}["UAI"]
    assert uai_check.status == tagcheck.UNKNOWN and "référentiel" in uai_check.message
