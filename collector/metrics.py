"""Collector metrics: cheap per-worker tallies on the hot path, flushed every second into
prometheus_client (multiprocess mode when several workers share a port), rendered by /metrics.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Tally:
    """Plain integers the hot path bumps; `flush` turns them into Prometheus counter increments.

    prometheus_client counters cost a lock (and an mmap write in multiprocess mode) per `inc`;
    at tens of thousands of hits per second that is worth batching.
    """

    def __init__(self, step_names: list[str]) -> None:
        self.step_names = step_names
        self.step_calls = [0] * len(step_names)
        self.step_ns = [0] * len(step_names)  # estimated for single hits (see pipeline.run)
        self.runs = 0  # pipeline.run calls (picks the hits whose steps are timed)
        # pipeline.run's untimed hits, by the index of the last step they ran: folded into
        # step_calls by flush (a hit stopped at step i ran steps 0..i).
        self.stopped_at = [0] * len(step_names)
        self.drops: defaultdict[str, int] = defaultdict(int)
        self.flags: defaultdict[str, int] = defaultdict(int)
        self.responses: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.server_errors: defaultdict[str, int] = defaultdict(int)  # 5xx answers, by route template
        self.routes: set[str] = set()  # route templates whose 5xx counter shows from the first flush, at 0
        self.accepted = 0
        self.errors = 0
        self.spool_full = 0
        self.spool_errors = 0
        self.ua_misses = 0
        self.ua_errors = 0
        self._metrics: dict[str, Any] | None = None

    def _prometheus(self) -> dict[str, Any]:
        if self._metrics is None:
            # Imported here: the multiprocess directory must be in the environment first.
            from prometheus_client import Counter

            self._metrics = {
                "step_calls": Counter("dnma_collector_step_calls", "Pipeline step runs", ["step"]),
                "step_seconds": Counter(
                    "dnma_collector_step_seconds", "Time spent in each pipeline step", ["step"]
                ),
                "drops": Counter("dnma_collector_hits_dropped", "Hits not stored, by reason", ["reason"]),
                "flags": Counter(
                    "dnma_collector_hits_flagged", "Stored hits carrying a quality flag", ["flag"]
                ),
                "accepted": Counter("dnma_collector_hits_accepted", "Hits appended to the spool"),
                "responses": Counter(
                    "dnma_collector_responses", "Responses by endpoint kind and status", ["kind", "status"]
                ),
                "errors": Counter(
                    "dnma_collector_unexpected_errors", "Requests that hit a bug (answered 400)"
                ),
                "server_errors": Counter(
                    "dnma_collector_server_errors", "Responses with a 5xx status, by route template", ["route"]
                ),
                "spool_full": Counter(
                    "dnma_collector_spool_full", "Requests refused with 503: spool at its cap"
                ),
                "spool_errors": Counter(
                    "dnma_collector_spool_errors", "Requests refused with 503: spool write failed"
                ),
                "ua_misses": Counter("dnma_collector_ua_cache_misses", "User-Agent parses (cache misses)"),
                "ua_errors": Counter(
                    "dnma_collector_ua_parse_errors", "User-Agents the parser failed on (classified unknown)"
                ),
            }
            for route in sorted(self.routes):
                self._metrics["server_errors"].labels(route)
        return self._metrics

    def fold_step_calls(self) -> None:
        """Add the hits counted in `stopped_at` to `step_calls`."""
        ran = 0
        for i in range(len(self.step_names) - 1, -1, -1):
            n = self.stopped_at[i]
            if n:
                self.stopped_at[i] -= n
                ran += n
            self.step_calls[i] += ran

    def flush(self) -> None:
        m = self._prometheus()
        self.fold_step_calls()
        for i, name in enumerate(self.step_names):
            calls, ns = self.step_calls[i], self.step_ns[i]
            if calls:
                self.step_calls[i] -= calls
                self.step_ns[i] -= ns
                m["step_calls"].labels(name).inc(calls)
                m["step_seconds"].labels(name).inc(ns / 1e9)
        for source, metric in (
            (self.drops, m["drops"]),
            (self.flags, m["flags"]),
            (self.server_errors, m["server_errors"]),
        ):
            for key, n in list(source.items()):
                if n:
                    source[key] -= n
                    metric.labels(key).inc(n)
        for (kind, status), n in list(self.responses.items()):
            if n:
                self.responses[(kind, status)] -= n
                m["responses"].labels(kind, str(status)).inc(n)
        for attr in ("accepted", "errors", "spool_full", "spool_errors", "ua_misses", "ua_errors"):
            n = getattr(self, attr)
            if n:
                setattr(self, attr, getattr(self, attr) - n)
                m[attr].inc(n)


def prepare_multiprocess_dir(path: Path) -> None:
    """Called by `dnma serve` before any worker starts: a fresh directory, exported to workers."""
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.db"):
        f.unlink()
    os.environ[MULTIPROC_ENV] = str(path)


def _loader_status(path: Path) -> dict[str, float]:
    """Numeric fields of the loader's status file (backlog, lag, ...), if it writes one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in doc.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            out[key] = float(value)
    return out


def _endpoint_counters(status_file: Path) -> Any:
    """The read-only endpoint's answers (it runs in the loader, which writes them in its status file):
    requests and 5xx by route, as counters."""
    from prometheus_client.core import CounterMetricFamily

    try:
        doc = json.loads(status_file.read_text(encoding="utf-8")).get("endpoint")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(doc, dict):
        return
    requests = CounterMetricFamily("dnma_endpoint_requests", "Requests the read-only endpoint answered")
    requests.add_metric([], float(doc.get("requests", 0)))
    yield requests
    errors = CounterMetricFamily("dnma_endpoint_server_errors", "5xx answers of the read-only endpoint, by route",
                                 labels=["route"])
    for route, count in sorted(dict(doc.get("server_errors", {})).items()):
        errors.add_metric([str(route)], float(count))
    yield errors


def render(*, spool_dir: Path, spool_max_bytes: int, data_dir: Path) -> tuple[bytes, str]:
    """The /metrics payload: every worker's counters plus spool and loader gauges read now."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    from dnma.spool import list_segments, spool_bytes

    class _Gauges:
        def collect(self) -> Any:
            yield GaugeMetricFamily(
                "dnma_spool_bytes", "Bytes in the spool (all writers)", value=spool_bytes(spool_dir)
            )
            yield GaugeMetricFamily("dnma_spool_max_bytes", "Spool size cap", value=spool_max_bytes)
            yield GaugeMetricFamily(
                "dnma_spool_segments", "Segment files in the spool", value=len(list_segments(spool_dir))
            )
            status_file = data_dir / "loader_status.json"
            for key, value in sorted(_loader_status(status_file).items()):
                name = "dnma_loader_" + "".join(c if c.isalnum() else "_" for c in key)
                yield GaugeMetricFamily(name, f"loader_status.json: {key}", value=value)
            yield from _endpoint_counters(status_file)

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters)
    else:
        counters = REGISTRY  # one process: its own metrics
    from collector.quality_routes import QualityGauges

    gauges = CollectorRegistry()
    gauges.register(_Gauges())
    gauges.register(QualityGauges(data_dir))  # open alerts per check and severity, from the loader
    return generate_latest(counters) + generate_latest(gauges), CONTENT_TYPE_LATEST
