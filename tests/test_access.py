"""The access model (dnma/access.py), each rule once: the super user, a site's token, perimeter
tokens (issued, listed and revoked by `dnma access`, stored hashed, view only, over the sites
whose declared perimeter overlaps), Bearer headers, the registry's reload on change, the
vocabulary shared with Superset's perimeters; then the same rules through every route of a real
collector (tracking, bulk, Matomo API, reporting, debug view, quality alerts)."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import DEMO_TOKEN, REPO, SUPER_TOKEN, Stack, demo_sites

from dnma import access
from dnma.access import Access, PerimeterFilter, Role
from dnma.settings import Settings
from dnma.sites import dump_sites, hash_token

SHARED_TOKEN = "token-of-sites-3-and-4"


def sites() -> list[dict[str, Any]]:
    """1: départements 035 and 094, projet ENT_DEMO; 2: no territory, no projet; 3: académie de
    Créteil, projet ENT_94_1D; 4: région 53 (Bretagne), projet ENT_BRETAGNE; 3 and 4 share a token."""
    return [
        *demo_sites(),
        {"id": 3, "name": "ENT 94", "main_url": "https://ent94.example", "token_sha256": hash_token(SHARED_TOKEN),
         "projet": "ENT_94_1D", "perimeter": {"degrees": ["1D"], "academies": ["Créteil"]}},
        {"id": 4, "name": "ENT Bretagne", "main_url": "https://entbzh.example", "token_sha256": hash_token(SHARED_TOKEN),
         "projet": "ENT_BRETAGNE", "perimeter": {"regions": ["region:53"]}},
    ]


ALL = {1, 2, 3, 4}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    dump_sites(sites(), tmp_path / "sites.yaml")
    return Settings(data_dir=tmp_path, sites_file=tmp_path / "sites.yaml", super_user_token=SUPER_TOKEN)


def rights(registry: Access, token: str) -> dict[str, set[int]]:
    grant = registry.grant(token)
    assert grant is not None
    return {right: {i for i in ALL if getattr(grant, f"may_{right}")(i)} for right in ("write", "operate", "view")}


# --- the rules -------------------------------------------------------------------------------------


def test_super_user_may_do_everything_and_only_its_exact_token_is_it(settings: Settings) -> None:
    registry = Access(settings)
    assert rights(registry, SUPER_TOKEN) == {"write": ALL, "operate": ALL, "view": ALL}
    assert registry.is_super_user(SUPER_TOKEN) and registry.grant(SUPER_TOKEN).is_super_user  # type: ignore[union-attr]
    for near in (SUPER_TOKEN + " ", SUPER_TOKEN.upper(), SUPER_TOKEN[:-1], ""):
        assert not registry.is_super_user(near) and registry.grant(near) is None
    unset = Access(settings.model_copy(update={"super_user_token": ""}))
    assert not unset.is_super_user("") and unset.grant("") is None


def test_a_site_token_writes_operates_and_views_its_sites_only(settings: Settings) -> None:
    registry = Access(settings)
    assert rights(registry, DEMO_TOKEN) == {"write": {1}, "operate": {1}, "view": {1}}
    assert rights(registry, SHARED_TOKEN) == {"write": {3, 4}, "operate": {3, 4}, "view": {3, 4}}
    grant = registry.grant(DEMO_TOKEN)
    assert grant is not None and grant.role is Role.SITE and grant.establishments is None
    assert registry.grant("not-a-token") is None


@pytest.mark.parametrize(("perimeter", "views"), [
    ("academie:Rennes", {1, 4}),  # 1 declares 035, 4 the région of Rennes
    ("region:Ile-de-France", {1, 3}),  # 1 declares 094, 3 the académie de Créteil
    ("departement:Val-de-Marne", {1, 3}),
    ("academie:Versailles", set()),
    ("projet:ENT_BRETAGNE", {4}),
    ("national", ALL),  # the only perimeter that views site 2, which declares no territory
    ("site:4", {4}),  # a site's editor: that site, whatever its declared territory
    ("site:2", {2}),
    ("site:9", set()),  # no such site
])
def test_a_perimeter_token_views_the_sites_its_perimeter_overlaps_and_never_writes(
    settings: Settings, perimeter: str, views: set[int]
) -> None:
    token = access.issue(settings, "t", PerimeterFilter.parse(perimeter))
    registry = Access(settings)
    assert rights(registry, token) == {"write": set(), "operate": set(), "view": views}
    grant = registry.grant(token)
    assert grant is not None and grant.role is Role.PERIMETER and grant.name == "t"
    whole_sites = perimeter == "national" or perimeter.startswith("site:")  # all their establishments
    assert grant.establishments == (None if whole_sites else PerimeterFilter.parse(perimeter))
    assert {s.id for s in registry.viewable(token)} == views


def test_perimeter_values_are_the_annuaires_names_whatever_the_spelling() -> None:
    parse = PerimeterFilter.parse
    assert parse("academie:creteil") == parse("Academie: Créteil ") == PerimeterFilter("academie", "Créteil")
    assert parse("departement:35") == parse("departement:ille et vilaine") == PerimeterFilter("departement", "Ille-et-Vilaine")
    assert parse("departement:2a").value == "Corse-du-Sud" and parse("region:53") == PerimeterFilter("region", "Bretagne")
    assert parse("projet:ENT_94_1D").value == "ENT_94_1D" and str(parse("academie:rennes")) == "academie:Rennes"
    assert parse("Site: 007") == PerimeterFilter("site", "7") and str(parse("site:7")) == "site:7"
    for wrong in ("academie:Atlantis", "pays:France", "academie", "national:France", "departement:999", "projet:",
                  "site:", "site:0", "site:-1", "site:Bretagne", "site:１"):
        with pytest.raises(ValueError):
            parse(wrong)


def test_superset_perimeters_speak_the_access_vocabulary() -> None:
    """One vocabulary: Superset's perimeter levels are the access kinds, and every perimeter of
    superset/perimeters.yaml is a perimeter token's, written as the annuaire (and RLS) writes it."""
    from dnma_superset import provision

    assert provision.LEVELS == access.KINDS
    for p in provision.RolePerimeters.load().perimeters:
        assert PerimeterFilter.parse(f"{p.level}:{p.value}" if p.value else p.level) == PerimeterFilter(p.level, p.value)


