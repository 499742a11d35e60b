"""The reporting API's Matomo methods (VisitsSummary.get, CustomDimensions, Events, Actions,
API.getBulkRequest) registered in the collector's API registry; they read ClickHouse read-only."""

from __future__ import annotations

import threading
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from collector.api import API_METHODS, ApiError, ApiRequest, api_method
from dnma.settings import Settings

_NO_ACCESS = "You can't access this resource as it requires 'view' access for the website id = {}."
_LOGIN = "You must be logged in to access this functionality (token_auth)."

# One reader client per process, created on first use: the collector must start (and track)
# even while the loader's endpoint is down, and never opens chDB itself.
_reader: Any = None
_reader_lock = threading.Lock()


def _client(settings: Settings) -> Any:
    global _reader
    with _reader_lock:
        if _reader is None:
            from dnma.chclient import get_reader_client

            _reader = get_reader_client(settings)
        return _reader


def _drop_client() -> None:
    global _reader
    with _reader_lock:
        _reader = None


def site_ids(req: ApiRequest) -> tuple[int, ...]:
    """idSite=N, N,M or all; every site must be viewable with the request's token."""
    if not req.token:
        raise ApiError(_LOGIN)
    raw = req.params.get("idSite", req.params.get("idsite", "")).strip()
    if raw == "all":
        ids = tuple(s.id for s in req.sites.all() if req.can_view(s))
        if not ids:
            raise ApiError(_NO_ACCESS.format("all"))
        return ids
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ApiError("Parameter 'idSite' missing or not an integer (N, N,M or all)")
        site = req.sites.get(int(part))
        if site is None or not req.can_view(site):
            # Same message for an unknown site: a token must not learn which ids exist.
            raise ApiError(_NO_ACCESS.format(part))
        out.append(site.id)
    return tuple(out)


def _report(method: str) -> Any:
    def handler(req: ApiRequest) -> Any:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        from aggregator.reporting import ReportError, call

        ids = site_ids(req)
        first = req.sites.get(ids[0])
        assert first is not None  # site_ids checked it
        # "today" is the site's today, as in Matomo.
        today: date = datetime.now(ZoneInfo(first.timezone)).date()
        try:
            return call(
                _client(req.settings),
                method,
                req.params,
                ids,
                today,
                slots=first.dimensions,
                database=req.settings.clickhouse_database,
            )
        except ReportError as exc:
            raise ApiError(str(exc)) from None
        except ClickHouseError as exc:
            _drop_client()  # the endpoint may have restarted: reconnect next time
            raise ApiError(f"reporting storage unavailable or query failed: {str(exc)[:300]}") from None
        except OSError as exc:
            _drop_client()
            raise ApiError(f"reporting storage unreachable: {exc}") from None

    handler.__name__ = method.replace(".", "_")
    return handler


def _register() -> None:
    from aggregator.reporting import METHODS

    for method in METHODS:
        api_method(method)(_report(method))


@api_method("API.getBulkRequest")
def get_bulk_request(req: ApiRequest) -> list[Any]:
    """urls[0]=<urlencoded query>, urls[1]=...; each answered in order, an error never sinks the others.
    The bulk request's token applies to every sub-request that does not carry its own."""
    indexed = []
    for key, value in req.params.items():
        if key.startswith("urls[") and key.endswith("]") and key[5:-1].isdigit():
            indexed.append((int(key[5:-1]), value))
    if not indexed:
        raise ApiError("Parameter 'urls' missing (urls[0]=method%3D...)")
    out: list[Any] = []
    for _, query in sorted(indexed):
        sub = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
        if req.token and "token_auth" not in sub:
            sub["token_auth"] = req.token
        method = sub.get("method", "")
        handler = API_METHODS.get(method)
        try:
            if handler is None or method == "API.getBulkRequest":
                raise ApiError(f"The method '{method}' does not exist or is not available in the module")
            out.append(handler(ApiRequest(sub, req.sites, req.settings)))
        except ApiError as exc:
            out.append({"result": "error", "message": str(exc)})
    return out


_register()
