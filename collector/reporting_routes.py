"""The reporting API's Matomo methods (VisitsSummary.get, CustomDimensions, Events, Actions) as
collector API handlers: the HTTP side (tokens, site ids, "today", errors) of the queries that the
aggregator owns (aggregator.reporting), handed in as a `ReportingBackend` by the command line so
that the collector never imports the aggregator. They read ClickHouse through the read-only
endpoint."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from datetime import date
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from collector.api import NO_ACCESS, ApiError, ApiHandler, ApiRequest
from dnma import clock
from dnma.datatable import Map, Scalar, Simple, Table
from dnma.params import as_int
from dnma.settings import Settings


class ReportingBackend(Protocol):
    """What the reporting methods need of the queries' owner (aggregator.reporting satisfies it)."""

    @property
    def METHODS(self) -> Collection[str]: ...  # noqa: N802 - a module constant

    @property
    def ReportError(self) -> type[Exception]: ...  # noqa: N802 - a module's exception class

    def call(self, client: Any, method: str, params: Mapping[str, str], site_ids: tuple[int, ...], today: date,
             *, slots: Mapping[int, str] | None = None, database: str = "dnma",
             timezones: Mapping[int, str] | None = None, establishments: tuple[str, str] | None = None,
             active_weeks: int | None = None) -> Any: ...

    def per_person(self, method: str, params: Mapping[str, str]) -> bool: ...


_NO_ACCESS = "You can't access this resource as it requires 'view' access for the website id = {}."
_LOGIN = "You must be logged in to access this functionality (token_auth)."
_PER_PERSON_OFF = ("Per-person and campaign reports (Live.getLastVisitsDetails, UserId.getUsers, the userId "
                   "segment, Referrers.getCampaigns) are not enabled for the website id = {}: DNMA keeps them off "
                   "(CNIL consent exemption) unless the site turns them on (per_person_reports), and then "
                   "they are the super user's only.")
_SUPER_USER = "You can't access this resource as it requires a 'superuser' access."

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
    """idSite=N, N,M or all; every site must be viewable with the request's token (dnma.access:
    a site's token, a perimeter token whose perimeter overlaps the site, the super user). A
    perimeter token's establishment filter (`req.grant.establishments`) cuts the DNMA module's rows
    only, not yet the Matomo reports'."""
    if not req.token:
        raise ApiError(_LOGIN, NO_ACCESS)
    raw = req.params.get("idSite", req.params.get("idsite", "")).strip()
    if raw == "all":
        ids = tuple(s.id for s in req.sites.all() if req.can_view(s))
        if not ids:
            raise ApiError(_NO_ACCESS.format("all"), NO_ACCESS)
        return ids
    out = []
    for part in raw.split(","):
        part = part.strip()
        site_id = as_int(part)
        if site_id is None:
            raise ApiError("Parameter 'idSite' missing or not an integer (N, N,M or all)")
        site = req.sites.get(site_id)
        if site is None or not req.can_view(site):
            # Same message for an unknown site: a token must not learn which ids exist.
            raise ApiError(_NO_ACCESS.format(part[:20]), NO_ACCESS)
        out.append(site.id)
    return tuple(out)


# How Matomo's renderers see each method's answer (dnma/datatable.py): one row of values for these,
# rows for the others; row keys that are Matomo row metadata (CSV heads them `metadata_<name>`).
_SIMPLE = frozenset({"VisitsSummary.get", "MultiSites.getOne", "VisitFrequency.get"})
_ROW_METADATA = {"Actions.getPageUrls": ("url",)}


def typed(method: str, value: Any) -> Any:
    """A report's JSON-shaped answer (one period's, or several keyed by period label) as the
    Matomo shape it stands for."""
    if isinstance(value, Map | Simple | Table | Scalar):
        return value
    if isinstance(value, dict):
        keyed = method not in _SIMPLE or any(isinstance(v, list | dict) for v in value.values())
        if keyed:
            return Map("date", {label: typed(method, v) for label, v in value.items()})
        return Simple(value)
    if isinstance(value, list):
        return Simple() if method in _SIMPLE else Table(value, _ROW_METADATA.get(method, ()))
    return value


def _viewable_ids(req: ApiRequest) -> tuple[int, ...]:
    """Every site the request's token may read; an error without a token or without any."""
    if not req.token:
        raise ApiError(_LOGIN, NO_ACCESS)
    ids = tuple(s.id for s in req.sites.all() if req.can_view(s))
    if not ids:
        raise ApiError(_NO_ACCESS.format("all"), NO_ACCESS)
    return ids


def _segments_metadata(backend: ReportingBackend, method: str, req: ApiRequest) -> Any:
    """API.getSegmentsMetadata: the segments of the first site of `idSites` (or `idSite`), else of
    the first site the token may read (a site's dimension slots name its `dimensionN`)."""
    raw = (req.params.get("idSites") or req.params.get("idSites[]") or req.params.get("idSite") or "").strip()
    if raw:
        ids = site_ids(ApiRequest({**req.params, "idSite": raw}, req.access, req.settings, req.bearer))
    else:
        ids = _viewable_ids(req)
    return _one_site(backend, method, req, ids[0])


