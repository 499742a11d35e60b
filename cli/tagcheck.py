"""`dnma tag-check URL|HAR`: checks a page's tracking requests against the tagging plan
(TAGGING.md) — for ENT editors, by hand or in their CI (exit status 0 only when the plan is met).

A URL is loaded in headless Chromium (Selenium, the system's chromium and chromedriver); the
requests to matomo.php / piwik.php are read from the DevTools performance log (GET query, POST
form body, bulk JSON). A .har file (exported from a browser's network panel) is read as is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dnma import guide, vocab
from dnma import uai as uai_rules

log = logging.getLogger("dnma.tagcheck")

TRACKING_URL = re.compile(r"/(?:matomo|piwik)\.php(?:[?#]|$)")
CHROMIUM = os.environ.get("DNMA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DNMA_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Hides the page as a tab switch does: tags send their queue on visibilitychange/pagehide, and the
# page stays alive, so DevTools still has the bodies of those last requests.
HIDE_PAGE_JS = """
Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
Object.defineProperty(document, 'hidden', {value: true, configurable: true});
document.dispatchEvent(new Event('visibilitychange'));
window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}));
"""

EXIT_OK, EXIT_PLAN_NOT_MET, EXIT_NOTHING = 0, 1, 2


class BrowserError(RuntimeError):
    """Headless Chromium could not load the page: missing, crashed, page not reachable."""
OK, MISSING, INVALID, UNKNOWN, WARNING = "ok", "missing", "invalid", "unknown", "warning"
ERRORS = frozenset({MISSING, INVALID, UNKNOWN})
STATUS_LABELS = {OK: "OK", MISSING: "MANQUANT", INVALID: "INVALIDE", UNKNOWN: "INCONNU", WARNING: "ATTENTION"}
# Properties a site may fix in its registration instead of sending them (TAGGING.md).
MAY_BE_REGISTERED = ("projet", "exploitant", "plateforme")


@dataclass
class TrackingRequest:
    """One request to the tracking endpoint, as it left the browser."""

    method: str
    url: str
    body: str = ""


@dataclass
class PropertyCheck:
    prop: str  # upper case, as in TAGGING.md
    slot: str  # the parameter that carried it (dimensionN, _cvar) or the expected one
    value: str
    status: str
    message: str = ""


@dataclass
class HitReport:
    index: int
    action: str
    url: str
    method: str
    checks: list[PropertyCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # not about a property: idsite, rec

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.status not in ERRORS for c in self.checks)


# --- from requests to hits -----------------------------------------------------------------------


def hits_of(request: TrackingRequest) -> list[dict[str, str]]:
    """The parameter sets of one request: one for GET or a form POST, one per item of a bulk."""
    from collector.protocol import ProtocolError, looks_like_bulk, parse_bulk, request_params

    query = urlsplit(request.url).query.encode()
    body = request.body.encode()
    if body and looks_like_bulk(body):
        try:
            bulk = parse_bulk(body)
        except ProtocolError:
            return []
        return [item for item in bulk.items if item is not None]
    params = request_params(query, body)
    return [params] if params else []


def action_of(params: dict[str, str]) -> str:
    from collector.steps import action_for

    return action_for(params)


def _cvars(params: dict[str, str]) -> dict[str, str]:
    """DNMA properties sent as legacy custom variables (`_cvar={"1":["UAI","..."]}`)."""
    found: dict[str, str] = {}
    for name in ("_cvar", "cvar"):
        try:
            doc = json.loads(params.get(name) or "null")
        except ValueError:
            continue
        items = doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else ()
        for item in items:
            if isinstance(item, list) and len(item) >= 2 and str(item[0]).lower() in vocab.PROPERTIES:
                found.setdefault(str(item[0]).lower(), str(item[1]).strip())
    return found


# --- the tagging plan ----------------------------------------------------------------------------


def check_hit(index: int, params: dict[str, str], method: str, mapping: dict[int, str]) -> HitReport:
    action = action_of(params)
    url = (
        params.get("download")
        if action == "download"
        else params.get("link")
        if action == "outlink"
        else None
    )
    report = HitReport(index, action, url or params.get("url", ""), method)
    if not (params.get("idsite") or "").strip():
        report.problems.append("idsite manquant")
    if params.get("rec") != "1":
        report.problems.append("rec=1 manquant : la requête ne sera pas enregistrée")
    slot_of = {prop: f"dimension{n}" for n, prop in mapping.items()}
    cvars = _cvars(params)
    values: dict[str, tuple[str, str]] = {}
    for prop in vocab.PROPERTIES:
        slot = slot_of.get(prop, "")
        if slot and (params.get(slot) or "").strip():
            values[prop] = (params[slot].strip(), slot)
        elif prop in cvars and cvars[prop]:
            values[prop] = (cvars[prop], "_cvar")
        else:
            values[prop] = ("", slot or "(aucun emplacement)")
    for prop in vocab.PROPERTIES:
        value, slot = values[prop]
        status, message = _check_property(prop, value, values)
        report.checks.append(PropertyCheck(prop.upper(), slot, value, status, message))
    return report


def _check_property(prop: str, value: str, values: dict[str, tuple[str, str]]) -> tuple[str, str]:
    if prop == "uai":
        return _check_uai(value)
    if prop == "service":
        if not value:
            return MISSING, "SERVICE manquant"
        if vocab.normalise_service(value) not in vocab.SERVICES:
            return UNKNOWN, f"SERVICE inconnu : un des {len(vocab.SERVICES)} services de {guide.link('services')}"
        return OK, ""
    if prop in ("type", "profil"):
        allowed = vocab.TYPES if prop == "type" else vocab.PROFILS
        if not value:
            return MISSING, f"{prop.upper()} manquant"
        if vocab.normalise_upper(value) not in allowed:
            return UNKNOWN, f"{prop.upper()} attendu parmi {', '.join(allowed)}"
        return OK, ""
    if prop == "outil":
        tiers = vocab.normalise_upper(values["type"][0]) == "TIERS"
        if tiers and not value:
            return MISSING, "OUTIL obligatoire quand TYPE=TIERS"
        if value and not tiers:
            return WARNING, "OUTIL renseigné alors que TYPE n'est pas TIERS"
        return OK, ""
    if not value:  # projet, exploitant, plateforme
        return WARNING, "absent : à fixer alors dans l'enregistrement du site"
    return OK, ""


def _check_uai(value: str) -> tuple[str, str]:
    uai = uai_rules.normalise(value)
    status = uai_rules.status(uai)
    if status is uai_rules.UaiStatus.MISSING:
        return MISSING, "UAI manquant"
    if status is uai_rules.UaiStatus.BAD_FORMAT:
        return INVALID, "UAI invalide : 7 chiffres puis une lettre de contrôle attendus"
    if status is uai_rules.UaiStatus.BAD_DEPARTEMENT:
        return INVALID, f"UAI invalide : département {uai[:3]} inexistant"
    if status is uai_rules.UaiStatus.BAD_CHECK_LETTER:
        return (
            INVALID,
            f"UAI invalide : lettre de contrôle {uai_rules.check_letter(uai[:7])} attendue, pas {uai[7]}",
        )
    return OK, ""


def check_requests(requests: list[TrackingRequest], mapping: dict[int, str]) -> list[HitReport]:
    reports: list[HitReport] = []
    for request in requests:
        for params in hits_of(request):
            reports.append(check_hit(len(reports) + 1, params, request.method, mapping))
    return reports


# --- sources: a HAR file, a live page ------------------------------------------------------------


def read_har(path: Path) -> list[TrackingRequest]:
    doc = json.loads(path.read_text(encoding="utf-8-sig"))
    found = []
    for entry in doc.get("log", {}).get("entries", []):
        request = entry.get("request", {})
        url = request.get("url", "")
        if not TRACKING_URL.search(url):
            continue
        post = request.get("postData") or {}
        body = post.get("text") or ""
        if not body and post.get("params"):
            from urllib.parse import urlencode

            body = urlencode([(p.get("name", ""), p.get("value", "")) for p in post["params"]])
        found.append(TrackingRequest(request.get("method", "GET"), url, body))
    return found


def capture_url(url: str, wait: float) -> list[TrackingRequest]:
    """Load the page in headless Chromium, wait, hide it, and return its tracking requests."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # an optional dependency (the dev extra): HAR files need none
        raise BrowserError(f"loading a URL needs selenium ({exc})") from exc

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    profile = tempfile.mkdtemp(prefix="dnma-tag-check-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserError(_first_line(exc)) from exc
    try:
        driver.set_page_load_timeout(max(30.0, wait * 2))
        driver.get(url)
        time.sleep(wait)
        try:
            driver.execute_script(HIDE_PAGE_JS)
        except WebDriverException as exc:
            # The tags send their queue on pagehide: without it some hits may be missing.
            log.warning("tag_check_hide_page_failed: %s", _first_line(exc))
        time.sleep(1.0)  # the tags' own flush delays
        return requests_from_log(driver, driver.get_log("performance"))
    except WebDriverException as exc:
        raise BrowserError(_first_line(exc)) from exc
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc)
    return f"{type(exc).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"


