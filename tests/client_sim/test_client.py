"""The Python tracking client against the real collector: single GET/POST hits, bulk batches,
past `cdt` with and without a token, properties mapped to dimension slots."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from dnma_client import Tracker
from dnma_client.client import encode_hit
from harness import DEMO_SITE_ID, DEMO_TOKEN, SUPER_TOKEN, Stack

from dnma import clock

URL = "https://ent.demo.example/cahier_textes"


def test_single_hits_get_and_post(collector_stack: Stack) -> None:
    with Tracker(collector_stack.collector_url, DEMO_SITE_ID, uid="eleve-1") as t:
        assert t.page(URL, "Cahier de textes", uai="0350122T", service="CAHIER_TEXTES", profil="ELEVE").status_code == 204
        assert t.event("ressource", "consultation", "manuel", 2.5, url=URL).status_code == 204
        assert t.download("https://ent.demo.example/doc.pdf").status_code == 204
        assert t.outlink("https://www.pronote.example/").status_code == 204
        assert t.ping().status_code == 204
        assert t.send(t.page_hit(URL), method="POST").status_code == 204
        # An event without an action is refused by the collector, as Matomo does.
        bad = t.send(t.params(extra={"e_c": "ressource", "e_a": " ", "ca": 1}))
        assert bad.status_code == 400


def test_properties_travel_in_their_slots() -> None:
    t = Tracker("http://127.0.0.1:1", 3, uid="u1", properties={"projet": "ENT_X"})
    p = t.page_hit(URL, uai="0940176F", service="NOTES", type="TIERS", outil="PRONOTE", profil="PARENT")
    assert (p["dimension1"], p["dimension2"], p["dimension3"], p["dimension4"], p["dimension5"], p["dimension6"]) == (
        "0940176F", "NOTES", "TIERS", "PRONOTE", "PARENT", "ENT_X")
    assert p["idsite"] == "3" and p["uid"] == "u1" and len(p["_id"]) == 16
    assert encode_hit(p).startswith("?idsite=3&rec=1&")
    with pytest.raises(TypeError):
        t.page_hit(URL, academie="Rennes")
    with pytest.raises(ValueError):
        t.page_hit(URL, cdt=datetime(2025, 1, 1))  # naive: ambiguous
    t.close()


def test_bulk_answer_and_invalid_indices(collector_stack: Stack) -> None:
    with Tracker(collector_stack.collector_url, DEMO_SITE_ID, SUPER_TOKEN, uid="prof-1") as t:
        hits = [t.page_hit(f"{URL}/{i}", profil="ENSEIGNANT") for i in range(5)]
        hits.append({"idsite": "999", "rec": "1", "url": URL})  # unknown site: invalid, not fatal
        answer = t.bulk(hits)
    assert answer["status"] == "success"
    assert (answer["tracked"], answer["invalid"]) == (5, 1)
    assert answer["invalid_indices"] == [5]  # super-user token only
    with pytest.raises(ValueError):
        Tracker(collector_stack.collector_url, 1).bulk(["?idsite=1&rec=1"] * 1001)


def test_past_cdt_requires_a_token(collector_stack: Stack) -> None:
    three_days_ago = clock.now() - timedelta(days=3)
    with Tracker(collector_stack.collector_url, DEMO_SITE_ID) as anonymous:
        assert anonymous.page(URL, cdt=three_days_ago).status_code == 400
        # Within 24 h no token is needed.
        assert anonymous.page(URL, cdt=clock.time() - 3600).status_code == 204
        answer = anonymous.bulk([anonymous.page_hit(URL, cdt=three_days_ago)])
        assert answer["invalid"] == 1
    with Tracker(collector_stack.collector_url, DEMO_SITE_ID, DEMO_TOKEN) as site_token:
        assert site_token.page(URL, cdt=three_days_ago).status_code == 204
        assert site_token.bulk([site_token.page_hit(URL, cdt=three_days_ago)])["invalid"] == 0
    with Tracker(collector_stack.collector_url, DEMO_SITE_ID, "wrong-token") as wrong:
        assert wrong.page(URL, cdt=three_days_ago).status_code == 400


def test_connection_reuse(collector_stack: Stack) -> None:
    """One pooled client for many hits: a shared httpx.Client is used, not one per request."""
    shared = httpx.Client()
    a = Tracker(collector_stack.collector_url, DEMO_SITE_ID, client=shared)
    b = Tracker(collector_stack.collector_url, DEMO_SITE_ID, client=shared)
    assert a.http is b.http is shared
    for _ in range(20):
        assert a.page(URL).status_code == 204
    a.close()  # a borrowed client stays open for its owner
    assert b.page(URL).status_code == 204
    shared.close()
