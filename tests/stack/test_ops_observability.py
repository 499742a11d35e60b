"""Logs, metrics, health and status on a real stack (issue 16 §5): a collector and a loader started as
`dnma serve` / `dnma loader` subprocesses, read through their logs, /metrics, /healthz, /readyz and
`dnma status`, then stopped and killed to see what they log about it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import DEMO_SITE_ID, DEMO_TOKEN, REPO, Stack  # noqa: E402

from collector.hit import DropReason  # noqa: E402
from collector.metrics import RESPONSE_KINDS  # noqa: E402
from dnma.logs import RotatingAppendHandler  # noqa: E402

FAULT = "dnma_test_fault"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SECRETS = {"token_auth": DEMO_TOKEN, "uid": "eleve.secret@ac-rennes.fr", "cip": "203.0.113.77",
           "_id": "0123456789abcdef", "url": "https://ent.demo.example/notes?eleve=Jean-Secret",
           "urlref": "https://ent.demo.example/?session=SESSIONSECRET"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("ops"), log_format="json", collector_fault_param=FAULT,
                  loader_aggregate_interval_s=1, ready_loader_lag_max_s=60,
                  publication_schedule="off")  # the test writes a week's manifest of its own
    try:
        stack.start_loader()
        stack.start_collector()
        yield stack
    finally:
        stack.stop_all()


def log_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Every line of a process's log, each parsed as one JSON object (a line that is not fails)."""
    lines = (stack.data_dir / f"{name}.log").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def events(stack: Stack, name: str, event: str) -> list[dict[str, Any]]:
    return [doc for doc in log_lines(stack, name) if doc["event"] == event]


def wait_for(predicate: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_unexpected_tracking_error_is_logged_with_a_request_id_and_no_secret(stack: Stack) -> None:
    # collector_fault_param makes a request carrying it fail inside the tracking path, as a bug would.
    params = {"idsite": str(DEMO_SITE_ID), "rec": "1", "send_image": "0", "h": "13", **SECRETS, FAULT: "1"}
    r = httpx.post(f"{stack.collector_url}/matomo.php", data=params, timeout=10)  # in the body, as trackers send
    assert r.status_code == 400, r.text
    request_id = r.headers["x-request-id"]
    assert request_id in r.text
    # A client's own X-Request-Id is kept, so its logs and ours meet.
    r2 = httpx.get(f"{stack.collector_url}/matomo.php", params=params, headers={"X-Request-Id": "client-req-0001"},
                   timeout=10)
    assert (r2.status_code, r2.headers["x-request-id"]) == (400, "client-req-0001")

    logged = wait_for(lambda: {e["request_id"]: e for e in events(stack, "collector", "tracking_error")}
                      if len(events(stack, "collector", "tracking_error")) >= 2 else None, what="tracking_error")
    entry = logged[request_id]
    assert entry["level"] == "ERROR" and entry["error"] == "RuntimeError"
    sample = entry["request"]
    assert (sample["method"], sample["path"]) == ("POST", "/matomo.php")
    # Names and lengths of every parameter; values only of the harmless ones.
    assert sample["params"]["idsite"] == {"len": 1, "value": "1"}
    assert sample["params"]["h"] == {"len": 2, "value": "13"}
    for name, value in SECRETS.items():
        assert sample["params"][name] == len(value), name
    assert logged["client-req-0001"]["request"]["method"] == "GET"
    # In a bulk request: the item count, and the first item's names and lengths.
    item = "?" + "&".join(f"{k}={v}" for k, v in params.items() if k not in ("url", "urlref"))
    bulk = httpx.post(f"{stack.collector_url}/matomo.php", json={"requests": [item, "?idsite=1&rec=1"]}, timeout=10)
    assert bulk.status_code == 400
    bulk_entry = wait_for(lambda: [e for e in events(stack, "collector", "tracking_error")
                                   if e["request_id"] == bulk.headers["x-request-id"]], what="the bulk request's error")[0]
    assert bulk_entry["request"]["bulk_items"] == 2
    assert bulk_entry["request"]["params"]["token_auth"] == len(DEMO_TOKEN)
    assert bulk_entry["request"]["params"]["idsite"] == {"len": 1, "value": "1"}
    text = (stack.data_dir / "collector.log").read_text(encoding="utf-8")
    for value in [*SECRETS.values(), "Jean-Secret", "SESSIONSECRET", "203.0.113"]:
        assert value not in text, value
    metrics = httpx.get(f"{stack.collector_url}/metrics", timeout=10).text
    assert re.search(r"^dnma_collector_unexpected_errors_total 3\.0$", metrics, re.M), metrics[:500]


def parse_exposition(text: str) -> dict[str, dict[str, Any]]:
    """A strict reading of the Prometheus text format: every sample belongs to a family declared
    by `# TYPE` before it; counters' samples end in _total (or _created); a histogram's buckets are
    cumulative, end with +Inf, and +Inf equals _count. Families are keyed by their name without _total."""
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "counter":  # declared with or without its _total (text format 0.0.4 / OpenMetrics)
                name = name.removesuffix("_total")
            assert name not in families, f"{name} declared twice"
            families[name] = {"type": kind, "samples": []}
            current = name
        elif line.startswith("#") or not line.strip():
            continue
        else:
            m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
            assert m, f"unreadable sample: {line!r}"
            name, labels, value = m[1], dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[3] or "")), float(m[4])
            assert current is not None and name.startswith(current), f"{name} outside its # TYPE ({current})"
            kind = families[current]["type"]
            suffix = name[len(current):]
            allowed = {"counter": {"_total", "_created"}, "gauge": {""}, "histogram": {"_bucket", "_sum", "_count", "_created"}}
            assert suffix in allowed[kind], f"{name}: a {kind} sample with suffix {suffix!r}"
            families[current]["samples"].append((name, labels, value))
    for name, family in families.items():
        if family["type"] != "histogram":
            continue
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        counts: dict[tuple[tuple[str, str], ...], float] = {}
        for sample, labels, value in family["samples"]:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            if sample.endswith("_bucket"):
                series.setdefault(key, []).append((float(labels["le"]), value))
            elif sample.endswith("_count"):
                counts[key] = value
        for key, buckets in series.items():
            bounds = [b for b, _ in buckets]
            assert bounds == sorted(bounds) and math.isinf(bounds[-1]), f"{name}{key}: buckets out of order"
            values = [v for _, v in buckets]
            assert values == sorted(values), f"{name}{key}: buckets not cumulative {values}"
            assert values[-1] == counts[key], f"{name}{key}: +Inf {values[-1]} != _count {counts[key]}"
    return families


