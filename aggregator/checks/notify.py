"""Notifications of a run: the gauges file `<data_dir>/quality_status.json` (the collector's
/metrics serves it, see collector/quality_routes.py) and one webhook POST per run, retried."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aggregator.checks.store import Transition

STATUS_FILE = "quality_status.json"
log = logging.getLogger("dnma.checks")


def open_alert_counts(client: Any, database: str) -> list[dict[str, Any]]:
    rows = client.query(
        f"SELECT `check`, severity, count() FROM {database}.quality_alerts_current "
        "WHERE status = 'open' GROUP BY `check`, severity ORDER BY `check`, severity"
    ).result_rows
    return [{"check": c, "severity": s, "open": int(n)} for c, s, n in rows]


def write_status(settings: Any, client: Any, runs: dict[str, dict[str, Any]], checks: Sequence[str]) -> dict[str, Any]:
    """Atomically replace the gauges file: open alerts per check and severity, last run per check."""
    path = settings.data_dir / STATUS_FILE
    previous: dict[str, Any] = {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    counts = open_alert_counts(client, settings.clickhouse_database)
    doc = {
        "updated_at": time.time(),
        "checks": list(checks),
        "open": counts,
        # A partial run (--check X) keeps the other checks' last run.
        "runs": {**previous.get("runs", {}), **runs},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)  # the collector never reads half a file
    return doc


def post_webhook(settings: Any, transitions: Sequence[Transition], *, run_at: str) -> bool:
    """One POST grouping every transition of the run: never one request per alert, never a storm.

    Retries with exponential backoff, then gives up (logged): the alerts stay in the table and the
    dashboard, the webhook is a courtesy.
    """
    if not settings.quality_webhook_url or not transitions:
        return False
    import httpx

    payload = {
        "source": "dnma",
        "run_at": run_at,
        "opened": [t.as_dict() for t in transitions if t.change == "opened"],
        "resolved": [t.as_dict() for t in transitions if t.change == "resolved"],
    }
    delay = settings.quality_webhook_backoff_s
    for attempt in range(settings.quality_webhook_retries + 1):
        try:
            response = httpx.post(settings.quality_webhook_url, json=payload, timeout=5.0)
            if response.status_code < 300:
                return True
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refuses this payload: retrying will not change its mind
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        log.warning("quality_webhook_retry", extra={"attempt": attempt + 1, "reason": reason})
        if attempt < settings.quality_webhook_retries:
            time.sleep(delay)
            delay *= 2
    log.error("quality_webhook_failed", extra={"transitions": len(transitions)})
    return False
