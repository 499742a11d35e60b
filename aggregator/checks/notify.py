"""Notifications of a run: the gauges file `<data_dir>/quality_status.json` (the collector's
/metrics serves it, see collector/quality_routes.py), one webhook POST per run to ops, retried, and
the editors' own: each alert about a site or an ENT project also goes to the webhook and e-mail
addresses that site and its project name in the sites YAML (`alerts:`, `projets:`), one POST per
webhook and one e-mail per address per run, holding only the alerts that concern them."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aggregator.checks.store import Transition
from dnma.sites import AlertContacts, SiteRegistry

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


def _payload(transitions: Sequence[Transition], run_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": "dnma",
        "run_at": run_at,
        **extra,
        "opened": [t.as_dict() for t in transitions if t.change == "opened"],
        "resolved": [t.as_dict() for t in transitions if t.change == "resolved"],
    }


def _post(settings: Any, url: str, payload: dict[str, Any], event: str) -> bool:
    """POST `payload`, retried with exponential backoff; False (logged as `event`) when it gave up."""
    import httpx

    delay = settings.quality_webhook_backoff_s
    for attempt in range(settings.quality_webhook_retries + 1):
        try:
            response = httpx.post(url, json=payload, timeout=5.0)
            if response.status_code < 300:
                return True
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refuses this payload: retrying will not change its mind
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        log.warning(f"{event}_retry", extra={"attempt": attempt + 1, "reason": reason})
        if attempt < settings.quality_webhook_retries:
            time.sleep(delay)
            delay *= 2
    return False


def post_webhook(settings: Any, transitions: Sequence[Transition], *, run_at: str) -> bool:
    """One POST grouping every transition of the run: never one request per alert, never a storm.

    Retries with exponential backoff, then gives up (logged): the alerts stay in the table and the
    dashboard, the webhook is a courtesy.
    """
    if not settings.quality_webhook_url or not transitions:
        return False
    if _post(settings, settings.quality_webhook_url, _payload(transitions, run_at), "quality_webhook"):
        return True
    log.error("quality_webhook_failed", extra={"transitions": len(transitions)})
    return False


# --- the editors' notifications ------------------------------------------------------------------


def concerned(registry: SiteRegistry, transition: Transition) -> list[tuple[str, AlertContacts]]:
    """Who an alert concerns besides ops, as (who, contacts): an alert about a site, that site's
    editor and its ENT project's; about an ENT project, the project's and each of its sites'.
    Alerts about an establishment, an académie or the pipeline go to ops only."""
    found: list[tuple[str, AlertContacts]] = []
    if transition.scope_kind == "site":
        site = registry.get(int(transition.scope_value)) if transition.scope_value.isdigit() else None
        if site is not None:
            found.append((f"site {site.id}", site.alerts))
            if site.projet:
                found.append((f"projet {site.projet}", registry.projects.get(site.projet, AlertContacts())))
    elif transition.scope_kind == "projet":
        code = transition.scope_value
        found.append((f"projet {code}", registry.projects.get(code, AlertContacts())))
        found += [(f"site {s.id}", s.alerts) for s in registry.all() if s.projet == code]
    return [(who, contacts) for who, contacts in found if contacts]


def editor_deliveries(registry: SiteRegistry, transitions: Sequence[Transition]) -> dict[tuple[str, str], list[Any]]:
    """(kind 'webhook' or 'email', address) -> [the transitions for it, the names of who it serves]:
    one delivery per address, whatever the number of sites and projects naming it."""
    out: dict[tuple[str, str], list[Any]] = {}
    for t in transitions:
        for who, contacts in concerned(registry, t):
            targets = ([("webhook", contacts.webhook)] if contacts.webhook else []) + [("email", a) for a in contacts.emails]
            for target in targets:
                items, names = out.setdefault(target, [[], []])
                if t not in items:
                    items.append(t)
                if who not in names:
                    names.append(who)
    return out


def email_text(transitions: Sequence[Transition], names: Sequence[str], run_at: str) -> tuple[str, str]:
    """An editor's e-mail, in French: (subject, body), one line per alert that opened or resolved."""
    opened = [t for t in transitions if t.change == "opened"]
    resolved = [t for t in transitions if t.change == "resolved"]
    counts = ", ".join(filter(None, [f"{len(opened)} ouverte(s)" if opened else "",
                                     f"{len(resolved)} résolue(s)" if resolved else ""]))
    subject = f"[DNMA] Alertes qualité ({', '.join(names)}) : {counts}"
    lines = [f"Contrôles qualité DNMA du {run_at}, pour : {', '.join(names)}.", ""]
    for title, items in (("Alertes ouvertes", opened), ("Alertes résolues", resolved)):
        if items:
            lines += [f"{title} :", *[f"- [{t.severity}] {t.check} ({t.scope_kind} {t.scope_value}, {t.window}) : "
                                      f"{t.message}" for t in items], ""]
    lines.append("Le détail est sur le tableau de bord Qualité de DNMA (votre périmètre).")
    return subject, "\n".join(lines) + "\n"


def _send_email(settings: Any, to: str, subject: str, body: str) -> bool:
    import smtplib
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.quality_email_from, to, subject
    msg["Date"], msg["Message-ID"] = formatdate(localtime=True), make_msgid(domain="dnma")
    msg.set_content(body)
    for attempt in range(settings.quality_webhook_retries + 1):
        try:
            with smtplib.SMTP(settings.quality_smtp_host, settings.quality_smtp_port, timeout=10) as smtp:
                if settings.quality_smtp_starttls:
                    smtp.starttls()
                if settings.quality_smtp_user:
                    smtp.login(settings.quality_smtp_user, settings.quality_smtp_password)
                smtp.send_message(msg)
            return True
        except smtplib.SMTPRecipientsRefused:
            break  # this address is refused: retrying will not change the server's mind
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("quality_email_retry", extra={"attempt": attempt + 1, "reason": type(exc).__name__})
            if attempt < settings.quality_webhook_retries:
                time.sleep(settings.quality_webhook_backoff_s * 2**attempt)
    return False


def notify_editors(settings: Any, registry: SiteRegistry, transitions: Sequence[Transition], *, run_at: str) -> dict[str, int]:
    """Send each editor the alerts that concern it (webhook: the ops payload restricted to them, with
    `concerne`; e-mail: email_text, when quality_smtp_host is set). Deliveries run side by side and
    never raise: a failure is logged and counted. Returns {"sent": n, "failed": m}."""
    deliveries = editor_deliveries(registry, transitions)
    if not settings.quality_smtp_host:
        deliveries = {k: v for k, v in deliveries.items() if k[0] != "email"}
    if not deliveries:
        return {"sent": 0, "failed": 0}

    def deliver(target: tuple[str, str], items: list[Transition], names: list[str]) -> bool:
        kind, address = target
        try:
            if kind == "webhook":
                return _post(settings, address, _payload(items, run_at, concerne=names), "quality_editor_webhook")
            return _send_email(settings, address, *email_text(items, names, run_at))
        except Exception:  # an editor's endpoint must never break the run
            log.exception("quality_editor_delivery_failed", extra={"kind": kind})
            return False

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(deliveries)), thread_name_prefix="alert-editors") as pool:
        results = list(pool.map(lambda kv: deliver(kv[0], *kv[1]), deliveries.items()))
    failed = results.count(False)
    if failed:  # which address is not logged: an editor's URL may hold a secret
        log.error("quality_editor_notifications_failed", extra={"failed": failed, "of": len(results)})
    return {"sent": len(results) - failed, "failed": failed}
