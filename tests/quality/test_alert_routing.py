"""Alerts to the editors concerned (issue 20, item 4): an alert about a site goes, besides the
ops-wide webhook, to the webhook and e-mail addresses its site and its ENT project name in the sites
file, and only the alerts that concern them. Real checks on real chDB, a real local HTTP server
receiving the webhooks and a real local SMTP server (a small socketserver sink) receiving the mails;
an editor whose endpoint is down costs nothing to the others."""

from __future__ import annotations

import email
import json
import socketserver
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage, Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aggregator.checks.notify import concerned
from aggregator.checks.runner import run_checks
from aggregator.checks.store import Transition
from dnma.sites import AlertContacts, Site, SiteRegistry, dump_sites
from tests.harness import free_port
from tests.quality.conftest import SITE_BZH, SITE_CRE, clean_hits, hit, insert_hits, paris, sites

NOW = paris(2024, 10, 15, 12, 0)  # a Tuesday in term time, as tests/quality/test_checks.py


class Receiver:
    """A webhook receiver (POST path -> JSON bodies) and an SMTP sink (recipient -> messages)."""

    def __init__(self) -> None:
        self.posts: dict[str, list[dict[str, Any]]] = {}
        self.mails: dict[str, list[Message]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver.lock:
                    receiver.posts.setdefault(self.path, []).append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Smtp(socketserver.StreamRequestHandler):
            """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                rcpts: list[str] = []
                while line := self.rfile.readline():
                    cmd = line.decode().strip()
                    verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                    if verb == "MAIL":
                        rcpts = []
                    elif verb == "RCPT":
                        rcpts.append(cmd.split(":", 1)[1].strip().strip("<>").split(">")[0])
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        with receiver.lock:
                            for r in rcpts:
                                receiver.mails.setdefault(r, []).append(email.message_from_bytes(data, policy=policy.default))
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    self.reply("250 ok")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
        self.smtp.daemon_threads = True
        for server in (self.http, self.smtp):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}{path}"

    def close(self) -> None:
        for server in (self.http, self.smtp):
            server.shutdown()
            server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def scopes(body: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(t["check"], t["scope_kind"], t["scope_value"]) for t in body["opened"]}


def test_site_alerts_reach_their_editors_and_only_theirs(env: Any, receiver: Receiver) -> None:
    client, settings = env
    registry = sites()
    registry[1]["alerts"] = {"webhook": receiver.url("/ent-cre"), "emails": ["editeur@ent-cre.example"]}
    dead = f"http://127.0.0.1:{free_port()}/down"  # nothing listens: an editor's endpoint that is down
    dump_sites(registry, settings.resolved_sites_file, {
        "ENT_BZH": {"alerts": {"webhook": receiver.url("/ent-bzh"), "emails": ["pilote@ent-bzh.example"]}},
        "ENT_CRE": {"alerts": {"webhook": dead}},
    })
    settings = settings.model_copy(update={
        "quality_webhook_url": receiver.url("/ops"), "quality_webhook_retries": 0,
        "quality_smtp_host": "127.0.0.1", "quality_smtp_port": receiver.smtp.server_address[1],
        "quality_email_from": "dnma@mesure.example",
    })
    bad = [hit(site, NOW - timedelta(hours=3, seconds=i * 7), uai="0350000X", flags=["invalid_uai"],
               visitor_id=i, url=f"/x{site}-{i}") for site in (SITE_BZH, SITE_CRE) for i in range(30)]
    insert_hits(client, clean_hits(SITE_BZH, NOW - timedelta(hours=20), 300)
                + clean_hits(SITE_CRE, NOW - timedelta(hours=20), 300) + bad)

    transitions = run_checks(client, settings, only=["invalid_uai"], now=NOW)
    site_1, site_2 = ("invalid_uai", "site", str(SITE_BZH)), ("invalid_uai", "site", str(SITE_CRE))
    assert {(t.check, t.scope_kind, t.scope_value) for t in transitions} == {site_1, site_2}

    # Ops: everything, once. Each editor: its own site's alert, once, saying whom it is sent for.
    assert [scopes(b) for b in receiver.posts["/ops"]] == [{site_1, site_2}]
    [bzh] = receiver.posts["/ent-bzh"]
    assert scopes(bzh) == {site_1} and bzh["concerne"] == ["projet ENT_BZH"]
    [cre] = receiver.posts["/ent-cre"]
    assert scopes(cre) == {site_2} and cre["concerne"] == ["site 2"]
    assert set(receiver.posts) == {"/ops", "/ent-bzh", "/ent-cre"}

    assert set(receiver.mails) == {"pilote@ent-bzh.example", "editeur@ent-cre.example"}
    [to_bzh] = receiver.mails["pilote@ent-bzh.example"]
    [to_cre] = receiver.mails["editeur@ent-cre.example"]
    assert to_bzh["From"] == "dnma@mesure.example" and "1 ouverte(s)" in to_bzh["Subject"]
    bzh_text, cre_text = (m.get_content() for m in (to_bzh, to_cre) if isinstance(m, EmailMessage))
    assert "(site 1, " in bzh_text and "(site 2, " not in bzh_text and "0350000X" in bzh_text
    assert "(site 2, " in cre_text and "(site 1, " not in cre_text


def test_who_an_alert_concerns() -> None:
    registry = _registry()
    hooks = {who: c.webhook for who, c in concerned(registry, _t("projet", "ENT_A"))}
    # An ENT project's alert: the project's editor and each of its sites'; not another project's.
    assert hooks == {"projet ENT_A": "http://a", "site 1": "http://s1", "site 2": "http://s2"}
    assert [who for who, _ in concerned(registry, _t("site", "3"))] == []  # no contacts, no project
    assert [who for who, _ in concerned(registry, _t("site", "2"))] == ["site 2", "projet ENT_A"]
    for kind, value in (("uai", "0350122T"), ("academie", "Rennes"), ("pipeline", "loader"), ("site", "99")):
        assert concerned(registry, _t(kind, value)) == []  # ops only


def _registry() -> SiteRegistry:
    return SiteRegistry([
        Site(1, "A1", "https://a1.example", projet="ENT_A", alerts=AlertContacts("http://s1")),
        Site(2, "A2", "https://a2.example", projet="ENT_A", alerts=AlertContacts("http://s2")),
        Site(3, "B", "https://b.example"),
    ], {"ENT_A": AlertContacts("http://a"), "ENT_B": AlertContacts("http://b", ("b@b.example",))})


def _t(kind: str, value: str) -> Transition:
    return Transition("opened", "volume", kind, value, "24h", "warning", 1.0, 0.0, "test")
