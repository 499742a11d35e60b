"""ingestion: spool backlog and loader lag (from `<data_dir>/loader_status.json`, written by the
loader) and refused requests by reason (the collector's /metrics counters, between two runs)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aggregator.checks.base import Check, CheckContext, CheckResult, Finding, pct

STATE_FILE = "quality_ingestion_state.json"  # the collector counters seen at the previous run
MIN_REQUESTS = 100  # below this many requests between two runs, shares mean nothing


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when absent, unreadable or not an object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def collector_counters(url: str, timeout: float = 2.0) -> dict[str, float] | None:
    """accepted and dropped-by-reason totals from a collector's /metrics; None if unreachable."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url, timeout=timeout).text
    except httpx.HTTPError:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dnma_collector_hits_accepted_total":
                out["accepted"] = out.get("accepted", 0.0) + sample.value
            elif sample.name == "dnma_collector_hits_dropped_total":
                key = "dropped:" + sample.labels.get("reason", "")
                out[key] = out.get(key, 0.0) + sample.value
            elif sample.name in ("dnma_collector_spool_full_total", "dnma_collector_spool_errors_total"):
                key = "dropped:" + sample.name.removeprefix("dnma_collector_").removesuffix("_total")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def run(ctx: CheckContext) -> CheckResult:
    s = ctx.settings
    now = ctx.now
    result = CheckResult("now", now, now)
    status = read_json(s.data_dir / "loader_status.json")
    if status:
        backlog = float(status.get("backlog_bytes", 0))
        limit = s.quality_backlog_max_share * s.spool_max_bytes
        if backlog > limit:
            result.findings.append(
                Finding("pipeline", "spool", observed=backlog, expected=limit,
                        severity="critical" if backlog > 0.9 * s.spool_max_bytes else "warning",
                        message=f"Spool en retard : {backlog / 1024**2:.0f} Mo en attente ({pct(backlog / s.spool_max_bytes)} du plafond)")
            )
        lag = float(status.get("lag_seconds", 0))
        stale = status.get("state") == "running" and time.time() - float(status.get("updated_at", 0)) > 600
        if lag > s.quality_loader_lag_max_s or stale:
            result.findings.append(
                Finding("pipeline", "loader", observed=lag, expected=s.quality_loader_lag_max_s,
                        message="Loader bloqué : statut non mis à jour depuis 10 min" if stale
                        else f"Retard du loader : {lag:.0f} s (seuil {s.quality_loader_lag_max_s:.0f} s)")
            )
    else:
        result.skipped.update({("pipeline", "spool"), ("pipeline", "loader")})
    _refusals(ctx, result)
    return result


def _refusals(ctx: CheckContext, result: CheckResult) -> None:
    s = ctx.settings
    counters = collector_counters(f"http://{s.collector_host}:{s.collector_port}/metrics")
    state_path = s.data_dir / STATE_FILE
    previous = read_json(state_path).get("counters", {})
    if counters is None:
        result.skipped.add(("pipeline", "refus:*"))  # collector down: keep refusal alerts as they are
        return
    tmp = state_path.with_name(f".{STATE_FILE}.tmp")
    tmp.write_text(json.dumps({"at": time.time(), "counters": counters}), encoding="utf-8")
    tmp.replace(state_path)
    if not previous:
        result.skipped.add(("pipeline", "refus:*"))  # first sight: no interval to judge yet
        return
    # A collector restart resets its counters: negative deltas mean "start again from zero".
    delta = {k: (v - previous.get(k, 0.0)) if v >= previous.get(k, 0.0) else v for k, v in counters.items()}
    ignored = {f"dropped:{r}" for r in s.quality_refused_ignored}
    refused = {k.split(":", 1)[1]: v for k, v in delta.items() if k.startswith("dropped:") and k not in ignored}
    total = delta.get("accepted", 0.0) + sum(refused.values())
    if total < MIN_REQUESTS:
        return
    for reason, n in sorted(refused.items()):
        share = n / total
        if share > s.quality_refused_max_share:
            result.findings.append(
                Finding("pipeline", f"refus:{reason}", observed=round(share, 6), expected=s.quality_refused_max_share,
                        message=f"{pct(share)} des requêtes refusées pour « {reason} » depuis le dernier contrôle ({int(n)})",
                        details={"refus": int(n), "requetes": int(total)})
            )


CHECK = Check("ingestion", "Santé de l'ingestion : spool, retard du loader, requêtes refusées", run)
