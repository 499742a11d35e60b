"""The collector's health routes, answered as JSON: /healthz (this worker is alive: 200 whenever
it answers) and /readyz (the stack behind it can take hits and serve reads: 200, else 503 naming
the checks that fail): collector started, spool writable and under its cap, loader running with
its lag under ready_loader_lag_max_s, the loader's read-only endpoint answering (embedded mode).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from dnma.settings import Settings

if TYPE_CHECKING:
    from collector.app import Collector

READYZ = "/readyz"
ENDPOINT_PING_TIMEOUT_S = 2.0


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def spool_check(collector: Collector) -> dict[str, Any]:
    """The spool is started, under its cap, and a file can be written in its directory now."""
    spool = collector.spool
    if spool is None:
        return {"ok": False, "detail": "spool writer not started"}
    if spool.is_full():
        return {"ok": False, "detail": "spool at its cap (spool_max_bytes)"}
    probe = Path(collector.settings.resolved_spool_dir) / f".readyz-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        return {"ok": False, "detail": f"spool directory not writable: {type(exc).__name__}"}
    return {"ok": True}


def loader_check(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """The loader's status file says it runs, was written lately and lags less than the limit."""
    now = time.time() if now is None else now
    limit = settings.ready_loader_lag_max_s
    try:
        doc = json.loads((settings.data_dir / "loader_status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"ok": False, "detail": "no loader status (loader never started here)"}
    if not isinstance(doc, dict):
        return {"ok": False, "detail": "unreadable loader status"}
    state = str(doc.get("state", ""))
    age = max(0.0, now - float(doc.get("updated_at", 0) or 0))
    lag = float(doc.get("lag_seconds", 0) or 0)
    out = {"state": state, "lag_seconds": round(lag, 1), "status_age_seconds": round(age, 1), "limit_seconds": limit}
    if state != "running":
        return {"ok": False, "detail": f"loader {state or 'not running'}", **out}
    if age > limit:
        return {"ok": False, "detail": f"loader status not updated for {age:.0f} s", **out}
    if lag > limit:
        return {"ok": False, "detail": f"loader lags {lag:.0f} s (limit {limit:.0f} s)", **out}
    return {"ok": True, **out}


async def endpoint_check(settings: Settings) -> dict[str, Any]:
    """The read-only endpoint answers its /ping (embedded mode; a ClickHouse server is not ours)."""
    if not settings.embedded:
        return {"ok": True, "detail": "server mode: no endpoint of ours"}
    url = f"http://{settings.ch_http_host}:{settings.ch_http_port}/ping"
    try:
        async with httpx.AsyncClient(timeout=ENDPOINT_PING_TIMEOUT_S) as client:
            status = (await client.get(url)).status_code
    except httpx.HTTPError as exc:
        return {"ok": False, "detail": f"endpoint unreachable: {type(exc).__name__}", "url": url}
    if status != 200:
        return {"ok": False, "detail": f"endpoint answered {status}", "url": url}
    return {"ok": True, "url": url}


def build_router(collector: Collector) -> APIRouter:
    router = APIRouter()
    settings = collector.settings

    @router.get("/healthz")
    async def healthz() -> Response:
        spool = collector.spool
        full = bool(spool.is_full()) if spool is not None else False
        return _json({
            "status": "degraded" if full else "ok",
            "process": "collector",
            "pid": os.getpid(),
            "uptime_s": round(time.time() - collector.started_at, 1),
            "spool": {
                "started": spool is not None,
                "full": full,
                "max_bytes": settings.spool_max_bytes,
                **(dict(spool.stats) if spool is not None else {}),
            },
            "sites": len(collector.sites.all()),
            "ua_cache": {"hits": collector.ua.hits, "misses": collector.ua.misses},
        })

    @router.get(READYZ)
    async def readyz() -> Response:
        checks = {
            "collector": {"ok": collector.spool is not None, "pid": os.getpid()},
            "spool": spool_check(collector),
            "loader": loader_check(settings),
            "endpoint": await endpoint_check(settings),
        }
        ready = all(c["ok"] for c in checks.values())
        failing = sorted(name for name, c in checks.items() if not c["ok"])
        return _json({"status": "ready" if ready else "not_ready", "failing": failing, "checks": checks},
                     200 if ready else 503)

    return router
