"""The collector's tagging debug view (GET /debug, GET /debug/hits) through the real collector
(two workers): access rules, what a hit looks like there, how fast, and what it never shows."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import unquote

import httpx
from e2e_support import CHECK_SITE, GOOD_SITE, MATOMO_SITE, SITE_TOKENS
from harness import SUPER_TOKEN, Stack
from selenium.webdriver.common.by import By

from dnma import clock

TOKEN = SITE_TOKENS[CHECK_SITE]
UID = "uid-secret-a1b2c3"


def _debug_hits(stack: Stack, since: float = 0.0, token: str = TOKEN, limit: int = 50) -> dict[str, Any]:
    r = httpx.get(
        f"{stack.collector_url}/debug/hits",
        params={"idsite": CHECK_SITE, "token_auth": token, "since": since, "limit": limit},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def _wait_for_hit(
    stack: Stack, marker: str, since: float, timeout: float
) -> tuple[dict[str, Any], float, str]:
    """The debug record whose page URL path holds `marker`, the seconds it took, the raw JSON."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = httpx.get(
            f"{stack.collector_url}/debug/hits",
            params={"idsite": CHECK_SITE, "token_auth": TOKEN, "since": since},
            timeout=5,
        )
        for h in r.json()["hits"]:
            if marker in h["url"] or marker in h["title"]:
                return h, time.monotonic() - t0, r.text
        time.sleep(0.05)
    raise AssertionError(f"hit {marker} not in the debug view after {timeout}s")


def _open_view(stack: Stack) -> float:
    r = httpx.get(
        f"{stack.collector_url}/debug", params={"idsite": CHECK_SITE, "token_auth": TOKEN}, timeout=5
    )
    assert r.status_code == 200
    # The worker that answered records at once; the other one notices the open view within a second.
    time.sleep(1.2)
    return clock.time() - 5  # hits are timed on DNMA's clock


def test_access_rules(stack: Stack) -> None:
    url = f"{stack.collector_url}/debug"
    for path in ("/debug", "/debug/hits"):
        url = stack.collector_url + path
        assert httpx.get(url, params={"idsite": CHECK_SITE}).status_code == 401
        assert httpx.get(url, params={"idsite": CHECK_SITE, "token_auth": "nope"}).status_code == 401
        # a valid token of another site
        other = SITE_TOKENS[GOOD_SITE]
        assert httpx.get(url, params={"idsite": CHECK_SITE, "token_auth": other}).status_code == 403
        assert httpx.get(url, params={"idsite": 999, "token_auth": TOKEN}).status_code == 403
        assert httpx.get(url, params={"idsite": CHECK_SITE, "token_auth": TOKEN}).status_code == 200
        assert httpx.get(url, params={"idsite": CHECK_SITE, "token_auth": SUPER_TOKEN}).status_code == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url, params={"idsite": CHECK_SITE}, headers=bearer).status_code == 200
    page = httpx.get(f"{stack.collector_url}/debug", params={"idsite": CHECK_SITE, "token_auth": TOKEN})
    assert page.headers["content-type"].startswith("text/html")
    assert "Débogage du marquage" in page.text and "Signalements" in page.text and "Verdict" in page.text
    assert TOKEN not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"


def test_hit_with_flags_within_a_second(stack: Stack) -> None:
    since = _open_view(stack)
    marker = uuid.uuid4().hex[:10]
    params = {
        "idsite": CHECK_SITE, "rec": 1, "url": f"https://ent4.example/{marker}/cantine?session=s3cr3t&eleve=42",
        "action_name": "Menu", "uid": UID, "_id": "0123456789abcdef",
        "dimension1": "0450822x", "dimension2": "CANTINE", "dimension3": "TIERS", "dimension6": "ENT_X",
        "dimension9": "libre",
    }  # fmt: skip
    t0 = time.monotonic()
    r = httpx.get(
        f"{stack.collector_url}/matomo.php",
        params=params,
        headers={"User-Agent": "Mozilla/5.0 Firefox/128.0"},
    )
    assert r.status_code == 200
    hit, _, raw = _wait_for_hit(stack, marker, since, timeout=3)
    assert time.monotonic() - t0 < 1.0, "the verdict must show within a second"
    # Stored, but the invalid UAI keeps it out of every indicator: the verdict says so, and why.
    # 0450822: 450822 = 23 × 19600 + 22, the 23rd check letter (ABCDEFGHJKLMNPRSTUVWXYZ) is Z.
    assert hit["verdict"] == "accepted" and hit["counted"] is False
    assert hit["verdict_label"] == "enregistré, exclu des indicateurs : UAI invalide (lettre de contrôle Z attendue)"
    assert hit["action"] == "pageview" and hit["action_label"] == "page vue"
    codes = {f["code"] for f in hit["flags"]}
    assert {"invalid_uai", "unknown_service", "missing_profil", "tiers_without_outil"} <= codes
    labels = {f["label"] for f in hit["flags"]}
    assert "UAI invalide (lettre de contrôle Z attendue)" in labels
    assert any(label.startswith("SERVICE inconnu « cantine » : valeurs admises : ") for label in labels)
    assert hit["properties"]["uai"] == "0450822X"
    assert hit["properties"]["service"] == "cantine"
    assert hit["properties"]["projet"] == "ENT_X"
    assert hit["dimensions"] == {"dimension9": "libre"}
    assert hit["uid"] is True
    assert hit["url"] == f"https://ent4.example/{marker}/cantine?session=…&eleve=…"
    # Privacy: no IP, no raw uid, no token, no query-string value, in the answer that holds the hit.
    assert marker in raw and "0450822X" in raw
    for secret in (UID, "127.0.0.1", TOKEN, SUPER_TOKEN, "s3cr3t", "0123456789abcdef"):
        assert secret not in raw


