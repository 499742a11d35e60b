"""In headless Chromium, for each provisioned user and each dashboard (with Superset's menu bar and
filter panel, as the user sees it): no error state, and none of Superset's own English UI strings
(the msgids of the French catalogue in Superset's package, dnma_superset/ui_language.py) in the
rendered text.

`make test` runs the national user and an ENT's user (a perimeter user: the quality datasets' RLS,
the ENT's own coverage); `make test-superset-ui-language` (DNMA_SUPERSET_ALL_USERS=1) runs every
provisioned user, the départements' among them.
"""

from __future__ import annotations

import os

import pytest
from dnma_superset.browser import Browser
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.provision import RolePerimeters
from dnma_superset.ui_language import ERROR_SELECTORS, english_in, english_strings, error_phrases_in

from .conftest import ARTIFACTS, SupersetHandle

REPRESENTATIVE = ("dnma_national", "dnma_ent_bretagne")
ALL_USERS = tuple(u.username for u in RolePerimeters.load().users)
USERS = ALL_USERS if os.environ.get("DNMA_SUPERSET_ALL_USERS") == "1" else REPRESENTATIVE

_ERRORS_JS = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.slice(0, 200));"


def test_the_catalogue_is_read_and_short_words_are_left_out() -> None:
    """The scan's reference: thousands of English strings, the Superset strings this test is about
    among them, and no msgid whose French is the same text or too short to tell."""
    msgids = {e.msgid for e in english_strings()}
    assert len(msgids) > 3000
    assert {"No results", "Clear all", "Apply filters"} <= msgids
    assert "Description" not in msgids  # "Description" in French too
    assert "Error" not in msgids  # one short word
    assert english_in("Visites par profil : No results, Aucun résultat") == ["No results"]
    assert english_in("Appliquer les filtres ; 30 jours") == []


@pytest.mark.parametrize("username", USERS)
def test_no_english_and_no_error_on_any_dashboard(superset: SupersetHandle, username: str) -> None:
    found: dict[str, dict[str, list[str]]] = {}
    with Browser(superset.url) as b:
        b.login(username, superset.users()[username])
        for d in DASHBOARDS:
            load = b.open_dashboard(d.slug, len(d.charts()), standalone=False)
            text = b.text()
            assert d.title.split("— ")[1] in text, (username, d.slug)  # the page is there to scan
            errors = b.driver.execute_script(_ERRORS_JS, ", ".join(ERROR_SELECTORS))
            problems = {"error boxes": [*load.errors, *errors], "error phrases": error_phrases_in(text),
                        "English": english_in(text)}
            if load.rendered < load.charts:
                problems["not rendered"] = [f"{load.rendered} of {load.charts} charts"]
            problems = {k: v for k, v in problems.items() if v}
            if problems:
                found[d.slug] = problems
                b.screenshot(ARTIFACTS / f"langue-{username}-{d.slug}.png")
    assert found == {}, found
