"""Collector metrics: cheap per-worker tallies on the hot path, flushed every second into
prometheus_client (multiprocess mode when several workers share a port), rendered by /metrics.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request durations, seconds: a hit is answered in well under a millisecond, a report in up to seconds.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Response kinds and statuses the collector answers (app.track, api.matomo_api), shown at 0 from the start.
RESPONSE_KINDS = {"tracking": (200, 204, 400, 405, 413, 414, 503), "api": (200,), "api_error": (200,),
                  "validation": (200, 400, 401)}
# loader_status.json keys that only grow while a loader runs: counters (reset when it restarts).
LOADER_COUNTERS = frozenset({"batches", "rows", "rejected", "retries", "redone", "segments_retired"})


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
        self.drop_reasons: list[str] = []  # every drop reason, shown at 0 from the first flush
        # Request durations by route template: counts per DURATION_BUCKETS slot (not cumulative,
        # the last past the largest bound) and their sum, folded into the histogram by flush.
        self.durations: dict[str, list[int]] = {}
        self.duration_sums: defaultdict[str, float] = defaultdict(float)
        self.accepted = 0
        self.errors = 0
        self.spool_full = 0
        self.spool_errors = 0
        self.quarantined = 0  # refused requests kept in the quarantine (spooled)
        self.quarantine_lost = 0  # refused requests the spool could not take
        self.ua_misses = 0
        self.ua_errors = 0
        self._metrics: dict[str, Any] | None = None

    def _prometheus(self) -> dict[str, Any]:
        if self._metrics is None:
            # Imported here: the multiprocess directory must be in the environment first.
            from prometheus_client import Counter, Histogram

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
                "quarantined": Counter(
                    "dnma_collector_quarantined", "Refused requests kept in the quarantine (spooled)"
                ),
                "quarantine_lost": Counter(
                    "dnma_collector_quarantine_lost", "Refused requests not quarantined: spool full or failing"
                ),
                "ua_errors": Counter(
                    "dnma_collector_ua_parse_errors", "User-Agents the parser failed on (classified unknown)"
                ),
            }
            self._metrics["duration"] = Histogram(
                "dnma_collector_request_duration_seconds", "Time to answer a request, by route template",
                ["route"], buckets=DURATION_BUCKETS,
            )
            for route in sorted(self.routes):
                self._metrics["server_errors"].labels(route)
                self._metrics["duration"].labels(route)
            for reason in self.drop_reasons:
                self._metrics["drops"].labels(reason)
            for kind, statuses in RESPONSE_KINDS.items():
                for status in statuses:
                    self._metrics["responses"].labels(kind, str(status))
            from collector.connection import zero_cut_counters

            zero_cut_counters()
        return self._metrics

    def observe(self, route: str, seconds: float) -> None:
        """One request's duration (a list slot bumped: the histogram's lock and mmap wait for flush)."""
        counts = self.durations.get(route)
        if counts is None:
            counts = self.durations[route] = [0] * (len(DURATION_BUCKETS) + 1)
        counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sums[route] += seconds

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
        for route, counts in self.durations.items():
            if any(counts):
                _add_to_histogram(m["duration"].labels(route), counts, self.duration_sums[route])
                self.durations[route] = [0] * len(counts)
                self.duration_sums[route] = 0.0
        for attr in ("accepted", "errors", "spool_full", "spool_errors", "ua_misses", "ua_errors", "quarantined",
                     "quarantine_lost"):
            n = getattr(self, attr)
            if n:
                setattr(self, attr, getattr(self, attr) - n)
                m[attr].inc(n)


def _add_to_histogram(child: Any, counts: list[int], total: float) -> None:
    """Add per-bucket counts (not cumulative) and their sum to a prometheus_client Histogram child,
    as that many `observe` calls would (its per-bucket values are what observe increments)."""
    for i, n in enumerate(counts):
        if n:
            child._buckets[i].inc(n)
    child._sum.inc(total)


def prepare_multiprocess_dir(path: Path) -> None:
    """Called by `dnma serve` before any worker starts: a fresh directory, exported to workers."""
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.db"):
        f.unlink()
    os.environ[MULTIPROC_ENV] = str(path)


def _read_status(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _loader_status(doc: dict[str, Any]) -> dict[str, float]:
    """Numeric fields of the loader's status file (backlog, lag, ...), if it writes one."""
    out: dict[str, float] = {}
    for key, value in doc.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            out[key] = float(value)
    return out


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _histogram(name: str, doc: Any, help_text: str) -> Any:
    """A HistogramMetricFamily from {"le": [bounds], "counts": [per-bucket, last past them], "sum"}."""
    from prometheus_client.core import HistogramMetricFamily

    bounds = list(doc.get("le", [])) if isinstance(doc, dict) else []
    counts = list(doc.get("counts", [])) if isinstance(doc, dict) else []
    if len(counts) != len(bounds) + 1:
        bounds, counts = [], [0]
    buckets, running = [], 0.0
    for bound, n in zip([*map(str, map(float, bounds)), "+Inf"], counts, strict=True):
        running += _num(n)
        buckets.append((bound, running))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=_num(doc.get("sum", 0)) if isinstance(doc, dict) else 0.0)