def test_bearer_header() -> None:
    assert access.bearer("Bearer abc") == access.bearer("bearer  abc ") == "abc"
    assert access.bearer("Basic abc") == access.bearer("Bearerabc") == access.bearer("") == ""
    assert access.request_token("param", "Bearer header") == "param"
    assert access.request_token("", "Bearer header") == "header"


def test_the_registry_is_reread_when_its_files_change_not_per_request(settings: Settings) -> None:
    slow, quick = Access(settings, check_every_s=3600), Access(settings, check_every_s=0.0)
    assert quick.grant(DEMO_TOKEN) is not None  # remembered, until the sites file changes
    token = access.issue(settings, "late", PerimeterFilter.parse("academie:Rennes"))
    sites_file = settings.resolved_sites_file
    dump_sites([{**s, "token_sha256": hash_token("rotated")} if s["id"] == 1 else s for s in sites()], sites_file)
    assert slow.grant(token) is None and slow.grant(DEMO_TOKEN) is not None  # within its interval: unchanged
    assert quick.grant(token) is not None and quick.grant("rotated") is not None and quick.grant(DEMO_TOKEN) is None
    access.access_file(settings).write_text("tokens: [{name: broken", encoding="utf-8")
    assert quick.grant(token) is not None  # a broken file keeps the previous registry


def test_dnma_access_issues_lists_and_revokes_perimeter_tokens_stored_hashed(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=sites())

    def dnma(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", "access", *args], env=stack.env, capture_output=True,
                              text=True, timeout=120, cwd=REPO)

    issued = dnma("issue", "--perimeter", "academie:rennes", "--name", "dsden-35")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    path = stack.data_dir / "access.yaml"
    text = path.read_text(encoding="utf-8")
    assert token not in text and access.digest(token).hex() in text and "academie:Rennes" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dnma("issue", "--perimeter", "national", "--name", "dsden-35").returncode == 2  # a name once
    assert dnma("issue", "--perimeter", "academie:Atlantis", "--name", "x").returncode == 2
    listed = dnma("list").stdout
    assert "dsden-35\tacademie:Rennes" in listed and "sites 1,4" in listed and token not in listed
    assert dnma("revoke", "dsden-35").returncode == 0 and dnma("revoke", "dsden-35").returncode == 1
    assert "dsden-35" not in dnma("list").stdout


# --- the routes --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real collector (no loader: reporting queries find no storage, which tells a granted call
    from a refused one), bulk batches requiring a token."""
    with Stack(tmp_path_factory.mktemp("access"), sites=sites(), bulk_requests_require_authentication=True) as s:
        s.start_collector()
        yield s


@pytest.fixture(scope="module")
def rennes(stack: Stack) -> str:
    return access.issue(Settings(data_dir=stack.data_dir), "rennes", PerimeterFilter.parse("academie:Rennes"))


def _eventually(predicate: Any, timeout: float = access.RELOAD_CHECK_S + 8) -> None:
    """The collector re-reads access.yaml within RELOAD_CHECK_S of a change."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the collector did not see access.yaml change"
        time.sleep(0.2)


def api(stack: Stack, token: str = "", *, bearer: str = "", **params: str) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    query = {"module": "API", "format": "json", **({"token_auth": token} if token else {}), **params}
    r = httpx.post(f"{stack.collector_url}/index.php", data=query, headers=headers, timeout=30)
    doc = r.json()
    # Matomo's statuses: a refused access is a 401 (NoAccessException), any other answer a 200.
    refused = isinstance(doc, dict) and doc.get("result") == "error" and "'view' access" in doc["message"]
    assert r.status_code == (401 if refused else 200), (r.status_code, doc)
    return doc


def sees_site(stack: Stack, token: str, site: int, *, bearer: str = "") -> bool:
    doc = api(stack, token, bearer=bearer, method="SitesManager.getSiteFromId", idSite=str(site))
    return doc.get("idsite") == str(site)


