"""The debug view's verdict says what will count (issue 20, item 5): a hit stored with an invalid
UAI is "enregistré, exclu des indicateurs" with the exact problem, an unknown value comes with the
allowed ones, each flag links to its rule in the tagging guide, and a clean hit stays "enregistré".
Through the real collector: open the view, send hits, read /debug/hits."""

from __future__ import annotations

import time
from typing import Any

from ct_support import SITE3_TOKEN, Collector, page

SITE = 3  # ct_support: dimension1 uai, 3 service, 4 profil, 5 type, 7 outil; no perimeter


def _record(collector: Collector, marker: str, status: int = 200, **dims: str) -> dict[str, Any]:
    """Open the view, send one pageview carrying `marker` (answered `status`), return its debug record."""
    auth = {"idsite": SITE, "token_auth": SITE3_TOKEN}
    assert collector.http.get("/debug", params=auth).status_code == 200
    time.sleep(1.2)  # every worker notices the open view within a second
    params = {"idsite": SITE, "rec": 1, "url": page(marker), **dims}
    assert collector.http.get("/matomo.php", params=params).status_code == status
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for h in collector.http.get("/debug/hits", params={**auth, "limit": 500}).json()["hits"]:
            if marker in h["url"]:
                return h
        time.sleep(0.05)
    raise AssertionError(f"no debug record for {marker}")


def test_invalid_check_letter_is_stored_but_excluded(collector: Collector, marker: str) -> None:
    # The check letter of 0450822, worked out by hand: 450822 = 23 × 19600 + 22, and the 23rd
    # letter of ABCDEFGHJKLMNPRSTUVWXYZ (no I, O, Q) is Z.
    h = _record(collector, marker, dimension1="0450822a", dimension3="NOTES", dimension4="ELEVE",
                dimension5="NATIF")  # fmt: skip
    assert h["verdict"] == "accepted" and h["counted"] is False
    assert h["verdict_label"] == "enregistré, exclu des indicateurs : UAI invalide (lettre de contrôle Z attendue)"
    (flag,) = h["flags"]
    assert flag["code"] == "invalid_uai"
    assert flag["label"] == "UAI invalide (lettre de contrôle Z attendue)"
    assert flag["rule"].endswith("#règle-uai")
    assert len(collector.rows_with(marker)) == 1  # stored all the same


def test_bad_departement_says_so(collector: Collector, marker: str) -> None:
    h = _record(collector, marker, dimension1="0000001A", dimension3="NOTES", dimension4="ELEVE",
                dimension5="NATIF")  # fmt: skip
    assert h["verdict_label"] == "enregistré, exclu des indicateurs : UAI invalide (département « 000 » inexistant)"


def test_unknown_values_come_with_the_allowed_ones(collector: Collector, marker: str) -> None:
    h = _record(collector, marker, dimension1="0350122T", dimension3="NOTE", dimension4="ELEVES",
                dimension5="natif")  # fmt: skip
    flags = {f["code"]: f for f in h["flags"]}
    assert set(flags) == {"unknown_service", "unknown_profil"}
    service = flags["unknown_service"]
    assert service["label"].startswith("SERVICE inconnu « note » : valeurs admises : NOTES, ")
    assert service["label"].endswith("; la plus proche : NOTES")
    assert "liste complète dans le guide" in service["label"]  # 25 services: the label is cut
    assert len(service["allowed"]) == 25 and {"NOTES", "ACCUEIL", "RESSOURCE_DOCUMENTAIRE"} <= set(service["allowed"])
    assert service["rule"].endswith("#services")
    profil = flags["unknown_profil"]
    assert "PROFIL inconnu « ELEVES » : valeurs admises : ELEVE, " in profil["label"]
    assert "ENSEIGNANT" in profil["label"] and "PERSONNEL_COLLECTIVITE" in profil["label"]  # short list: whole
    assert profil["rule"].endswith("#profils")
    # Unknown values are counted (shown as given): the hit is not excluded.
    assert (h["verdict_label"], h["counted"]) == ("enregistré", True)


def test_clean_hit_stays_enregistre(collector: Collector, marker: str) -> None:
    # 0350122T: 350122 = 23 × 15222 + 16, the 17th letter is T: a valid UAI.
    h = _record(collector, marker, dimension1="0350122t", dimension3="notes", dimension4="ELEVE",
                dimension5="NATIF")  # fmt: skip
    assert (h["verdict"], h["verdict_label"], h["counted"], h["flags"]) == ("accepted", "enregistré", True, [])


def test_unknown_type_names_both_allowed_values(collector: Collector, marker: str) -> None:
    h = _record(collector, marker, dimension1="0350122T", dimension3="notes", dimension4="ELEVE",
                dimension5="NATIVE")  # fmt: skip
    (flag,) = h["flags"]
    assert flag["code"] == "unknown_type" and flag["allowed"] == ["NATIF", "TIERS"]
    assert flag["label"].startswith("TYPE inconnu « NATIVE » : valeurs admises : NATIF, TIERS")
    assert flag["rule"].endswith("#types") and (h["verdict_label"], h["counted"]) == ("enregistré", True)


def test_a_refused_request_says_why_and_links_its_rule(collector: Collector, marker: str) -> None:
    # `cip` is for authenticated trackers only: refused without the site's token, nothing stored.
    h = _record(collector, marker, 400, dimension1="0350122T", cip="192.0.2.1")
    assert (h["verdict"], h["counted"], h["reason"]) == ("refused", False, "auth_required")
    assert h["verdict_label"].startswith("refusé") and "cip" in h["detail"]
    assert h["reason_rule"].endswith("#règle-token_auth")
    assert collector.rows_with(marker) == []