def requests_from_log(driver: Any, entries: list[dict[str, Any]]) -> list[TrackingRequest]:
    """Tracking requests of a chromedriver performance log; bodies the event does not carry
    (beacons, blobs) are asked from DevTools while the page is alive."""
    found: dict[str, TrackingRequest] = {}
    for entry in entries:
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.requestWillBeSent":
            continue
        params = message["params"]
        request = params["request"]
        if not TRACKING_URL.search(request.get("url", "")):
            continue
        body = request.get("postData") or ""
        if not body and request.get("hasPostData"):
            body = _post_data(driver, params["requestId"])
        found[params["requestId"] + request["url"]] = TrackingRequest(
            request.get("method", "GET"), request["url"], body
        )
    return list(found.values())


def _post_data(driver: Any, request_id: str) -> str:
    from selenium.common.exceptions import WebDriverException

    try:
        return str(
            driver.execute_cdp_cmd("Network.getRequestPostData", {"requestId": request_id})["postData"]
        )
    except (WebDriverException, KeyError) as exc:  # gone with its page: reported without its body
        log.warning("tag_check_post_data_missing: %s", _first_line(exc))
        return ""


# --- output --------------------------------------------------------------------------------------


def render_text(source: str, requests: list[TrackingRequest], reports: list[HitReport]) -> str:
    from collector.debug import ACTION_LABELS

    lines = [f"dnma tag-check {source}", f"{len(requests)} requête(s) de suivi, {len(reports)} hit(s)", ""]
    for r in reports:
        lines.append(f"Hit {r.index} : {ACTION_LABELS.get(r.action, r.action)} — {r.url} [{r.method}]")
        for problem in r.problems:
            lines.append(f"  {'INVALIDE':<9} {problem}")
        for c in r.checks:
            value = c.value or "—"
            note = f"  {c.message}" if c.message else ""
            lines.append(f"  {STATUS_LABELS[c.status]:<9} {c.prop:<10} {c.slot:<11} {value}{note}")
        lines.append("")
    failed = [r for r in reports if not r.ok]
    if not reports:
        lines.append("Résultat : aucune requête de suivi vers matomo.php / piwik.php trouvée.")
    elif failed:
        lines.append(
            f"Résultat : plan de marquage NON respecté ({len(failed)} hit(s) sur {len(reports)} en erreur)."
        )
        lines.append(f"Règles et valeurs admises : {guide.GUIDE} (guide de marquage, dans le dépôt DNMA).")
    else:
        lines.append(f"Résultat : plan de marquage respecté ({len(reports)} hit(s)).")
    return "\n".join(lines) + "\n"


