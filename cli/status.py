"""`dnma status`: each process of the embedded stack with its URL and health, then the loader's lag,
the spool backlog, the age of the last visits build, the open quality alerts and the last weekly
export. Exit code 0 when everything is up and ready, 1 when up but not ready (the collector's
/readyz says why), 3 when a process is down.

It reads what the processes publish (their health routes, loader_status.json, quality_status.json,
the exports' manifests): it never opens chDB, so it runs the same with the stack up or down.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aggregator.checks.ingestion import read_json
from dnma.settings import Settings

HTTP_TIMEOUT_S = 3.0
DOWN, NOT_READY = 3, 1


@dataclass
class Process:
    name: str
    state: str  # up, down, not started
    url: str
    pid: int | None = None
    health: str = ""
    expected: bool = True  # down counts against the exit code


@dataclass
class Report:
    processes: list[Process] = field(default_factory=list)
    ready: dict[str, Any] | None = None  # the collector's /readyz answer
    lag_seconds: float | None = None
    backlog_bytes: int = 0
    backlog_segments: int = 0
    spool_max_bytes: int = 0
    visits_built_age_s: float | None = None
    visits_behind_hits_s: float | None = None
    held_days: int | None = None
    open_alerts: dict[str, int] = field(default_factory=dict)
    last_export: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        if any(p.expected and p.state != "up" for p in self.processes):
            return DOWN
        if self.ready is None or self.ready.get("status") != "ready":
            return NOT_READY
        return 0


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError:
        return None


def _alive(pid: Any) -> int | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def _pid_file(data_dir: Path, name: str) -> tuple[bool, int | None]:
    """(a pid file exists, the live pid it names)."""
    path = data_dir / "run" / f"{name}.pid"
    try:
        return True, _alive(int(path.read_text().strip()))
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError):
        return True, None


def _loader(settings: Settings, status: dict[str, Any], now: float) -> Process:
    data_dir = settings.data_dir
    _, pid = _pid_file(data_dir, "loader")
    pid = pid or _alive(status.get("pid"))
    age = now - float(status.get("updated_at", 0) or 0) if status else None
    state_word = str(status.get("state", "")) if status else ""
    if settings.embedded:
        url = f"http://{settings.ch_http_host}:{settings.ch_http_port}"
        r = _get(f"{url}/ping")
        up = r is not None and r.status_code == 200
        health = "endpoint answers /ping" if up else "endpoint not answering"
    else:
        url = "(server mode: no endpoint)"
        up = pid is not None and state_word == "running"
        health = ""
    if status:
        health += f"; {state_word or '?'}, status written {age:.0f} s ago" if health else f"{state_word}, status {age:.0f} s old"
    return Process("loader", "up" if up else "down", url, pid, health)


def _collector(settings: Settings, data_dir: Path) -> tuple[Process, dict[str, Any] | None]:
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    _, pid = _pid_file(data_dir, "collector")
    r = _get(f"{url}/healthz")
    if r is None or r.status_code != 200:
        return Process("collector", "down", url, pid, "no answer on /healthz"), None
    try:
        pid = pid or int(r.json().get("pid") or 0) or None
    except ValueError:
        pass
    ready_answer = _get(f"{url}/readyz")
    ready: dict[str, Any] | None = None
    if ready_answer is not None:
        try:
            ready = dict(ready_answer.json())
        except ValueError:
            ready = None
    if ready is None:
        health = "alive; /readyz unreadable"
    elif ready.get("status") == "ready":
        health = "ready"
    else:
        failing = ready.get("failing", [])
        details = [f"{name}: {ready['checks'][name].get('detail', 'failing')}" for name in failing
                   if isinstance(ready.get("checks", {}).get(name), dict)]
        health = "not ready (" + "; ".join(details or failing) + ")"
    return Process("collector", "up", url, pid, health), ready


def _superset(settings: Settings, data_dir: Path) -> Process:
    started, pid = _pid_file(data_dir, "superset")
    url = f"http://127.0.0.1:{settings.superset_port}"
    if not started:
        return Process("superset", "not started", url, None, "dnma up --no-superset, or not installed", expected=False)
    r = _get(f"{url}/health")
    up = r is not None and r.status_code == 200
    return Process("superset", "up" if up else "down", url, pid, "answers /health" if up else "no answer on /health")


def _last_export(settings: Settings) -> dict[str, Any] | None:
    """The latest published week (exports_dir/YYYY-Www/manifest.json), if any."""
    from aggregator.publication import latest_publication

    try:
        return latest_publication(settings)
    except (OSError, ValueError, KeyError, TypeError):  # a manifest being written or damaged
        return None


def _open_alerts(data_dir: Path) -> dict[str, int]:
    """Open quality alerts by severity (quality_status.json, written by the loader's checks)."""
    out: dict[str, int] = {}
    for row in read_json(data_dir / "quality_status.json").get("open", []):
        if isinstance(row, dict):
            severity = str(row.get("severity", "?"))
            out[severity] = out.get(severity, 0) + int(row.get("open", 0) or 0)
    return out


def gather(settings: Settings, now: float | None = None) -> Report:
    """What `dnma status` shows, read now."""
    from dnma.spool import list_segments, spool_bytes

    now = time.time() if now is None else now
    data_dir = settings.data_dir
    status = read_json(data_dir / "loader_status.json")
    report = Report(spool_max_bytes=settings.spool_max_bytes)
    report.processes.append(_loader(settings, status, now))
    collector, report.ready = _collector(settings, data_dir)
    report.processes.append(collector)
    report.processes.append(_superset(settings, data_dir))
    if status and report.processes[0].state == "up":
        report.lag_seconds = float(status.get("lag_seconds", 0) or 0)
    if report.lag_seconds is not None:  # what the running loader has yet to store
        report.backlog_bytes = int(status.get("backlog_bytes", 0) or 0)
        report.backlog_segments = int(status.get("backlog_segments", 0) or 0)
    else:  # no loader: the spool's files, all still to load or retire
        spool_dir = settings.resolved_spool_dir
        report.backlog_bytes = spool_bytes(spool_dir)
        report.backlog_segments = len(list_segments(spool_dir))
    fresh = status.get("freshness") if isinstance(status.get("freshness"), dict) else {}
    if fresh:
        report.visits_built_age_s = max(0.0, now - float(fresh.get("pass_at", 0) or 0))
        report.visits_behind_hits_s = float(fresh.get("visits_behind_hits_s", 0) or 0)
        report.held_days = int(fresh.get("held_days", 0) or 0)
    report.open_alerts = _open_alerts(data_dir)
    report.last_export = _last_export(settings)
    return report


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(report: Report) -> str:
    lines = [f"{'process':<10} {'state':<12} {'pid':<8} {'url':<28} health"]
    for p in report.processes:
        lines.append(f"{p.name:<10} {p.state:<12} {p.pid or '-'!s:<8} {p.url:<28} {p.health}")
    lines.append("")
    lag = "unknown (loader down)" if report.lag_seconds is None else f"{report.lag_seconds:.1f} s"
    lines.append(f"{'loader lag':<16} {lag}")
    share = report.backlog_bytes / report.spool_max_bytes if report.spool_max_bytes else 0
    lines.append(f"{'spool backlog':<16} {_size(report.backlog_bytes)} in {report.backlog_segments} segment(s), "
                 f"{share:.1%} of the cap ({_size(report.spool_max_bytes)})")
    if report.visits_built_age_s is None:
        visits = "no sessionizer pass since the loader started"
    else:
        visits = (f"last build {_age(report.visits_built_age_s)} ago; newest visit ends "
                  f"{_age(report.visits_behind_hits_s or 0)} before the newest hit; {report.held_days} day(s) held back")
    lines.append(f"{'visits':<16} {visits}")
    total = sum(report.open_alerts.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(report.open_alerts.items()) if v)
    lines.append(f"{'open alerts':<16} {total}" + (f" ({detail})" if detail else ""))
    e = report.last_export
    lines.append(f"{'last export':<16} " + (f"{e['week']} revision {e['revision']}, published {e['published_at']} "
                                            f"({e['directory']})" if e else "none"))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    report = gather(settings)
    if getattr(args, "json", False):
        print(json.dumps({**asdict(report), "exit_code": report.exit_code}, indent=2))
    else:
        print(render(report))
    return report.exit_code