def test_nothing_recorded_without_a_viewer(stack: Stack) -> None:
    """The hot path only writes for a site whose debug view is open."""
    params = {"idsite": MATOMO_SITE, "rec": 1, "url": "https://ent3.example/personne-ne-regarde"}
    assert httpx.get(f"{stack.collector_url}/matomo.php", params=params).status_code == 200
    time.sleep(0.3)
    assert not (stack.data_dir / "debug" / f"site-{MATOMO_SITE}.jsonl").exists()


def test_drop_reasons(stack: Stack) -> None:
    since = _open_view(stack)
    bot, bad_cid = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    base = {"idsite": CHECK_SITE, "rec": 1, "dimension1": "0350122T", "dimension2": "NOTES"}
    httpx.get(
        f"{stack.collector_url}/matomo.php",
        params={**base, "url": f"https://ent4.example/{bot}"},
        headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
    )
    r = httpx.post(
        f"{stack.collector_url}/matomo.php",
        data={
            **base,
            "url": f"https://ent4.example/{bad_cid}",
            "cid": "xyz",
            "link": "https://ailleurs.example/",
        },
    )
    assert r.status_code == 400
    hit, _, _ = _wait_for_hit(stack, bot, since, timeout=2)
    assert (hit["verdict"], hit["reason"], hit["reason_label"]) == ("excluded", "bot", "robot")
    assert hit["reason_rule"] == "docs/tagging.md#requêtes-refusées" and hit["counted"] is False
    assert hit["properties"]["uai"] == "0350122T"  # what the page sent, even for a dropped hit
    hit, _, _ = _wait_for_hit(stack, bad_cid, since, timeout=2)
    assert (hit["verdict"], hit["reason"]) == ("refused", "invalid_cid")
    assert hit["action"] == "outlink" and hit["target"] == "https://ailleurs.example/"
    assert "16" in hit["detail"]


def test_bulk_and_both_workers(stack: Stack) -> None:
    """Bulk items each get a record, and hits on fresh connections (either worker) all show."""
    since = _open_view(stack)
    run = uuid.uuid4().hex[:8]
    items = [
        f"?idsite={CHECK_SITE}&rec=1&url=https://ent4.example/{run}-bulk-{i}&dimension1=0350122T"
        for i in range(3)
    ]
    assert httpx.post(f"{stack.collector_url}/matomo.php", json={"requests": items}).status_code == 200
    singles = 0
    hits: list[dict[str, Any]] = []
    # A new connection each: the kernel spreads them over the two workers, though not evenly, so
    # rounds of 12 until both workers have recorded some (nearly always the first round).
    while singles < 120 and len({h["id"].split("-")[0] for h in hits}) < 2:
        for i in range(singles, singles + 12):
            httpx.get(
                f"{stack.collector_url}/matomo.php",
                params={"idsite": CHECK_SITE, "rec": 1, "url": f"https://ent4.example/{run}-single-{i}"},
            )
        singles += 12
        hits = [h for h in _debug_hits(stack, since, limit=500)["hits"] if run in h["url"]]
    assert sorted(h["url"].rsplit("/", 1)[1] for h in hits) == sorted(
        [f"{run}-bulk-{i}" for i in range(3)] + [f"{run}-single-{i}" for i in range(singles)]
    )
    bulk = [h for h in hits if "bulk" in h["url"]]
    assert all({f["code"] for f in h["flags"]} >= {"missing_service", "missing_profil"} for h in bulk)
    workers = {h["id"].split("-")[0] for h in hits}  # a record's id starts with its worker's pid
    assert len(workers) == 2, f"debug records of {singles} single hits all written by worker {workers}"


def test_live_page_in_chromium(stack: Stack, chrome: Any) -> None:
    """The editor's view: the HTML page polls and shows the new hit's verdict within about a second."""
    driver = chrome()
    driver.get(f"{stack.collector_url}/debug?idsite={CHECK_SITE}&token_auth={TOKEN}")
    assert "Débogage du marquage" in driver.title
    time.sleep(1.5)  # first poll done; both workers know the view is open
    marker = uuid.uuid4().hex[:10]
    t0 = time.monotonic()
    httpx.get(
        f"{stack.collector_url}/matomo.php",
        params={"idsite": CHECK_SITE, "rec": 1, "url": f"https://ent4.example/{marker}", "action_name": marker,
                "dimension1": "0350122X", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE"},
    )  # fmt: skip
    row = None
    while time.monotonic() - t0 < 5 and row is None:
        for tr in driver.find_elements(By.CSS_SELECTOR, "#hits tr"):
            if marker in tr.text:
                row = tr
                break
        else:
            time.sleep(0.05)
    elapsed = time.monotonic() - t0
    assert row is not None, driver.find_element(By.ID, "statut").text
    assert elapsed < 2.0, f"shown after {elapsed:.2f}s (poll every second)"
    assert row.get_attribute("data-verdict") == "accepted"
    flags = [s.get_attribute("data-code") for s in row.find_elements(By.CSS_SELECTOR, ".flag")]
    assert flags == ["invalid_uai"]
    assert "enregistré, exclu des indicateurs" in row.text and "lettre de contrôle T attendue" in row.text
    assert "page vue" in row.text
    link = row.find_element(By.CSS_SELECTOR, "a.flag")  # the flag links to its rule in the guide
    assert unquote(link.get_attribute("href")).endswith("/docs/tagging.md#règle-uai")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert marker in body and TOKEN not in body
