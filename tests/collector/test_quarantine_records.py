"""Refused requests are kept (#20): every refused single request and bulk item reaches the spool as a
quarantine record with its reason, site and receipt time, and nothing kept holds an IP, a raw uid or
a token (the spooled bytes are scanned)."""

from __future__ import annotations

from typing import Any

import orjson
from ct_support import DEMO_TOKEN, Collector, page

from dnma import clock


def _kept(collector: Collector, marker: str) -> list[dict[str, Any]]:
    return [r for r in collector.quarantined() if marker in r["request"].get("url", "")]


def test_refused_requests_are_kept_without_ip_uid_or_token(collector: Collector, marker: str) -> None:
    uid = f"eleve.{marker}@ent.example"
    ip, cip = "203.0.113.177", "198.51.100.177"
    wrong = f"wrong-token-{marker}"
    old_cdt = int(clock.time()) - 3 * 86_400
    xff = {"X-Forwarded-For": ip}
    answers = [
        collector.http.get("/matomo.php", params={"idsite": 907, "rec": 1, "url": page(marker, "a"), "uid": uid},
                           headers=xff),
        collector.http.get("/matomo.php", params={"idsite": 1, "rec": 1, "url": page(marker, "b"), "cip": cip,
                                                  "country": "fr", "token_auth": wrong}, headers=xff),
        collector.http.get("/matomo.php", params={"idsite": 1, "rec": 1, "url": page(marker, "c"), "cdt": old_cdt,
                                                  "token_auth": wrong}, headers=xff),
    ]
    assert [r.status_code for r in answers] == [400, 400, 400]
    bulk = {"token_auth": wrong, "requests": [
        f"?idsite=907&rec=1&url={page(marker, 'd')}&uid={uid}",
        f"?idsite=1&rec=1&url={page(marker, 'e')}&uid={uid}",
        f"?idsite=1&rec=1&url={page(marker, 'f')}&e_c=x&e_a=",
    ]}
    r = collector.http.post("/matomo.php", content=orjson.dumps(bulk), headers=xff)
    assert r.json()["invalid"] == 2

    kept = {r["request"]["url"].rsplit("/", 2)[-2]: r for r in _kept(collector, marker)}
    assert {k: (v["reason"], v["site_id"], v["bulk"]) for k, v in kept.items()} == {
        "a": ("unknown_site", 907, 0), "b": ("auth_required", 1, 0), "c": ("cdt_too_old", 1, 0),
        "d": ("unknown_site", 907, 1), "f": ("invalid_event", 1, 1)}
    now = clock.time()
    assert all(now - 120 <= v["received_at"] <= now + 1 for v in kept.values())
    assert kept["b"]["detail"] == "cip requires a valid token_auth" and kept["b"]["request"]["country"] == "fr"
    # uid hashed as for hits (the bulk's valid item carries the same uid), the visitor ids computed at
    # receipt (the fingerprint needs the IP that is not kept), the cip one apart.
    [stored] = collector.rows_with(marker)
    assert kept["a"]["user_hash"] == kept["d"]["user_hash"] == stored["user_hash"] != 0
    assert kept["b"]["visitor_id"] and kept["b"]["visitor_id_auth"] not in (0, kept["b"]["visitor_id"])
    for v in kept.values():
        assert not {"uid", "cip", "token_auth"} & set(v["request"]), v["request"]
        assert set(v["headers"]) <= {"user-agent", "accept-language", "referer", "dnt", "x-purpose", "purpose",
                                     "sec-purpose"}

    raw = collector.raw_spool()
    assert page(marker, "a").encode() in raw  # the scan reads the bytes the records were written to
    for secret in (uid, ip, cip, "203.0.113", "198.51.100", wrong, DEMO_TOKEN):
        assert secret.encode() not in raw, secret
