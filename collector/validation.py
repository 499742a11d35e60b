"""The validation route (GET/POST /matomo.php/validate): a tracking request,
single or bulk, run through the whole pipeline exactly as /matomo.php would run it, answered with
the verdict of each hit as JSON — and nothing stored: no spool write, no debug capture, no
counter of hits (the steps run on a context of their own whose tally is never flushed).

For `dnma tag-check` and editors' CI: checking a page must never add visits to the site's data.
The caller proves it may write the sites it checks (dnma.access: the site's token or the super
user's) with `Authorization: Bearer <token>` or the request's own `token_auth`, before any body
is read. The request is otherwise judged as sent: a Bearer token does not authenticate the hits
(their `cdt`, `cip`… are judged by the tokens they carry, as on the tracking route).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from collector import pipeline, steps
from collector.body import ClientGone, read_body
from collector.context import PipelineContext
from collector.debug import REASON_LABELS, REASON_RULE_DEFAULT, REASON_RULES, describe
from collector.hit import DropReason, Hit
from collector.metrics import Tally
from collector.protocol import (
    MAX_BODY_BYTES,
    MAX_URL_BYTES,
    ProtocolError,
    bulk_item,
    looks_like_bulk,
    parse_bulk_envelope,
    parse_qs,
    request_params,
)
from dnma import guide
from dnma.access import Grant, request_token

if TYPE_CHECKING:
    from collector.app import Collector, Receive, Scope, Send

VALIDATION_PATHS = frozenset({"/matomo.php/validate"})  # one path for both trackers' names

_CT_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
# Verdicts outside the pipeline's own (accepted, excluded, refused).
FORBIDDEN = "forbidden"  # the token may not write this hit's site: not judged
TRACKING_STATUS = {"accepted": 200, "excluded": 200, "refused": 400, FORBIDDEN: 0}

Answer = tuple[int, dict[str, Any]]


class Validator:
    """One per worker, beside the Collector whose sites, access and classifiers it reads."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        c = collector
        # Its own context: memos shared with nothing, a tally nobody flushes (the pipeline counts
        # its runs, drops and flags there, never in the collector's metrics).
        self.ctx = PipelineContext(
            sites=c.ctx.sites,
            access=c.access,
            honour_dnt_default=c.ctx.honour_dnt_default,
            ua=c.ua,
            pseudo=c.ctx.pseudo,
            tally=Tally(steps.STEP_NAMES),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        c = self.collector
        started = time.perf_counter()
        path: str = scope["path"]
        headers = dict(scope["headers"])
        try:
            status, doc = await self._answer(scope, receive, headers)
            body = orjson.dumps(doc)
            extra = [_CT_JSON]
        except ClientGone:
            return
        except Exception as exc:  # a bug costs one request, never the worker (logged with an id)
            c.tally.errors += 1
            status, extra, body = c._tracking_error(scope, headers, exc)
        c.tally.responses[("validation", status)] += 1
        c.tally.observe(path, time.perf_counter() - started)
        if status >= 500:
            c.tally.server_errors[path] += 1
        out = [_NO_STORE, *extra, (b"content-length", str(len(body)).encode())]
        if status == 405:
            out.append((b"allow", b"GET, POST"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]) -> Answer:
        c = self.collector
        method: str = scope["method"]
        if method not in ("GET", "HEAD", "POST"):
            return 405, _error("method not allowed: GET or POST")
        query: bytes = scope["query_string"]
        if len(query) + len(scope.get("raw_path") or b"") >= MAX_URL_BYTES:
            return 414, _error("request URL longer than 8 KiB")
        # Authentication first: nobody gets a body read (nor a pipeline run) without a token.
        own = parse_qs(query.decode("latin-1")).get("token_auth", "") if query else ""
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        token = request_token(own, authorization)
        if not token:
            return 401, _error("token_auth or Authorization: Bearer <token> required (the site's token)")
        grant = c.access.grant(token)
        if grant is None:
            return 401, _error("invalid token")
        if not grant.is_super_user and not grant.writes:
            return 403, _error("this token may not write any site (a site's token is needed)")
        body = b""
        if method == "POST":
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return 413, _error("request body larger than 1 MiB")
            read = await read_body(receive, MAX_BODY_BYTES)
            if read is None:
                return 413, _error("request body larger than 1 MiB")
            body = read
        now = time.time() + c.clock_offset
        ip = c._client_ip(scope, headers)
        if body and looks_like_bulk(body):
            try:
                bulk = parse_bulk_envelope(body)
            except ProtocolError as exc:
                return exc.status, _error(exc.reason)
            bulk.items = [bulk_item(item) for item in bulk.raw_items]
            bulk.raw_items = []
            if c.settings.bulk_requests_require_authentication and not c._bulk_authenticated(bulk):
                message = "bulk requests require a valid token_auth for every site (bulk_requests_require_authentication)"
                return 200, _summary([_refused_request(i, message) for i in range(len(bulk.items))], bulk=True)
            shared: dict[Any, Any] = {}
            items = [(i, Hit(p, ip, headers, bulk.token_auth, now, shared))
                     for i, p in enumerate(bulk.items) if p is not None]
            return 200, _summary(self._judge(items, grant), bulk=True)
        params = request_params(query, body)
        if not params:
            return 400, _error("nothing to validate: send a tracking request's parameters")
        return 200, _summary(self._judge([(0, Hit(params, ip, headers, "", now))], grant), bulk=False)

    def _judge(self, items: list[tuple[int, Hit]], grant: Grant) -> list[dict[str, Any]]:
        """Each hit's verdict; hits of a site the token may not write are not judged."""
        c = self.collector
        verdicts: dict[int, dict[str, Any]] = {}
        run: list[tuple[int, Hit]] = []
        for index, hit in items:
            site_id = steps.parse_int(hit.params.get("idsite"))
            site = c.access.sites.get(site_id) if site_id and site_id > 0 else None
            if site is not None and not grant.may_write(site.id):
                verdicts[index] = {
                    "index": index, "idsite": site.id, "verdict": FORBIDDEN,
                    "verdict_label": f"non vérifié : ce jeton n'a pas accès au site {site.id}",
                    "stored": False, "counted": False, "tracking_status": 0,
                }
            else:
                run.append((index, hit))
        if run:
            pipeline.run_batch([hit for _, hit in run], self.ctx)
        for index, hit in run:
            verdicts[index] = _verdict(index, hit, self.ctx)
        return [verdicts[i] for i, _ in items]


def _verdict(index: int, hit: Hit, ctx: PipelineContext) -> dict[str, Any]:
    reason = hit.reason
    if hit.site is not None:
        doc = describe(hit, reason, ctx)
        doc.pop("t", None)
    else:  # refused before its site was known (missing, invalid or unknown idsite)
        assert reason is not None
        doc = {
            "verdict": "refused",
            "verdict_label": "refusé (400)",
            "counted": False,
            "flags": [],
            "reason": reason.value,
            "reason_label": REASON_LABELS.get(reason, ""),
            "reason_rule": guide.link(REASON_RULES.get(reason, REASON_RULE_DEFAULT)),
            "detail": hit.detail,
        }
    verdict = doc["verdict"]
    head = {
        "index": index,
        "idsite": hit.site.id if hit.site is not None else None,
        "stored": verdict == "accepted",  # what /matomo.php would have stored (here: nothing is)
        # What /matomo.php would have answered (200 for an image, 204 with send_image=0).
        "tracking_status": TRACKING_STATUS[verdict],
    }
    return {**head, **doc}


def _refused_request(index: int, message: str) -> dict[str, Any]:
    return {
        "index": index, "idsite": None, "stored": False, "tracking_status": 400, "verdict": "refused",
        "verdict_label": "refusé (400)", "counted": False, "flags": [], "reason": str(DropReason.AUTH_REQUIRED),
        "reason_label": message, "reason_rule": guide.link(REASON_RULES[DropReason.AUTH_REQUIRED]), "detail": message,
    }


def _summary(hits: list[dict[str, Any]], *, bulk: bool) -> dict[str, Any]:
    counts = {v: sum(1 for h in hits if h["verdict"] == v) for v in ("accepted", "excluded", "refused", FORBIDDEN)}
    return {
        "status": "success",
        "stored": 0,  # the validation route never stores: `hits[].stored` says what tracking would
        "bulk": bulk,
        "hits": hits,
        "summary": {**counts, "counted": sum(1 for h in hits if h["counted"])},
    }


def _error(message: str) -> dict[str, Any]:
    return {"status": "error", "message": message}
