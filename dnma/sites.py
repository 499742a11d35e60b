"""The registry of sites (ENT platforms), read from the sites YAML file.

A site: id, name, main URL, time zone, write token (stored as a SHA-256; what a token may do is
dnma.access's), the custom-dimension mapping, fixed PROJET/EXPLOITANT/PLATEFORME, perimeter,
exclusions, DNT policy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnma.vocab import DEFAULT_DIMENSION_MAPPING


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SitePerimeter:
    """Where a site is expected to send UAIs from: degrees ('1D', '2D') and territory codes.

    Territory codes are département codes as the annuaire writes them ('035', '2A', '974'),
    académie names ('academie:Rennes') or région codes ('region:53'). Empty means anywhere.
    """

    degrees: tuple[str, ...] = ()
    departements: tuple[str, ...] = ()
    academies: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Site:
    id: int
    name: str
    main_url: str
    timezone: str = "Europe/Paris"
    token_sha256: str = ""
    dimensions: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_DIMENSION_MAPPING))
    projet: str = ""
    exploitant: str = ""
    plateforme: str = ""
    perimeter: SitePerimeter = SitePerimeter()
    excluded_ips: tuple[str, ...] = ()
    excluded_user_agents: tuple[str, ...] = ()
    honour_dnt: bool = False

    def ua_excluded(self, ua: str) -> bool:
        low = ua.lower()
        return any(s.lower() in low for s in self.excluded_user_agents)

    def as_matomo(self) -> dict[str, Any]:
        """The shape of SitesManager.getSiteFromId."""
        return {
            "idsite": str(self.id),
            "name": self.name,
            "main_url": self.main_url,
            "timezone": self.timezone,
            "currency": "EUR",
            "ecommerce": "0",
            "sitesearch": "1",
            "type": "website",
        }


def _site_from_dict(raw: dict[str, Any]) -> Site:
    perim = raw.get("perimeter") or {}
    dims = raw.get("dimensions")
    mapping = {int(k): str(v).lower() for k, v in dims.items()} if dims else dict(DEFAULT_DIMENSION_MAPPING)
    return Site(
        id=int(raw["id"]),
        name=str(raw["name"]),
        main_url=str(raw.get("main_url", "")),
        timezone=str(raw.get("timezone", "Europe/Paris")),
        token_sha256=str(raw.get("token_sha256", "")),
        dimensions=mapping,
        projet=str(raw.get("projet", "")),
        exploitant=str(raw.get("exploitant", "")),
        plateforme=str(raw.get("plateforme", "")),
        perimeter=SitePerimeter(
            degrees=tuple(str(d).upper() for d in perim.get("degrees", ())),
            departements=tuple(str(d) for d in perim.get("departements", ())),
            academies=tuple(str(d) for d in perim.get("academies", ())),
            regions=tuple(str(d) for d in perim.get("regions", ())),
        ),
        excluded_ips=_strings(raw.get("excluded_ips")),
        excluded_user_agents=_strings(raw.get("excluded_user_agents")),
        honour_dnt=bool(raw.get("honour_dnt", False)),
    )


def _strings(value: Any) -> tuple[str, ...]:
    """A YAML list of patterns as strings: `[2024]` is "2024" (its int broke every hit of the site
    with an AttributeError), and a lone `curl` one pattern, not the letters c, u, r, l."""
    if value is None:
        return ()
    if isinstance(value, str | int | float):
        return (str(value),)
    return tuple(str(v) for v in value)


class SiteRegistry:
    def __init__(self, sites: list[Site]):
        self._by_id = {s.id: s for s in sites}

    @classmethod
    def load(cls, path: Path) -> SiteRegistry:
        if not path.exists():
            return cls([])
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls([_site_from_dict(s) for s in data.get("sites", [])])

    def get(self, site_id: int) -> Site | None:
        return self._by_id.get(site_id)

    def all(self) -> list[Site]:
        return sorted(self._by_id.values(), key=lambda s: s.id)

    def find_by_url(self, url: str) -> list[int]:
        """SitesManager.getSitesIdFromSiteUrl: sites whose main URL has the same host."""
        from urllib.parse import urlsplit

        try:
            host = (urlsplit(url if "//" in url else "//" + url).hostname or "").lower()
        except ValueError:  # "[]", "http://[x]": not a URL, so no site has it
            return []
        return [s.id for s in self.all() if (urlsplit(s.main_url).hostname or "").lower() == host and host]


def dump_sites(sites: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"sites": sites}, sort_keys=False, allow_unicode=True), encoding="utf-8")
