"""`dnma tag-check URL|HAR`: checks a page's tracking requests against the tagging plan
(docs/tagging.md) — for ENT editors, by hand or in their CI (exit status 0 only when the plan is met).

A URL is loaded in headless Chromium (Selenium, the system's chromium and chromedriver); its
requests to matomo.php / piwik.php are intercepted with DevTools' `Fetch` domain and answered by
tag-check itself, so that checking a page never stores a hit. With the site's token
(DNMA_TAG_CHECK_TOKEN or --token-file) each of them is sent to the collector's validation route
instead (…/matomo.php/validate, collector.validation), which judges it with the site's own
mapping, perimeter and rules and stores nothing. A .har file (exported from a browser's network
panel) is read as is, and validated the same way. A page that did not load (HTTP status, network
error) is told from a page that loaded without tracking.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

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

EXIT_OK, EXIT_PLAN_NOT_MET, EXIT_NOTHING, EXIT_NOT_LOADED = 0, 1, 2, 3
TOKEN_ENV = "DNMA_TAG_CHECK_TOKEN"
DOCUMENT_EVENT_WAIT_S = 5.0  # how long the main document's status may trail the page's load
VALIDATE_PATH = "matomo.php/validate"  # collector.validation.VALIDATION_PATHS, beside the tracking path
# Request headers the collector's verdict depends on (robots, Do Not Track, prefetch, body type).
FORWARDED_HEADERS = frozenset({"user-agent", "content-type", "dnt", "sec-purpose", "purpose", "x-purpose",
                               "accept-language"})
FETCH_PATTERNS = [{"urlPattern": f"*/{name}*", "requestStage": "Request"} for name in ("matomo.php", "piwik.php")]
# What tag-check answers an intercepted image request: the collector's 1×1 GIF.
GIF_B64 = "R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="


class BrowserError(RuntimeError):
    """Headless Chromium could not run: missing, crashed, no DevTools connection."""


class ValidationError(RuntimeError):
    """The collector's validation route could not be asked: unreachable, token refused."""


OK, MISSING, INVALID, UNKNOWN, OUTSIDE, WARNING = "ok", "missing", "invalid", "unknown", "outside_perimeter", "warning"
ERRORS = frozenset({MISSING, INVALID, UNKNOWN, OUTSIDE})
STATUS_LABELS = {OK: "OK", MISSING: "MANQUANT", INVALID: "INVALIDE", UNKNOWN: "INCONNU", OUTSIDE: "HORS PÉRIM.",
                 WARNING: "ATTENTION"}
# Properties a site may fix in its registration instead of sending them (TAGGING.md).
MAY_BE_REGISTERED = ("projet", "exploitant", "plateforme")


@dataclass
class TrackingRequest:
    """One request to the tracking endpoint, as it left the browser."""

    method: str
    url: str
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


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
    problems: list[str] = field(default_factory=list)  # not about a property: idsite, rec, refusal
    notes: list[str] = field(default_factory=list)  # worth knowing, not an error
    collector: dict[str, Any] | None = None  # the validation route's verdict, when asked

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
        headers = {str(h.get("name", "")).lower(): str(h.get("value", "")) for h in request.get("headers") or []}
        found.append(TrackingRequest(request.get("method", "GET"), url, body, headers))
    return found


@dataclass
class PageLoad:
    """How the page itself loaded: its main document's HTTP status, or the network error."""

    url: str
    status: int | None = None
    error: str = ""

    @property
    def loaded(self) -> bool:
        return not self.error and self.status is not None and self.status < 400

    def describe(self) -> str:
        if self.error:
            return f"page non chargée ({self.error})"
        if self.status is None:
            return "page non chargée (aucune réponse)"
        return f"page non chargée (HTTP {self.status})" if self.status >= 400 else f"page chargée (HTTP {self.status})"