def samples(families: dict[str, dict[str, Any]], name: str, **labels: str) -> list[float]:
    """The values of the samples called `name` (a family's name, or a histogram's name_count...)."""
    family = families.get(name) or families[name.rsplit("_", 1)[0]]
    wanted = {f"{name}_total", name} if family["type"] == "counter" else {name, f"{name}_bucket"}
    return [value for sample, lab, value in family["samples"]
            if sample in wanted and all(lab.get(k) == v for k, v in labels.items())]


def test_metrics_are_typed_present_from_the_start_and_cover_every_process(stack: Stack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    assert httpx.get(f"{stack.collector_url}/matomo.php", timeout=10,
                     params={"idsite": DEMO_SITE_ID, "rec": 1, "url": "https://ent.demo.example/m", "send_image": 0}
                     ).status_code == 204
    reader = stack.reader()
    try:
        assert reader.query("SELECT count() FROM numbers(10)").result_rows == [(10,)]
    finally:
        reader.close()
    bad = httpx.get(f"{stack.ch_http_url}/", params={"query": "SELECT 1", "user": stack.ch_user, "password": "wrong"},
                    timeout=10)
    assert bad.status_code in (401, 403, 516), bad.status_code
    # A command's job, run by the loader through its admin channel, is counted by name.
    job = subprocess.run([sys.executable, "-m", "cli", "aggregate", "--once"], cwd=REPO, env=stack.env,
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stdout + job.stderr

    def scrape() -> dict[str, dict[str, Any]] | None:
        text = httpx.get(f"{stack.collector_url}/metrics", timeout=10).text
        list(text_string_to_metric_families(text))  # the reference parser reads it too
        families = parse_exposition(text)
        ok = ("dnma_endpoint_queries" in families and samples(families, "dnma_endpoint_queries", outcome="ok")[0] >= 1
              and samples(families, "dnma_endpoint_refusals", reason="auth")[0] >= 1
              and "dnma_visits_behind_hits_seconds" in families
              and samples(families, "dnma_loader_job_runs", job="aggregate")[0] >= 1
              and samples(families, "dnma_loader_job_runs", job="admin.aggregate") == [1.0])
        return families if ok else None

    families = wait_for(scrape, 30, "the loader's figures in /metrics")
    for name, family in families.items():
        if family["type"] == "counter":
            assert all(s.endswith(("_total", "_created")) for s, _, _ in family["samples"]), name
    # Every drop reason and response kind from the start (this collector dropped none of them yet).
    reasons = {lab["reason"] for _, lab, _ in families["dnma_collector_hits_dropped"]["samples"]}
    assert reasons == {str(r) for r in DropReason}
    kinds = {(lab["kind"], lab["status"]) for _, lab, _ in families["dnma_collector_responses"]["samples"]}
    assert {(k, str(s)) for k, statuses in RESPONSE_KINDS.items() for s in statuses} <= kinds
    assert families["dnma_collector_connections_cut"]["type"] == "counter"
    # Request durations per route: the hit above and this scrape's predecessors are in them.
    assert families["dnma_collector_request_duration_seconds"]["type"] == "histogram"
    assert samples(families, "dnma_collector_request_duration_seconds", route="/matomo.php", le="+Inf")[0] >= 1
    assert samples(families, "dnma_collector_request_duration_seconds", route="/metrics", le="+Inf")[0] >= 1
    # The loader's counters are counters, its gauges gauges.
    assert families["dnma_loader_batches"]["type"] == "counter" and families["dnma_loader_rows"]["type"] == "counter"
    assert families["dnma_loader_lag_seconds"]["type"] == "gauge"
    # The read-only endpoint: queries by outcome, refusals by reason (all present), durations, bytes.
    assert families["dnma_endpoint_query_duration_seconds"]["type"] == "histogram"
    queried = sum(samples(families, "dnma_endpoint_queries"))
    assert samples(families, "dnma_endpoint_query_duration_seconds_count")[0] == queried >= 1
    assert {lab["reason"] for _, lab, _ in families["dnma_endpoint_refusals"]["samples"]} >= {
        "auth", "readonly", "access_denied", "result_too_large", "timeout", "memory_limit", "too_many_connections"}
    assert samples(families, "dnma_endpoint_result_bytes")[0] > 0
    # Jobs (side duties at 0 or more, failures at 0) and the sessionizer's freshness.
    assert samples(families, "dnma_loader_job_failures", job="aggregate") == [0.0]
    assert samples(families, "dnma_loader_job_failures", job="admin.aggregate") == [0.0]
    assert samples(families, "dnma_loader_admin_jobs_started")[0] >= 1
    assert samples(families, "dnma_loader_job_runs", job="checks")
    assert samples(families, "dnma_visits_held_days")[0] >= 0


def test_healthz_and_readyz(stack: Stack) -> None:
    alive = httpx.get(f"{stack.collector_url}/healthz", timeout=10)
    assert alive.status_code == 200 and alive.json()["process"] == "collector"
    ready = httpx.get(f"{stack.collector_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    doc = ready.json()
    assert doc["status"] == "ready" and set(doc["checks"]) == {"collector", "spool", "loader", "endpoint"}
    assert all(check["ok"] for check in doc["checks"].values())
    # A spool where the collector cannot write its probe file (a directory in its way: a fault root
    # meets too, unlike a read-only mode): not ready, and it says why.
    probe = stack.data_dir / "spool" / f".readyz-{alive.json()['pid']}"
    probe.mkdir()
    try:
        r = httpx.get(f"{stack.collector_url}/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["failing"] == ["spool"], r.text
        assert "not writable" in r.json()["checks"]["spool"]["detail"]
    finally:
        probe.rmdir()
    assert httpx.get(f"{stack.collector_url}/readyz", timeout=10).status_code == 200


def status(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "status", *args], cwd=REPO, env=stack.env,
                          capture_output=True, text=True, timeout=60)


def test_dnma_status_shows_each_process_and_the_pipeline(stack: Stack) -> None:
    week = stack.data_dir / "exports" / "2026-W49"
    week.mkdir(parents=True)
    (week / "manifest.json").write_text(json.dumps({
        "week": "2026-W49", "latest_revision": 2,
        "revisions": [{"revision": 1, "published_at": "2026-12-07T06:00:05+01:00"},
                      {"revision": 2, "published_at": "2026-12-08T06:05:00+01:00"}]}))
    try:
        wait_for(lambda: json.loads(status(stack, "--json").stdout)["visits_built_age_s"] is not None, 30,
                 "a sessionizer pass in the status")
        done = status(stack)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert re.search(rf"^loader\s+up\s+\d+\s+{re.escape(stack.ch_http_url)}\s", out, re.M), out
        assert re.search(rf"^collector\s+up\s+\d+\s+{re.escape(stack.collector_url)}\s+ready", out, re.M), out
        assert re.search(r"^superset\s+not started", out, re.M), out
        assert re.search(r"^loader lag\s+\d+\.\d s", out, re.M), out
        assert re.search(r"^spool backlog\s+\d", out, re.M), out
        assert re.search(r"^visits\s+last build \d+ s ago", out, re.M), out
        assert re.search(r"^open alerts\s+\d+", out, re.M), out
        assert "2026-W49 revision 2, published 2026-12-08T06:05:00+01:00" in out, out
    finally:
        (week / "manifest.json").unlink()
        week.rmdir()
    assert re.search(r"^last export\s+none$", status(stack).stdout, re.M)


def test_stops_are_logged_with_their_reason_and_an_unclean_one_is_noticed(stack: Stack) -> None:
    stack.stop("loader")  # SIGTERM
    stopped = events(stack, "loader", "loader_stopped")
    assert stopped and stopped[-1]["reason"] == "SIGTERM"
    assert not (stack.data_dir / "run" / "loader.running").exists()

    # The stack without its loader: not ready, and `dnma status` says the loader is down (exit 3).
    r = httpx.get(f"{stack.collector_url}/readyz", timeout=10)
    assert r.status_code == 503 and {"loader", "endpoint"} <= set(r.json()["failing"]), r.text
    down = status(stack)
    assert down.returncode == 3 and re.search(r"^loader\s+down", down.stdout, re.M), down.stdout
    assert "not ready" in down.stdout

    stack.start_loader()
    assert not events(stack, "loader", "previous_run_not_stopped_cleanly")  # the last stop was clean
    stack.stop("loader", kill=True)  # a crash: nothing runs on the way out
    stack.start_loader()
    unclean = events(stack, "loader", "previous_run_not_stopped_cleanly")
    assert len(unclean) == 1 and unclean[0]["level"] == "WARNING" and unclean[0]["previous_pid"]

    stack.stop("collector")
    assert events(stack, "collector", "collector_stopped")[-1]["reason"] == "SIGTERM"
    # Every line either process wrote is one event in the schema.
    for name in ("loader", "collector"):
        for doc in log_lines(stack, name):
            assert list(doc)[:4] == ["time", "level", "logger", "event"], doc
            assert ISO_UTC.fullmatch(doc["time"]) and doc["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def test_log_files_rotate_by_size_across_processes(tmp_path: Path) -> None:
    """Two processes append to one log file with a small log_max_bytes: it rotates, at most
    log_backup_count old files stay, and while they hold everything no line is lost or torn."""
    path = tmp_path / "log" / "collector.log"
    script = (
        "import logging, sys\n"
        "from dnma.logs import RotatingAppendHandler, JsonFormatter\n"
        f"h = RotatingAppendHandler(__import__('pathlib').Path({str(path)!r}), 20_000, 50)\n"
        "h.setFormatter(JsonFormatter()); log = logging.getLogger('t'); log.addHandler(h); log.setLevel('INFO')\n"
        "for i in range(1500): log.info('line', extra={'fields': {'writer': sys.argv[1], 'n': i}})\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, w], cwd=REPO) for w in ("a", "b")]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    files = sorted(path.parent.glob("collector.log*"))
    files = [f for f in files if not f.name.endswith(".lock")]
    assert len(files) > 5  # it rotated
    seen = set()
    longest = max(len(line) + 1 for f in files for line in f.read_text().splitlines())
    for f in files:
        # Past the size by at most one line per writer: the one that crossed it, and a line the other
        # writer appended between its check of the file and the rename.
        assert f.stat().st_size <= 20_000 + 2 * longest, (f, f.stat().st_size, longest)
        for line in f.read_text().splitlines():
            doc = json.loads(line)
            seen.add((doc["writer"], doc["n"]))
    assert len(seen) == 3000
    # With fewer backups kept, the oldest go.
    handler = RotatingAppendHandler(tmp_path / "small.log", 1_000, 2)
    import logging

    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(200):
        handler.emit(logging.LogRecord("t", logging.INFO, "", 0, "x" * 50 + str(i), None, None))
    handler.close()
    assert sorted(p.name for p in tmp_path.glob("small.log*")) == ["small.log", "small.log.1", "small.log.2",
                                                                    "small.log.lock"]