def test_matomo_api_by_token_and_bearer_header_and_a_perimeter_token_issued_while_running(
    stack: Stack, rennes: str
) -> None:
    _eventually(lambda: sees_site(stack, rennes, 1))
    assert sees_site(stack, rennes, 4) and not sees_site(stack, rennes, 2) and not sees_site(stack, rennes, 3)
    assert sees_site(stack, "", 1, bearer=DEMO_TOKEN) and not sees_site(stack, "", 3, bearer=DEMO_TOKEN)
    assert sees_site(stack, "", 2, bearer=SUPER_TOKEN)
    settings = Settings(data_dir=stack.data_dir)
    late = access.issue(settings, "late", PerimeterFilter.parse("projet:ENT_94_1D"))
    _eventually(lambda: sees_site(stack, late, 3))
    assert access.revoke(settings, "late")
    _eventually(lambda: not sees_site(stack, late, 3))


def test_reporting_methods_answer_a_perimeter_token_on_the_sites_it_overlaps_only(stack: Stack, rennes: str) -> None:
    _eventually(lambda: sees_site(stack, rennes, 1))
    day = {"method": "VisitsSummary.get", "period": "day", "date": "yesterday"}
    for token, site in ((rennes, "1"), (rennes, "1,4"), (rennes, "all"), (DEMO_TOKEN, "1"), (SUPER_TOKEN, "2")):
        doc = api(stack, token, idSite=site, **day)
        assert "storage" in doc["message"], (token, site, doc)  # granted: it went on to the (absent) storage
    for token, site in ((rennes, "2"), (rennes, "1,3"), (DEMO_TOKEN, "4"), ("nope", "1")):
        doc = api(stack, token, idSite=site, **day)
        assert doc["result"] == "error" and "'view' access" in doc["message"], (token, site, doc)


def hit(stack: Stack, token: str, **extra: str) -> httpx.Response:
    params = {"idsite": "1", "rec": "1", "url": "https://ent.demo.example/", "send_image": "0",
              "cip": "192.0.2.7", "token_auth": token, **extra}
    return httpx.get(f"{stack.collector_url}/matomo.php", params=params, timeout=30)


def test_tracking_writes_need_a_token_that_may_write_the_site(stack: Stack, rennes: str) -> None:
    _eventually(lambda: sees_site(stack, rennes, 1))
    assert hit(stack, DEMO_TOKEN).status_code == 204 and hit(stack, SUPER_TOKEN).status_code == 204
    for token in (rennes, SHARED_TOKEN, "nope"):
        refused = hit(stack, token)
        assert refused.status_code == 400 and refused.text.startswith("auth_required"), token

    def bulk(token: str, site: str = "1") -> httpx.Response:
        body = {"requests": [f"?idsite={site}&rec=1&url=https%3A%2F%2Fent.demo.example%2F"] * 2, "token_auth": token}
        return httpx.post(f"{stack.collector_url}/matomo.php", json=body, timeout=30)

    assert bulk(DEMO_TOKEN).json()["tracked"] == 2 and "invalid_indices" not in bulk(DEMO_TOKEN).json()
    assert bulk(SUPER_TOKEN).json()["invalid_indices"] == [] and bulk(SHARED_TOKEN, "4").status_code == 200
    for token in (rennes, SHARED_TOKEN):
        assert bulk(token).status_code == 400


def test_debug_view_is_a_site_tokens_or_the_super_users_never_a_perimeter_tokens(stack: Stack, rennes: str) -> None:
    _eventually(lambda: sees_site(stack, rennes, 1))
    url = f"{stack.collector_url}/debug/hits"

    def status(site: str, token: str = "", authorization: str = "") -> int:
        headers = {"Authorization": authorization} if authorization else {}
        params = {"idsite": site, **({"token_auth": token} if token else {})}
        return httpx.get(url, params=params, headers=headers, timeout=30).status_code

    assert status("1", DEMO_TOKEN) == status("1", authorization=f"Bearer {DEMO_TOKEN}") == status("2", SUPER_TOKEN) == 200
    assert status("3", DEMO_TOKEN) == status("1", rennes) == status("99", SUPER_TOKEN) == 403
    assert status("1") == status("1", "nope") == status("1", authorization=f"Basic {DEMO_TOKEN}") == 401


def test_quality_alerts_need_a_known_token(stack: Stack) -> None:
    url = f"{stack.collector_url}/api/quality/alerts"
    nowhere = access.issue(Settings(data_dir=stack.data_dir), "versailles", PerimeterFilter.parse("academie:Versailles"))
    _eventually(lambda: httpx.get(url, params={"token_auth": nowhere}, timeout=30).status_code == 200)
    assert httpx.get(url, headers={"Authorization": f"Bearer {nowhere}"}, timeout=30).json() == {"count": 0, "alerts": []}
    assert httpx.get(url, params={"token_auth": "nope"}, timeout=30).status_code == 401
    assert httpx.get(url, timeout=30).status_code == 401
