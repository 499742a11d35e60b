"""Ingestion health from real files and a real /metrics server, the webhook to a real local
receiver (one POST per run, retried), the gauges file and its Prometheus rendering."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from aggregator.checks.runner import checks_due, run_checks
from collector.quality_routes import QualityGauges
from tests.quality.conftest import SITE_BZH, clean_hits, hit, insert_hits, paris
from tests.quality.servers import Receiver

NOW = paris(2024, 10, 15, 12, 0)


def _metrics(accepted: int, unknown_site: int, bots: int) -> str:
    return (
        "# TYPE dnma_collector_hits_accepted counter\n"
        f"dnma_collector_hits_accepted_total {accepted}\n"
        "# TYPE dnma_collector_hits_dropped counter\n"
        f'dnma_collector_hits_dropped_total{{reason="unknown_site"}} {unknown_site}\n'
        f'dnma_collector_hits_dropped_total{{reason="bot"}} {bots}\n'
    )


def test_ingestion_health(env: Any) -> None:
    client, settings = env
    collector = Receiver(metrics=_metrics(1000, 0, 0))
    try:
        settings = settings.model_copy(update={"collector_port": collector.port})
        status = settings.data_dir / "loader_status.json"
        status.write_text(json.dumps({"state": "running", "updated_at": time.time(), "lag_seconds": 900,
                                      "backlog_bytes": int(0.7 * settings.spool_max_bytes)}))
        first = {(t.scope_value, t.change) for t in run_checks(client, settings, only=["ingestion"], now=NOW)}
        assert first == {("loader", "opened"), ("spool", "opened")}
        # Between two runs: 2000 accepted, 300 refused for unknown_site, 5000 bots (an exclusion).
        collector.metrics = _metrics(3000, 300, 5000)
        status.write_text(json.dumps({"state": "running", "updated_at": time.time(), "lag_seconds": 1, "backlog_bytes": 0}))
        second = run_checks(client, settings, only=["ingestion"], now=NOW + timedelta(minutes=15))
        assert {(t.scope_value, t.change) for t in second} == {
            ("loader", "resolved"), ("spool", "resolved"), ("refus:unknown_site", "opened")}
        refusal = [t for t in second if t.change == "opened"][0]
        assert refusal.observed == round(300 / 2300, 6)
    finally:
        collector.close()


def test_webhook_one_post_per_run_with_retry(env: Any) -> None:
    client, settings = env
    receiver = Receiver(statuses=[503])  # the first attempt fails, the retry succeeds
    try:
        settings = settings.model_copy(update={"quality_webhook_url": receiver.url, "quality_webhook_backoff_s": 0.05})
        bad = [hit(SITE_BZH, NOW - timedelta(hours=1, seconds=i), uai="123", flags=["invalid_uai"], service="", visitor_id=i,
                   url=f"/b{i}") for i in range(60)]
        insert_hits(client, clean_hits(SITE_BZH, NOW - timedelta(hours=20), 200) + bad)
        transitions = run_checks(client, settings, only=["invalid_uai", "missing_properties"], now=NOW)
        assert len(transitions) == 2
        assert len(receiver.bodies) == 2 and receiver.bodies[0] == receiver.bodies[1]
        body = receiver.bodies[-1]
        assert {a["check"] for a in body["opened"]} == {"invalid_uai", "missing_properties"} and body["resolved"] == []
        # Nothing changes on the next run: no POST at all.
        run_checks(client, settings, only=["invalid_uai", "missing_properties"], now=NOW + timedelta(minutes=15))
        assert len(receiver.bodies) == 2
    finally:
        receiver.close()


def test_gauges_file_and_prometheus_rendering(env: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    client, settings = env
    insert_hits(client, [hit(SITE_BZH, NOW - timedelta(hours=1, seconds=i), uai="X", flags=["invalid_uai"], visitor_id=i,
                             url=f"/g{i}") for i in range(150)])
    run_checks(client, settings, only=["invalid_uai"], now=NOW)
    doc = json.loads((settings.data_dir / "quality_status.json").read_text())
    assert {"check": "invalid_uai", "severity": "critical", "open": 1} in doc["open"]
    registry = CollectorRegistry()
    registry.register(QualityGauges(settings.data_dir))
    text = generate_latest(registry).decode()
    assert 'dnma_quality_open_alerts{check="invalid_uai",severity="critical"} 1.0' in text
    assert 'dnma_quality_open_alerts{check="silence",severity="warning"} 0.0' in text
    assert 'dnma_quality_check_failed{check="invalid_uai"} 0.0' in text


def test_checks_due(env: Any) -> None:
    _, settings = env
    assert checks_due(settings, None)
    assert not checks_due(settings, 1000.0, now=1000.0 + settings.quality_checks_interval_s - 1)
    assert checks_due(settings, 1000.0, now=1000.0 + settings.quality_checks_interval_s)
    assert not checks_due(settings.model_copy(update={"quality_checks_interval_s": 0}), None)
