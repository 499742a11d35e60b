"""Privacy (no raw IP or uid anywhere in the spool) and DNMA quality flags (kept, flagged, 200)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from ct_support import DEMO_TOKEN, Collector, page

from collector.hit import DropReason


def test_no_raw_ip_or_uid_in_the_spooled_bytes(collector: Collector, marker: str) -> None:
    uid = f"prenom.nom.{marker}@ent.example"
    ip, cip = "203.0.113.77", "198.51.100.213"
    r1 = collector.http.get(
        "/matomo.php",
        params={"idsite": 1, "rec": 1, "url": page(marker), "uid": uid},
        headers={"X-Forwarded-For": ip},
    )
    r2 = collector.http.get(
        "/matomo.php",
        params={"idsite": 1, "rec": 1, "url": page(marker), "cip": cip, "token_auth": DEMO_TOKEN},
    )
    bulk = {"requests": [f"?idsite=1&rec=1&url={page(marker)}&uid={uid}"]}
    r3 = collector.http.post("/matomo.php", content=orjson.dumps(bulk), headers={"X-Forwarded-For": ip})
    assert (r1.status_code, r2.status_code, r3.json()["tracked"]) == (200, 200, 1)
    assert len(collector.rows_with(marker)) == 3
    raw = collector.raw_spool()
    assert page(marker).encode() in raw  # the scan below reads the bytes these hits were written to
    for secret in (uid, ip, cip, "203.0.113", "198.51.100.213", DEMO_TOKEN):
        assert secret.encode() not in raw, secret
    rows = collector.rows_with(marker)
    assert rows[0]["user_hash"] == rows[2]["user_hash"] != 0


def test_no_ip_or_query_string_in_the_collector_log(collector: Collector, marker: str) -> None:
    collector.http.get(
        "/matomo.php",
        params={"idsite": "oops", "url": page(marker)},
        headers={"X-Forwarded-For": "203.0.113.99"},
    )
    log = collector.stack.log_tail("collector", 200_000)
    assert "collector_ready" in log  # the scan reads the collector's own log
    assert "203.0.113.99" not in log and marker not in log


def test_drop_reason_labels_carry_no_request_value(collector: Collector, marker: str) -> None:
    """Dropped hits are counted under the fixed reason names, never under what the request sent."""
    r = collector.http.get(
        "/matomo.php",
        params={"idsite": f"oops-{marker}", "rec": 1, "url": page(marker)},
        headers={"X-Forwarded-For": "203.0.113.98"},
    )
    assert r.status_code == 400
    metrics = collector.http.get("/metrics").text
    assert 'dnma_collector_hits_dropped_total{reason="invalid_site"}' in metrics  # this hit's drop, counted
    dropped = set(re.findall(r'^dnma_collector_hits_dropped_total\{reason="([^"]*)"\}', metrics, re.M))
    assert dropped == {str(reason) for reason in DropReason}  # each at 0 from the start, none from the request
    assert "203.0.113.98" not in metrics and marker not in metrics


def track(collector: Collector, marker: str, site: int = 1, **dims: Any) -> tuple[int, list[dict[str, Any]]]:
    r = collector.http.get("/matomo.php", params={"idsite": site, "rec": 1, "url": page(marker), **dims})
    return r.status_code, collector.rows_with(marker)


GOOD = {"dimension1": "0350122T", "dimension2": "NOTES", "dimension3": "NATIF", "dimension5": "ELEVE"}

FLAG_CASES = [
    ("all good", {}, []),
    (
        "good, lower case and spaces",
        {"dimension1": " 0350122t ", "dimension2": "notes", "dimension5": "eleve"},
        [],
    ),
    ("invalid UAI check letter", {"dimension1": "0450822X"}, ["invalid_uai"]),
    ("invalid UAI format", {"dimension1": "0351122O"}, ["invalid_uai"]),
    ("invalid UAI département", {"dimension1": "0990000A"}, ["invalid_uai"]),
    ("missing UAI", {"dimension1": ""}, ["missing_uai"]),
    ("UAI outside the perimeter", {"dimension1": "0071245R"}, ["outside_perimeter"]),
    ("UAI in the perimeter (94)", {"dimension1": "0940176F"}, []),
    ("unknown service", {"dimension2": "CANTINE"}, ["unknown_service"]),
    ("missing service", {"dimension2": " "}, ["missing_service"]),
    ("unknown type", {"dimension3": "AUTRE"}, ["unknown_type"]),
    ("missing profil", {"dimension5": ""}, ["missing_profil"]),
    ("unknown profil", {"dimension5": "DIRECTEUR"}, ["unknown_profil"]),
]


@pytest.mark.parametrize(("case", "dims", "flags"), FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_doubtful_dnma_data_is_kept_and_flagged(
    collector: Collector, marker: str, case: str, dims: dict[str, str], flags: list[str]
) -> None:
    status, rows = track(collector, marker, **{**GOOD, **dims})
    assert status == 200
    [row] = rows
    assert sorted(row["flags"]) == sorted(flags)


def test_properties_are_normalised_and_fixed_values_win(collector: Collector, marker: str) -> None:
    _, [row] = track(
        collector,
        marker,
        **{
            **GOOD,
            "dimension2": "Production_Collaborative",
            "dimension4": "  pronote ",
            "dimension6": "AUTRE",
        },
    )
    assert (row["uai"], row["service"], row["type"], row["outil"], row["profil"]) == (
        "0350122T", "production_collaborative", "NATIF", "PRONOTE", "ELEVE",
    )  # fmt: skip
    assert (row["projet"], row["exploitant"], row["plateforme"]) == (
        "ENT_DEMO",
        "DEMO",
        "DEMO",
    )  # from the site


def test_site_mapping_override_and_unfixed_projet(collector: Collector, marker: str) -> None:
    # site 3: 1=uai, 3=service, 4=profil, 5=type, 6=projet, 7=outil; nothing fixed, no perimeter
    status, [row] = track(
        collector, marker, site=3, dimension1="0071245R", dimension3="notes", dimension4="parent", dimension5="tiers",
        dimension6="ENT_X", dimension7="moodle", dimension2="libre",
    )  # fmt: skip
    assert status == 200
    assert (row["uai"], row["service"], row["profil"], row["type"], row["projet"], row["outil"]) == (
        "0071245R", "notes", "PARENT", "TIERS", "ENT_X", "MOODLE",
    )  # fmt: skip
    assert row["dimensions"] == {"dimension2": "libre"}
    assert row["flags"] == []