class Browser:
    """Headless Chromium (Selenium, the system's chromium and chromedriver) with a DevTools
    connection of our own (websocket-client, Selenium's dependency) that intercepts the page's
    requests to matomo.php / piwik.php (`Fetch` domain) and answers them itself: they are kept for
    the check and never reach the tracking endpoint. Reusable: one browser, many pages."""

    def __init__(self) -> None:
        try:
            import websocket
            from selenium import webdriver
            from selenium.common.exceptions import WebDriverException
            from selenium.webdriver.chrome.service import Service
        except ImportError as exc:  # an optional dependency (the dev extra): HAR files need none
            raise BrowserError(f"loading a URL needs selenium ({exc})") from exc

        os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
        self._profile = tempfile.mkdtemp(prefix="dnma-tag-check-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        try:
            self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        except WebDriverException as exc:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserError(_first_line(exc)) from exc
        self._lock = threading.Lock()
        self._next_id = 0
        self._requests: list[TrackingRequest] = []
        self._load: PageLoad | None = None
        self._document: str = ""  # requestId of the page's main document, once seen
        try:
            # The browser a real user has: a "HeadlessChrome" User-Agent would be judged a robot.
            agent = self.driver.execute_cdp_cmd("Browser.getVersion", {})["userAgent"]
            self.driver.execute_cdp_cmd("Network.setUserAgentOverride",
                                        {"userAgent": agent.replace("HeadlessChrome", "Chrome")})
            address = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
            with urlopen(f"http://{address}/json", timeout=10) as answer:
                targets = json.loads(answer.read())
            page = next(t for t in targets if t.get("type") == "page")
            self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        except (WebDriverException, OSError, KeyError, StopIteration, ValueError,
                websocket.WebSocketException) as exc:
            self.close()
            raise BrowserError(f"DevTools connection failed: {_first_line(exc)}") from exc
        self._reader = threading.Thread(target=self._read_events, name="tag-check-devtools", daemon=True)
        self._reader.start()
        self._send("Network.enable")
        self._intercept_in("")

    def _intercept_in(self, session: str) -> None:
        """Intercept the tracking requests of the page (`session` "") or of a target attached to it
        (a cross-origin iframe in its own process, a worker): each is paused until it is set up, so
        none of its requests slips through to the tracking endpoint."""
        self._send("Fetch.enable", {"patterns": FETCH_PATTERNS}, session)
        self._send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
                   session)
        if session:
            self._send("Runtime.runIfWaitingForDebugger", {}, session)

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> None:
        message: dict[str, Any] = {"method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        with self._lock:
            self._next_id += 1
            message["id"] = self._next_id
            self._ws.send(json.dumps(message))

    def _read_events(self) -> None:
        """DevTools events, on this thread until the connection closes: each paused tracking request
        is kept and answered as the collector would (a GIF for an image, 204 otherwise)."""
        while True:
            try:
                message = json.loads(self._ws.recv())
            except Exception:  # closed (quit) or broken: nothing more to intercept
                return
            method, params = message.get("method"), message.get("params") or {}
            session = str(message.get("sessionId") or "")
            try:
                if method == "Fetch.requestPaused":
                    self._intercept(params, session)
                elif method == "Target.attachedToTarget":
                    self._intercept_in(str(params["sessionId"]))
                elif session:  # the page's own events only, below
                    continue
                elif method == "Network.responseReceived" and params.get("type") == "Document":
                    with self._lock:
                        if self._load is not None and self._load.status is None and not self._load.error:
                            self._load.status = int(params["response"]["status"])
                            self._document = params.get("requestId", "")
                elif method == "Network.loadingFailed" and params.get("type") == "Document":
                    with self._lock:
                        if self._load is not None and self._load.status is None and not self._load.error:
                            self._load.error = str(params.get("errorText") or "échec du chargement")
            except Exception as exc:  # one odd event must not stop the interception
                log.warning("tag_check_devtools_event: %s", _first_line(exc))

    def _intercept(self, params: dict[str, Any], session: str) -> None:
        request = params["request"]
        url = request.get("url", "")
        if not TRACKING_URL.search(url):  # matched the pattern, not a tracking request
            self._send("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
            return
        body = request.get("postData") or ""
        if not body and request.get("postDataEntries"):
            body = b"".join(base64.b64decode(e.get("bytes", "")) for e in request["postDataEntries"]).decode(
                "utf-8", errors="replace")
        headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
        method = request.get("method", "GET")
        with self._lock:
            self._requests.append(TrackingRequest(method, url, body, headers))
        origin = headers.get("origin") or "*"
        answer: dict[str, Any] = {"requestId": params["requestId"], "responseHeaders": [
            {"name": "Access-Control-Allow-Origin", "value": origin},
            {"name": "Access-Control-Allow-Credentials", "value": "true"},
            {"name": "Cache-Control", "value": "no-store"},
        ]}
        if method == "GET":
            answer["responseCode"] = 200
            answer["responseHeaders"].append({"name": "Content-Type", "value": "image/gif"})
            answer["body"] = GIF_B64
        else:
            answer["responseCode"] = 204
        self._send("Fetch.fulfillRequest", answer, session)

    def capture(self, url: str, wait: float) -> tuple[PageLoad, list[TrackingRequest]]:
        """Load the page, wait, hide it, and return how it loaded and its tracking requests."""
        from selenium.common.exceptions import WebDriverException

        load = PageLoad(url)
        with self._lock:
            self._requests = []
            self._load = load
        try:
            self.driver.set_page_load_timeout(max(30.0, wait * 2))
            try:
                self.driver.get(url)
            except WebDriverException as exc:  # a network error page: the load event says why
                if not load.error and load.status is None:
                    load.error = _first_line(exc)
            # The document's response reaches our DevTools connection on its own thread: it may
            # trail the load event that ended driver.get.
            deadline = time.monotonic() + DOCUMENT_EVENT_WAIT_S
            while load.status is None and not load.error and time.monotonic() < deadline:
                time.sleep(0.02)
            if load.loaded:
                time.sleep(wait)
                try:
                    self.driver.execute_script(HIDE_PAGE_JS)
                except WebDriverException as exc:
                    # The tags send their queue on pagehide: without it some hits may be missing.
                    log.warning("tag_check_hide_page_failed: %s", _first_line(exc))
                time.sleep(1.0)  # the tags' own flush delays
            with self._lock:
                requests, self._requests, self._load = self._requests, [], None
            # Leave the page: its timers (heartbeats) must not send into the next capture.
            self.driver.get("about:blank")
        except WebDriverException as exc:
            raise BrowserError(_first_line(exc)) from exc
        return load, requests

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        with contextlib.suppress(Exception):
            self.driver.quit()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def capture_url(url: str, wait: float) -> tuple[PageLoad, list[TrackingRequest]]:
    """Load one page in a browser of its own (see Browser)."""
    with Browser() as browser:
        return browser.capture(url, wait)


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc)
    return f"{type(exc).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"


# --- the collector's verdict (validation route) ----------------------------------------------------


def validation_url(tracking_url: str, collector: str = "") -> str:
    """The validation route beside a tracking URL (…/matomo.php?q or …/piwik.php?q →
    …/matomo.php/validate?q), or under `collector` (a base URL) when given."""
    parts = urlsplit(tracking_url)
    if collector:
        base = urlsplit(collector.rstrip("/") + "/")
        scheme, netloc, prefix = base.scheme, base.netloc, base.path
    else:
        scheme, netloc, prefix = parts.scheme, parts.netloc, parts.path.rstrip("/").rsplit("/", 1)[0] + "/"
    return urlunsplit((scheme, netloc, prefix + VALIDATE_PATH, parts.query, ""))


def validate_requests(requests: list[TrackingRequest], token: str, collector: str = "",
                      timeout: float = 15.0) -> list[dict[str, Any] | None]:
    """Each request sent to the collector's validation route (nothing is stored there); the verdicts
    of its hits, in order, as one flat list aligned with `check_requests`' reports (None where the
    collector gave none)."""
    import httpx

    verdicts: list[dict[str, Any] | None] = []
    with httpx.Client(timeout=timeout) as http:
        for request in requests:
            expected = len(hits_of(request))
            if not expected:
                continue
            headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
            headers["authorization"] = f"Bearer {token}"
            url = validation_url(request.url, collector)
            try:
                if request.method.upper() == "POST":
                    answer = http.post(url, content=request.body.encode(), headers=headers)
                else:
                    answer = http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                raise ValidationError(f"{url.split('?')[0]}: {type(exc).__name__}: {exc}") from exc
            if answer.status_code in (401, 403):
                raise ValidationError(f"{url.split('?')[0]}: HTTP {answer.status_code}: {_message(answer)}")
            hits: list[Any] = []
            if answer.status_code == 200:
                try:
                    hits = list(answer.json().get("hits") or [])
                except ValueError:
                    hits = []
            else:
                log.warning("tag_check_validation_status: HTTP %s", answer.status_code)
            hits = (hits + [None] * expected)[:expected]
            verdicts.extend(h if isinstance(h, dict) else None for h in hits)
    return verdicts


def _message(answer: Any) -> str:
    try:
        return str(answer.json().get("message", ""))[:200]
    except ValueError:
        return answer.text[:200].strip()


# Each collector flag, the property it is about and the status it gives that property here.
FLAG_STATUS = {
    "missing_uai": ("UAI", MISSING), "invalid_uai": ("UAI", INVALID), "outside_perimeter": ("UAI", OUTSIDE),
    "missing_service": ("SERVICE", MISSING), "unknown_service": ("SERVICE", UNKNOWN),
    "missing_type": ("TYPE", MISSING), "unknown_type": ("TYPE", UNKNOWN),
    "missing_profil": ("PROFIL", MISSING), "unknown_profil": ("PROFIL", UNKNOWN),
    "tiers_without_outil": ("OUTIL", MISSING),
}


def apply_verdict(report: HitReport, verdict: dict[str, Any] | None) -> None:
    """The collector's verdict on the hit (the site's own mapping, perimeter and rules) added to the
    local checks: a refusal is a problem; a flag the local check missed (a UAI outside the site's
    perimeter…) turns that property into an error."""
    report.collector = verdict
    if verdict is None:
        return
    kind = verdict.get("verdict")
    if kind == "forbidden":
        report.problems.append(str(verdict.get("verdict_label") or "jeton sans accès à ce site"))
    elif kind == "refused":
        detail = f" : {verdict['detail']}" if verdict.get("detail") else ""
        report.problems.append(
            f"refusé par le collecteur ({verdict.get('reason')}) : {verdict.get('reason_label', '')}{detail}")
    elif kind == "excluded":
        report.notes.append(f"exclu par le collecteur, non stocké : {verdict.get('reason_label') or verdict.get('reason')}")
    checks = {c.prop: c for c in report.checks}
    for flag in verdict.get("flags") or []:
        prop, status = FLAG_STATUS.get(str(flag.get("code")), ("", ""))
        check = checks.get(prop)
        if check is not None and check.status not in ERRORS:
            check.status = status
            check.message = str(flag.get("label") or flag.get("code"))


# --- the referential (when this DNMA's storage is at hand) -----------------------------------------


def check_referential(reports: list[HitReport], known: set[str]) -> None:
    """A valid UAI absent from the annuaire (`known`: the UAIs of the referential that were asked)."""
    for report in reports:
        for check in report.checks:
            if check.prop == "UAI" and check.status == OK and uai_rules.normalise(check.value) not in known:
                check.status = UNKNOWN
                check.message = "UAI absent du référentiel (annuaire de l'éducation)"


def referential_uais(uais: set[str]) -> set[str] | None:
    """Those of `uais` in the referential of this machine's DNMA (the running loader's read-only
    endpoint, else the storage); None when it cannot be read or holds no establishment."""
    from dnma.admin import read_client
    from dnma.settings import get_settings

    settings = get_settings()
    if settings.embedded and not (settings.data_dir / "clickhouse").is_dir():
        return None  # no DNMA storage on this machine: never create one by looking
    try:
        client = read_client(settings)
        try:
            table = f"{settings.clickhouse_database}.etablissements"
            if not client.query(f"SELECT count() FROM {table}").result_rows[0][0]:
                return None
            rows = client.query(f"SELECT uai FROM {table} WHERE uai IN {{uais:Array(String)}}",
                                parameters={"uais": sorted(uais)}).result_rows
        finally:
            client.close()
    except Exception as exc:  # no storage, no table, endpoint down: said, not fatal
        log.warning("tag_check_referential_unavailable: %s", _first_line(exc))
        return None
    return {str(r[0]) for r in rows}


# --- output --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything one run found: how the page loaded (a URL), its requests, the hits' reports, and
    what was (not) asked of the collector and of the referential."""

    source: str
    requests: list[TrackingRequest]
    reports: list[HitReport]
    load: PageLoad | None = None
    validated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.load is None or self.load.loaded) and bool(self.reports) and all(r.ok for r in self.reports)

    def exit_status(self) -> int:
        if self.load is not None and not self.load.loaded:
            return EXIT_NOT_LOADED
        if not self.reports:
            return EXIT_NOTHING
        return EXIT_OK if self.ok else EXIT_PLAN_NOT_MET


def render_text(outcome: Outcome) -> str:
    from collector.debug import ACTION_LABELS

    lines = [f"dnma tag-check {outcome.source}"]
    if outcome.load is not None:
        described = outcome.load.describe()
        lines.append(described[:1].upper() + described[1:])
    lines += [f"{len(outcome.requests)} requête(s) de suivi, {len(outcome.reports)} hit(s)", *outcome.notes, ""]
    for r in outcome.reports:
        lines.append(f"Hit {r.index} : {ACTION_LABELS.get(r.action, r.action)} — {r.url} [{r.method}]")
        if r.collector is not None:
            lines.append(f"  {'COLLECTEUR':<11} {r.collector.get('verdict_label', '')}")
        for problem in r.problems:
            lines.append(f"  {'INVALIDE':<11} {problem}")
        for note in r.notes:
            lines.append(f"  {'ATTENTION':<11} {note}")
        for c in r.checks:
            value = c.value or "—"
            note = f"  {c.message}" if c.message else ""
            lines.append(f"  {STATUS_LABELS[c.status]:<11} {c.prop:<10} {c.slot:<11} {value}{note}")
        lines.append("")
    failed = [r for r in outcome.reports if not r.ok]
    if outcome.load is not None and not outcome.load.loaded:
        lines.append(f"Résultat : {outcome.load.describe()} : rien à vérifier sur cette page.")
    elif not outcome.reports:
        lines.append("Résultat : aucune requête de suivi vers matomo.php / piwik.php trouvée.")
    elif failed:
        lines.append(
            f"Résultat : plan de marquage NON respecté ({len(failed)} hit(s) sur {len(outcome.reports)} en erreur)."
        )
        lines.append(f"Règles et valeurs admises : {guide.GUIDE} (guide de marquage, dans le dépôt DNMA).")
    else:
        lines.append(f"Résultat : plan de marquage respecté ({len(outcome.reports)} hit(s)).")
    return "\n".join(lines) + "\n"


def render_json(outcome: Outcome) -> str:
    page = None
    if outcome.load is not None:
        page = {**asdict(outcome.load), "loaded": outcome.load.loaded}
    doc = {
        "source": outcome.source,
        "page": page,
        "requests": len(outcome.requests),
        "validated": outcome.validated,  # the collector's verdict was asked (nothing stored)
        "notes": outcome.notes,
        "ok": outcome.ok,
        "hits": [{**asdict(r), "ok": r.ok} for r in outcome.reports],
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
    parser.add_argument(
        "--token-file", type=Path, default=None,
        help=f"a file holding the site's token: the hits are judged by the collector's validation route "
             f"(nothing stored). Default: the {TOKEN_ENV} environment variable; without a token, local checks only",
    )
    parser.add_argument(
        "--collector", default="",
        help="base URL of the collector to validate with (default: the page's own tracking URL)",
    )
    parser.add_argument(
        "--referentiel", action="store_true",
        help="also look the UAIs up in this machine's DNMA referential (annuaire de l'éducation)",
    )


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    return os.environ.get(TOKEN_ENV, "").strip()


def check(target: str, args: argparse.Namespace, browser: Browser | None = None) -> Outcome:
    """One run of the command: capture (or read), check, validate; `browser` is reused when given.
    Raises OSError, ValueError, BrowserError, ValidationError for what stops it."""
    mapping = _mapping(args.dimension)
    token = _token(args)
    load: PageLoad | None = None
    if re.match(r"^https?://", target, re.I):
        if browser is not None:
            load, requests = browser.capture(target, args.wait)
        else:
            load, requests = capture_url(target, args.wait)
    else:
        requests = read_har(Path(target))
    reports = check_requests(requests, mapping)
    outcome = Outcome(target, requests, reports, load)
    if reports and token:
        verdicts = validate_requests(requests, token, args.collector)
        for report, verdict in zip(reports, verdicts, strict=True):
            apply_verdict(report, verdict)
        outcome.validated = True
    elif reports:
        outcome.notes.append(f"Verdict du collecteur non demandé (pas de jeton : {TOKEN_ENV} ou --token-file) : "
                             "périmètre du site non vérifié.")
    if reports and args.referentiel:
        uais = {uai_rules.normalise(c.value) for r in reports for c in r.checks if c.prop == "UAI" and c.status == OK}
        known = referential_uais(uais) if uais else set()
        if known is None:
            outcome.notes.append("Référentiel non consulté (stockage DNMA local illisible ou vide).")
        else:
            check_referential(reports, known)
    return outcome


def run(args: argparse.Namespace) -> int:
    target: str = args.target
    try:
        outcome = check(target, args)
    except (OSError, ValueError, BrowserError, ValidationError) as exc:
        print(f"dnma tag-check: {target}: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    render = render_json if args.json else render_text
    sys.stdout.write(render(outcome))
    return outcome.exit_status()
