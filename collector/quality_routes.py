"""The ops surface of the quality checks in the collector: GET /api/quality/alerts (super-user
token: every alert; a site or perimeter token: the alerts of the sites it may view, dnma.access)
and the gauges of quality_status.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Query

from dnma.access import Access, request_token
from dnma.settings import Settings

_COLUMNS = (
    "check",
    "scope_kind",
    "scope_value",
    "window",
    "severity",
    "observed",
    "expected",
    "window_start",
    "window_end",
    "first_seen",
    "last_seen",
    "status",
    "message",
    "details",
)


def build_router(
    settings: Settings, client_factory: Callable[[], Any] | None = None, *, access: Access | None = None
) -> APIRouter:
    """`client_factory` defaults to the read-only client (the loader's endpoint in embedded mode);
    `access` to a registry of its own over `settings`' files."""
    router = APIRouter(tags=["quality"])
    clients: list[Any] = []
    registry = access or Access(settings)

    def client() -> Any:
        if not clients:  # created on first use: the loader may start after the collector
            from dnma.chclient import get_reader_client

            clients.append(client_factory() if client_factory else get_reader_client(settings))
        return clients[0]

    def viewable_sites(token: str) -> list[str] | None:
        """None for the super user (every alert), the ids of the sites the token may view; 401 for
        no token or an unknown one."""
        grant = registry.grant(token)
        if grant is None:
            raise HTTPException(status_code=401, detail="token_auth invalide")
        if grant.is_super_user:
            return None
        return [str(s.id) for s in registry.sites.all() if grant.may_view(s.id)]

    @router.get("/api/quality/alerts")
    def alerts(
        token_auth: str = Query(default=""),
        status: str = Query(default="open", pattern="^(open|resolved|all)$"),
        check: str = Query(default="", max_length=100),  # a check's name; a longer one is a client error (422)
        authorization: str = Header(default=""),
    ) -> dict[str, Any]:
        site_ids = viewable_sites(request_token(token_auth, authorization))
        if site_ids == []:
            return {"count": 0, "alerts": []}
        where = ["1"]
        params: dict[str, Any] = {}
        if status != "all":
            where.append("status = {status:String}")
            params["status"] = status
        if check:
            where.append("`check` = {check:String}")
            params["check"] = check
        if site_ids is not None:
            where.append("scope_kind = 'site' AND has({sites:Array(String)}, scope_value)")
            params["sites"] = site_ids
        cols = ", ".join(
            f"toString(`{c}`)" if c.startswith(("window_", "first_", "last_")) else f"`{c}`" for c in _COLUMNS
        )
        rows = (
            client()
            .query(
                f"SELECT {cols} FROM {settings.clickhouse_database}.quality_alerts_current WHERE {' AND '.join(where)} "
                "ORDER BY severity = 'critical' DESC, last_seen DESC, `check`, scope_value LIMIT 1000",
                parameters=params,
            )
            .result_rows
        )
        out = []
        for row in rows:
            item = dict(zip(_COLUMNS, row, strict=True))
            item["details"] = json.loads(item["details"] or "{}")
            out.append(item)
        return {"count": len(out), "alerts": out}

    return router


class QualityGauges:
    """A prometheus_client collector for the collector's /metrics: `REGISTRY.register(QualityGauges(dir))`
    or add it to the gauges registry of collector/metrics.render."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "quality_status.json"

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        open_alerts = GaugeMetricFamily(
            "dnma_quality_open_alerts", "Open quality alerts", labels=["check", "severity"]
        )
        counts = {(o["check"], o["severity"]): o["open"] for o in doc.get("open", [])}
        for check in doc.get("checks", []):
            for severity in ("info", "warning", "critical"):
                open_alerts.add_metric([check, severity], float(counts.pop((check, severity), 0)))
        for (check, severity), n in counts.items():
            open_alerts.add_metric([check, severity], float(n))
        yield open_alerts
        last = GaugeMetricFamily(
            "dnma_quality_last_run_timestamp", "Last run of each check (unix s)", labels=["check"]
        )
        failed = GaugeMetricFamily(
            "dnma_quality_check_failed", "1 when the check's last run failed", labels=["check"]
        )
        for check, run in sorted(doc.get("runs", {}).items()):
            last.add_metric([check], float(run.get("ran_at", 0)))
            failed.add_metric([check], 0.0 if run.get("ok", True) else 1.0)
        yield last
        yield failed