def render_json(source: str, requests: list[TrackingRequest], reports: list[HitReport]) -> str:
    doc = {
        "source": source,
        "requests": len(requests),
        "ok": bool(reports) and all(r.ok for r in reports),
        "hits": [{**asdict(r), "ok": r.ok} for r in reports],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


# --- command line ----------------------------------------------------------------------------------


def _mapping(specs: list[str]) -> dict[int, str]:
    mapping = dict(vocab.DEFAULT_DIMENSION_MAPPING)
    for spec in specs:
        slot, _, prop = spec.partition("=")
        prop = prop.strip().lower()
        if not slot.strip().isdigit() or prop not in vocab.PROPERTIES:
            raise SystemExit(
                f"--dimension {spec!r}: N=PROPRIETE attendu, PROPRIETE parmi {', '.join(vocab.PROPERTIES)}"
            )
        mapping = {n: p for n, p in mapping.items() if p != prop and n != int(slot)}
        mapping[int(slot)] = prop
    return mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="URL of a page to load in headless Chromium, or a .har file")
    parser.add_argument(
        "--wait", type=float, default=3.0, help="seconds to stay on the page before hiding it (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--dimension",
        action="append",
        default=[],
        metavar="N=PROPRIETE",
        help=f"the site's own slot for a property (default mapping of {guide.GUIDE}: 1=uai ... 8=plateforme)",
    )


def run(args: argparse.Namespace) -> int:
    target: str = args.target
    mapping = _mapping(args.dimension)
    try:
        if re.match(r"^https?://", target, re.I):
            requests = capture_url(target, args.wait)
        else:
            requests = read_har(Path(target))
    except (OSError, ValueError, BrowserError) as exc:
        print(f"dnma tag-check: {target}: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    reports = check_requests(requests, mapping)
    render = render_json if args.json else render_text
    sys.stdout.write(render(target, requests, reports))
    if not reports:
        return EXIT_NOTHING
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PLAN_NOT_MET
