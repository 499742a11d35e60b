"""The collector's slow paths on FastAPI: /metrics, the tracker script, and the Matomo
`module=API` surface: a table of method name → handler, the sites methods of this module plus those
handed to `create_api` (the reporting API's, wired by the command line; see collector/app.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector import guide_routes
from collector.matomo_render import Rendered, format_error, render, render_error
from collector.protocol import MAX_BODY_BYTES, request_params
from dnma.access import Access, Grant, bearer
from dnma.datatable import Scalar, to_json
from dnma.params import as_int
from dnma.settings import REPO_ROOT, Settings
from dnma.sites import Site, SiteRegistry

if TYPE_CHECKING:
    from collector.app import Collector
    from collector.metrics import Tally


log = logging.getLogger("dnma.collector")

# HTTP statuses of Matomo's errors (core/API/ResponseBuilder.php): a bad parameter is answered 200
# with the error document; a refused access (NoAccessException) 401, an unknown method 400.
BAD_INPUT, NO_ACCESS, UNKNOWN_METHOD = 200, 401, 400


class ApiError(Exception):
    """Answered as Matomo does: `{"result":"error","message":...}`, with Matomo's HTTP status."""

    def __init__(self, message: str, status: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.status = status


def unknown_method(method: str) -> ApiError:
    return ApiError(f"The method '{method[:80]}' does not exist or is not available in the module", UNKNOWN_METHOD)


@dataclass
class ApiRequest:
    """One API call: its parameters, and what its token (`token_auth`, else the Bearer header)
    may do according to `access`."""

    params: dict[str, str]
    access: Access
    settings: Settings
    bearer: str = ""  # the token of an `Authorization: Bearer` header

    @property
    def sites(self) -> SiteRegistry:
        return self.access.sites

    @property
    def token(self) -> str:
        return self.params.get("token_auth") or self.bearer

    @cached_property
    def grant(self) -> Grant | None:
        return self.access.grant(self.token)

    def is_super_user(self) -> bool:
        grant = self.grant
        return grant is not None and grant.is_super_user

    def can_view(self, site: Site) -> bool:
        grant = self.grant
        return grant is not None and grant.may_view(site.id)

    def int_param(self, name: str) -> int:
        value = as_int(self.params.get(name, "").strip(), signed=True)
        if value is None:
            raise ApiError(f"Parameter '{name}' missing or not an integer")
        return value


ApiHandler = Callable[[ApiRequest], Any]

_NO_ACCESS = "You can't access this resource as it requires 'view' access for the website id = {}."


def get_site_from_id(req: ApiRequest) -> Any:
    site_id = req.int_param("idSite")
    site = req.sites.get(site_id)
    if site is None or not req.can_view(site):
        # Same message for an unknown site: a token must not learn which ids exist.
        raise ApiError(_NO_ACCESS.format(site_id), NO_ACCESS)
    return site.as_matomo(super_user=req.is_super_user())


def _viewable(req: ApiRequest) -> list[Site]:
    """The sites the request's token may read, by id (dnma.access); none without a token."""
    sites = [s for s in req.sites.all() if req.can_view(s)]
    limit = as_int(req.params.get("limit", "").strip())
    return sites[:limit] if limit else sites  # Matomo's `limit`: 0 or absent is every site


def get_sites_with_at_least_view_access(req: ApiRequest) -> Any:
    super_user = req.is_super_user()
    return [s.as_matomo(super_user=super_user) for s in _viewable(req)]


def get_sites_id_with_at_least_view_access(req: ApiRequest) -> Any:
    return [str(s.id) for s in req.sites.all() if req.can_view(s)]  # strings, as Matomo's database gives them


def get_all_sites(req: ApiRequest) -> Any:
    """Matomo's getAllSites: the super user's only, keyed by site id."""
    if not req.is_super_user():
        raise ApiError("You can't access this resource as it requires a 'superuser' access.", NO_ACCESS)
    return {str(s.id): s.as_matomo(super_user=True) for s in req.sites.all()}


def get_sites_id_from_site_url(req: ApiRequest) -> Any:
    url = req.params.get("url", "")
    if not url:
        raise ApiError("Parameter 'url' missing")
    ids = req.sites.find_by_url(url)
    visible = [i for i in ids if (site := req.sites.get(i)) is not None and req.can_view(site)]
    if ids and not visible and not req.token:
        raise ApiError("You must be logged in to access this functionality.", NO_ACCESS)
    return [{"idsite": i} for i in visible]


def get_matomo_version(req: ApiRequest) -> Any:
    return Scalar("5.0.0")  # what Matomo clients check for compatibility; we speak the 5.x protocol


SITE_METHODS: dict[str, ApiHandler] = {
    "SitesManager.getSiteFromId": get_site_from_id,
    "SitesManager.getSitesWithAtLeastViewAccess": get_sites_with_at_least_view_access,
    "SitesManager.getSitesIdWithAtLeastViewAccess": get_sites_id_with_at_least_view_access,
    "SitesManager.getAllSites": get_all_sites,
    "SitesManager.getSitesIdFromSiteUrl": get_sites_id_from_site_url,
    "API.getMatomoVersion": get_matomo_version,
}


def bulk_request(methods: Mapping[str, ApiHandler]) -> ApiHandler:
    """API.getBulkRequest over `methods`: urls[0]=<urlencoded query>, urls[1]=...; each answered in
    order, an error never sinks the others (an unexpected failure of one is logged and answered as
    its error). The bulk request's token applies to every sub-request that does not carry its own."""

    def get_bulk_request(req: ApiRequest) -> list[Any]:
        indexed = []
        for key, value in req.params.items():
            if key.startswith("urls[") and key.endswith("]") and (index := as_int(key[5:-1])) is not None:
                indexed.append((index, value))
        if not indexed:
            raise ApiError("Parameter 'urls' missing (urls[0]=method%3D...)")
        out: list[Any] = []
        for _, query in sorted(indexed):
            sub = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
            if req.token and "token_auth" not in sub:
                sub["token_auth"] = req.token
            method = sub.get("method", "")
            handler = methods.get(method)
            try:
                if handler is None:
                    raise unknown_method(method)
                # Matomo answers each item as its JSON decoded (API.getBulkRequest).
                out.append(to_json(handler(ApiRequest(sub, req.access, req.settings))))
            except ApiError as exc:
                out.append({"result": "error", "message": str(exc)})
            except Exception:
                log.exception("API.getBulkRequest: sub-request %s failed", method[:80])
                out.append({"result": "error", "message": f"The request for '{method[:80]}' failed on the server."})
        return out

    return get_bulk_request


UNROUTED = "(unrouted)"  # the route label of a 5xx answered before a route matched


class ServerErrorCount:
    """ASGI middleware: every answer timed (`tally.observe`) and every 5xx answer counted in
    `tally.server_errors`, under its route's template (`/index.php`, not the raw path). An
    exception that escapes the app is a 5xx too: the ServerErrorMiddleware outside this one answers it 500."""

    def __init__(self, app: ASGIApp, tally: Tally) -> None:
        self.app = app
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        started = time.perf_counter()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            status = status or 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", UNROUTED)
            self.tally.observe(route, time.perf_counter() - started)
            # /readyz's 503 says "not ready" on purpose (collector.health): not a server error.
            if status >= 500 and route != "/readyz":
                self.tally.server_errors[route] += 1


def _rendered(answer: Rendered, status: int = 200) -> Response:
    return Response(answer.body, status_code=status, media_type=answer.media_type, headers=answer.headers)


TRACKER_SCRIPT = REPO_ROOT / "tagging-sdk" / "js" / "dist" / "dnma.iife.js"  # built by `make js`


def create_api(collector: Collector, methods: Mapping[str, ApiHandler], routers: Sequence[APIRouter]) -> FastAPI:
    """The slow paths of `collector`: `methods` are its Matomo API methods besides SITE_METHODS and
    API.getBulkRequest, `routers` its other surfaces (health, quality, debug)."""
    settings = collector.settings
    app = FastAPI(title="DNMA collector", docs_url=None, redoc_url=None, openapi_url=None)
    for router in routers:
        app.include_router(router)
    app.include_router(guide_routes.build_router())  # the tagging guide, which the debug view links to
    table: dict[str, ApiHandler] = {**SITE_METHODS, **methods}
    table["API.getBulkRequest"] = bulk_request(dict(table))  # a bulk request never nests another

    @app.get("/metrics")
    async def metrics() -> Response:
        from collector.metrics import render

        collector.tally.flush()
        payload, content_type = render(
            spool_dir=settings.resolved_spool_dir,
            spool_max_bytes=settings.spool_max_bytes,
            data_dir=settings.data_dir,
        )
        return Response(payload, media_type=content_type)

    @app.get("/dnma.js")
    @app.get("/matomo.js")
    @app.get("/piwik.js")
    async def tracker_script() -> Response:
        path = TRACKER_SCRIPT
        if not path.is_file():
            return PlainTextResponse("tracker script not built (tagging-sdk/js)\n", status_code=404)
        return FileResponse(path, media_type="application/javascript", headers={"Cache-Control": "public, max-age=3600"})

    async def matomo_api(request: Request) -> Response:
        # Matomo clients send token_auth in the body: it is read before the token is known, but
        # never past MAX_BODY_BYTES (a declared larger one is refused unread).
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return PlainTextResponse("request body larger than 1 MiB\n", status_code=413)
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return PlainTextResponse("request body larger than 1 MiB\n", status_code=413)
        except ClientDisconnect:  # cut mid-body (bad framing, body timeout): the client's doing, no one to answer
            return PlainTextResponse("client disconnected\n", status_code=400)
        params = request_params(request.scope.get("query_string", b""), body)
        if params.get("module") != "API":
            return PlainTextResponse("DNMA collector: the Matomo API needs module=API\n", status_code=400)
        method = params.get("method", "")
        req = ApiRequest(params, collector.access, settings, bearer(request.headers.get("authorization", "")))
        try:
            if (unrendered := format_error(params)) is not None:
                raise ApiError(unrendered)
            handler = table.get(method)
            if handler is None:
                raise unknown_method(method)
            # In a thread: reporting handlers wait on ClickHouse, tracking must not wait on them.
            result = await run_in_threadpool(handler, req)
        except ApiError as exc:
            # The caller's error, counted as such (never among the 5xx).
            collector.tally.responses[("api_error", exc.status)] += 1
            return _rendered(render_error(str(exc), params), exc.status)
        collector.tally.responses[("api", 200)] += 1
        return _rendered(render(result, params))

    for path in ("/", "/index.php"):
        app.add_api_route(path, matomo_api, methods=["GET", "POST"])
    app.add_middleware(ServerErrorCount, tally=collector.tally)
    # Every route and its methods, for the 5xx counter and the listeners' test; the included
    # routers' routes are theirs (FastAPI does not list them in app.routes).
    listed: dict[str, set[str]] = {}
    for route in [*app.routes, *(r for router in routers for r in router.routes)]:
        if isinstance(route, APIRoute):
            listed.setdefault(route.path, set()).update(route.methods or ())
            collector.tally.routes.add(route.path)
    collector.tally.routes.add(UNROUTED)
    app.state.routes = listed
    app.state.api_methods = sorted(table)
    return app