def _labelled(family: Any, values: Any) -> Any:
    for key, value in sorted(dict(values or {}).items()):
        family.add_metric([str(key)], _num(value))
    return family


def _endpoint_metrics(doc: dict[str, Any]) -> Any:
    """The read-only endpoint's answers (it runs in the loader, which writes them in its status file):
    requests and 5xx by route, queries by outcome, refusals by reason, durations, result bytes."""
    from prometheus_client.core import CounterMetricFamily

    endpoint = doc.get("endpoint")
    if not isinstance(endpoint, dict):
        return
    requests = CounterMetricFamily("dnma_endpoint_requests", "Requests the read-only endpoint answered")
    requests.add_metric([], _num(endpoint.get("requests", 0)))
    yield requests
    yield _labelled(CounterMetricFamily("dnma_endpoint_server_errors", "5xx answers of the read-only endpoint, by route",
                                        labels=["route"]), endpoint.get("server_errors"))
    yield _labelled(CounterMetricFamily("dnma_endpoint_queries", "Reader queries, by outcome (ok, refused, failed, client_gone)",
                                        labels=["outcome"]), endpoint.get("queries"))
    yield _labelled(CounterMetricFamily("dnma_endpoint_refusals", "Requests the endpoint refused, by reason",
                                        labels=["reason"]), endpoint.get("refusals"))
    yield _histogram("dnma_endpoint_query_duration_seconds", endpoint.get("query_seconds"),
                     "Time to run and answer a reader query")
    sent = CounterMetricFamily("dnma_endpoint_result_bytes", "Result bytes the endpoint's queries produced")
    sent.add_metric([], _num(endpoint.get("result_bytes", 0)))
    yield sent


def _loader_metrics(doc: dict[str, Any], now: float) -> Any:
    """The loader's status file: counters (batches, rows, ...), gauges (backlog, lag, ...), the
    jobs' runs and failures, and the sessionizer's freshness."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for key, value in sorted(_loader_status(doc).items()):
        name = "dnma_loader_" + "".join(c if c.isalnum() else "_" for c in key)
        if key in LOADER_COUNTERS:
            yield CounterMetricFamily(name, f"loader_status.json: {key} (since the loader started)", value=value)
        else:
            yield GaugeMetricFamily(name, f"loader_status.json: {key}", value=value)
    if doc:
        yield GaugeMetricFamily("dnma_loader_status_age_seconds", "Seconds since the loader last wrote its status",
                                value=max(0.0, now - _num(doc.get("updated_at", 0))))
    jobs = doc.get("jobs")
    if isinstance(jobs, dict):
        runs = CounterMetricFamily("dnma_loader_job_runs", "Jobs the loader ran (side duties, admin jobs)", labels=["job"])
        failures = CounterMetricFamily("dnma_loader_job_failures", "Jobs the loader ran that failed", labels=["job"])
        last = GaugeMetricFamily("dnma_loader_job_last_run_timestamp_seconds", "End of each job's last run (unix s)",
                                 labels=["job"])
        for job, figures in sorted(jobs.items()):
            figures = figures if isinstance(figures, dict) else {}
            runs.add_metric([str(job)], _num(figures.get("runs", 0)))
            failures.add_metric([str(job)], _num(figures.get("failures", 0)))
            last.add_metric([str(job)], _num(figures.get("last_run_at", 0)))
        yield from (runs, failures, last)
    admin = doc.get("admin")  # the admin channel's counts (aggregator/admin.py): requests, jobs, refusals
    if isinstance(admin, dict):
        for key, value in sorted(admin.items()):
            name = "dnma_loader_admin_" + "".join(c if c.isalnum() else "_" for c in str(key))
            yield CounterMetricFamily(name, f"Admin channel: {key} (since the loader started)", value=_num(value))
    fresh = doc.get("freshness")
    if isinstance(fresh, dict) and fresh:
        yield GaugeMetricFamily("dnma_visits_behind_hits_seconds",
                                "Newest hit's time minus the newest visit's end, after the last sessionizer pass",
                                value=_num(fresh.get("visits_behind_hits_s", 0)))
        yield GaugeMetricFamily("dnma_visits_held_days", "Past days the last sessionizer pass held back (still changing)",
                                value=_num(fresh.get("held_days", 0)))
        yield GaugeMetricFamily("dnma_visits_last_pass_timestamp_seconds", "End of the last sessionizer pass (unix s)",
                                value=_num(fresh.get("pass_at", 0)))


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
            status = _read_status(data_dir / "loader_status.json")
            yield from _loader_metrics(status, time.time())
            yield from _endpoint_metrics(status)

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