def _all_sites(backend: ReportingBackend, method: str, req: ApiRequest) -> Any:
    """MultiSites.getAll: every site the token may read (Matomo ignores idSite), each row named
    by its site as Matomo's (label first; ratio, currency, group and main_url from the registry)."""
    ids = _viewable_ids(req)
    first = req.sites.get(ids[0])
    assert first is not None
    answer = _call(backend, method, req, ids, first)
    by_id = {s.id: s for s in req.sites.all()}

    def rows(found: Any) -> Table:
        out = []
        for row in found or []:
            site = by_id[row["idsite"]]
            named: dict[str, Any] = {"label": site.name}
            for key, value in row.items():
                named[key] = value
                if key == "idsite":
                    named |= {"ratio": 1, "currencySymbol": "€"}
            out.append(named | {"group": "", "main_url": site.main_url})
        return Table(out)

    if isinstance(answer, dict):
        return Map("date", {label: rows(found) for label, found in answer.items()})
    return rows(answer)


# Methods that read no single idSite: how each finds its sites.
_OWN_SITES = {"MultiSites.getAll": _all_sites, "API.getSegmentsMetadata": _segments_metadata}


def _report(backend: ReportingBackend, method: str) -> ApiHandler:
    def handler(req: ApiRequest) -> Any:
        if method in _OWN_SITES:
            return _OWN_SITES[method](backend, method, req)
        ids = tuple(dict.fromkeys(site_ids(req)))  # "1,1" is site 1 once
        raw = req.params.get("idSite", req.params.get("idsite", "")).strip()
        # Matomo keys the answer by site for idSite=all or more than one site (Archive::getResultIndices).
        if raw == "all" or len(ids) > 1:
            return Map("idSite", [(str(i), _one_site(backend, method, req, i)) for i in ids])
        return _one_site(backend, method, req, ids[0])

    handler.__name__ = method.replace(".", "_")
    return handler


def _one_site(backend: ReportingBackend, method: str, req: ApiRequest, site_id: int) -> Any:
    site = req.sites.get(site_id)
    assert site is not None  # site_ids checked it
    return typed(method, _call(backend, method, req, (site_id,), site))


def _call(backend: ReportingBackend, method: str, req: ApiRequest, ids: tuple[int, ...], site: Any) -> Any:
    """The backend's answer for `ids`, read with `site`'s today and dimension slots and each site's
    time zone; its errors as the API's."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    if backend.per_person(method, req.params):
        # Following a person or a campaign: the super user's, on sites that turn it on, never more.
        off = [i for i in ids if not getattr(req.sites.get(i), "per_person_reports", False)]
        if off:
            raise ApiError(_PER_PERSON_OFF.format(off[0]), NO_ACCESS)
        if not req.is_super_user():
            raise ApiError(_SUPER_USER, NO_ACCESS)
    grant = req.grant
    perimeter = grant.establishments if grant is not None else None
    # "today" is the site's today, as in Matomo.
    today: date = clock.today(ZoneInfo(site.timezone))
    try:
        answer = backend.call(
            _client(req.settings),
            method,
            req.params,
            ids,
            today,
            slots=site.dimensions,
            database=req.settings.clickhouse_database,
            # Each site's days and hours are in its own time zone (hits joined to its visits, VisitTime).
            timezones={i: found.timezone for i in ids if (found := req.sites.get(i)) is not None},
            # A perimeter token's establishments: the DNMA module's rows keep to them.
            establishments=None if perimeter is None else (perimeter.kind, perimeter.value),
            active_weeks=req.settings.active_school_weeks,  # DNMA.getDeploiement's "active", as the dashboards'
        )
    except backend.ReportError as exc:
        raise ApiError(str(exc)) from None
    except ClickHouseError as exc:
        _drop_client()  # the endpoint may have restarted: reconnect next time
        raise ApiError(f"reporting storage unavailable or query failed: {str(exc)[:300]}") from None
    except OSError as exc:
        _drop_client()
        raise ApiError(f"reporting storage unreachable: {exc}") from None
    return answer


def get_quarantine(req: ApiRequest) -> Any:
    """DNMA.getQuarantine: the refused requests kept (dnma/quarantine.py) of the sites the token may
    view: counts by site and reason, the latest `limit` (default 20, at most 500) and the evicted;
    `idSite` (one site) and `reason` narrow it. Unregistered site ids: the super user's only."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from dnma import quarantine

    if not req.token:
        raise ApiError(_LOGIN, NO_ACCESS)
    raw = req.params.get("idSite", req.params.get("idsite", "")).strip()
    site_id = None
    if raw and raw != "all":
        site_id = as_int(raw)
        if site_id is None or site_id <= 0:
            raise ApiError("Parameter 'idSite' must be a site id or all")
        site = req.sites.get(site_id)
        if not req.is_super_user() and (site is None or not req.can_view(site)):
            raise ApiError(_NO_ACCESS.format(raw[:20]), NO_ACCESS)
    viewable = None if req.is_super_user() else _viewable_ids(req)
    limit = as_int(req.params.get("limit", "20").strip() or "20")
    if limit is None or not 0 <= limit <= 500:
        raise ApiError("Parameter 'limit' must be an integer from 0 to 500")
    flt = quarantine.Filter(site_id, req.params.get("reason", "").strip() or None, viewable)
    try:
        return quarantine.listing(_client(req.settings), req.settings.clickhouse_database, flt, limit)
    except ClickHouseError as exc:
        _drop_client()
        raise ApiError(f"reporting storage unavailable or query failed: {str(exc)[:300]}") from None
    except OSError as exc:
        _drop_client()
        raise ApiError(f"reporting storage unreachable: {exc}") from None


def report_methods(backend: ReportingBackend) -> dict[str, ApiHandler]:
    """One API handler per reporting method of `backend`, and DNMA.getQuarantine."""
    return {**{method: _report(backend, method) for method in backend.METHODS}, "DNMA.getQuarantine": get_quarantine}
