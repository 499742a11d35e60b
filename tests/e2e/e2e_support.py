"""Constants and the site registry shared by the end-to-end tests (imported by name: several
test folders have a conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import DEMO_SITE_ID, DEMO_TOKEN, REPO  # noqa: E402

from dnma.sites import hash_token  # noqa: E402

PAGES = REPO / "tagging-sdk" / "js" / "test" / "pages"
TAG = REPO / "tagging-sdk" / "js" / "dist" / "dnma.iife.js"

GOOD_SITE = DEMO_SITE_ID  # good.html in the browser
MATOMO_SITE = 3  # matomo.html in the browser
CHECK_SITE = 4  # dnma tag-check runs and the debug view: kept apart from the visits above
SITE_TOKENS = {GOOD_SITE: DEMO_TOKEN, MATOMO_SITE: "site3-token", CHECK_SITE: "site4-token"}


def e2e_sites() -> list[dict[str, Any]]:
    # No PROJET fixed in the registration: the page's value is stored.
    return [
        {
            "id": site_id,
            "name": f"ENT e2e {site_id}",
            "main_url": f"https://ent{site_id}.example",
            "token_sha256": hash_token(token),
            "perimeter": {"degrees": ["1D", "2D"], "departements": ["035", "094"]},
        }
        for site_id, token in SITE_TOKENS.items()
    ]
