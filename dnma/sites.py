"""The registry of sites (ENT platforms), read from the sites YAML file.

A site: id, name, main URL, time zone, write token (stored as a SHA-256; what a token may do is
dnma.access's), the custom-dimension mapping, fixed PROJET/EXPLOITANT/PLATEFORME, perimeter,
exclusions, DNT policy, when it was created (`created`, Matomo's `ts_created`), who hears of
its quality alerts (`alerts:`; an ENT project's in the top-level `projets:`, see AlertContacts), and
whether the reporting API's per-person and campaign reports are on (`per_person_reports: true`; off
by default: they sit badly with the CNIL consent exemption, see README).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from dnma.vocab import DEFAULT_DIMENSION_MAPPING

# A site's `created` when its entry has none: early enough that a Matomo client bounding its dates
# by `ts_created` misses nothing DNMA may hold (the ENT projects' Matomo history starts later).
DEFAULT_CREATED = datetime(2020, 1, 1)

# SitesManager's `timezone_name` (Matomo's English names) for the time zones of French territories;
# any other zone is named by its last part, as Matomo names a zone it has no country for.
TIMEZONE_NAMES = {
    "Europe/Paris": "France", "America/Guadeloupe": "Guadeloupe", "America/Martinique": "Martinique",
    "America/Cayenne": "French Guiana", "Indian/Reunion": "Réunion", "Indian/Mayotte": "Mayotte",
    "America/Miquelon": "St. Pierre & Miquelon", "Pacific/Noumea": "New Caledonia",
    "Pacific/Wallis": "Wallis & Futuna", "Pacific/Tahiti": "French Polynesia - Tahiti", "UTC": "UTC",
}


def timezone_name(timezone: str) -> str:
    return TIMEZONE_NAMES.get(timezone) or timezone.rsplit("/", 1)[-1].replace("_", " ")


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
class AlertContacts:
    """Where the quality alerts about a site or an ENT project are sent besides the ops-wide webhook:
    the editor's own webhook and e-mail addresses (`alerts: {webhook: URL, emails: [...]}`)."""

    webhook: str = ""
    emails: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.webhook or self.emails)

    def as_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.webhook:
            out["webhook"] = self.webhook
        if self.emails:
            out["emails"] = list(self.emails)
        return out


def _contacts(raw: Any) -> AlertContacts:
    if not raw:
        return AlertContacts()
    if not isinstance(raw, dict):
        raise ValueError(f"alerts must be a mapping {{webhook: URL, emails: [...]}}, not {str(raw)[:40]!r}")
    return AlertContacts(str(raw.get("webhook") or ""), _strings(raw.get("emails")))


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
    created: datetime = DEFAULT_CREATED
    alerts: AlertContacts = AlertContacts()
    # Live.getLastVisitsDetails, UserId.getUsers, the userId segment, Referrers.getCampaigns: the super
    # user's only, and only when the site turns them on (collector.reporting_routes).
    per_person_reports: bool = False

    def ua_excluded(self, ua: str) -> bool:
        low = ua.lower()
        return any(s.lower() in low for s in self.excluded_user_agents)

    def as_matomo(self, *, super_user: bool = False) -> dict[str, Any]:
        """SitesManager.getSiteFromId's site: the 19 columns of Matomo's `site` table in its order,
        as strings (as Matomo's database layer returns them), then `timezone_name` and
        `currency_name`; `creator_login` for the super user only, as Matomo."""
        out = {
            "idsite": str(self.id),
            "name": self.name,
            "main_url": self.main_url,
            "ts_created": self.created.strftime("%Y-%m-%d %H:%M:%S"),
            "ecommerce": "0",
            "sitesearch": "1",
            "sitesearch_keyword_parameters": "",
            "sitesearch_category_parameters": "",
            "timezone": self.timezone,
            "currency": "EUR",
            "exclude_unknown_urls": "0",
            "excluded_ips": ",".join(self.excluded_ips),
            "excluded_parameters": "",
            "excluded_user_agents": ",".join(self.excluded_user_agents),
            "excluded_referrers": "",
            "group": "",
            "type": "website",
            "keep_url_fragment": "0",
            "creator_login": "dnma",
            "timezone_name": timezone_name(self.timezone),
            "currency_name": "Euro",
        }
        if not super_user:
            del out["creator_login"]
        return out


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
        created=_created(raw.get("created"), raw["id"]),
        alerts=_contacts(raw.get("alerts")),
        per_person_reports=raw.get("per_person_reports", False) is True,
    )


def _created(value: Any, site_id: Any) -> datetime:
    """`created: 2024-09-01` or `2024-09-01 08:00:00` (YAML may hand a date, a datetime or text)."""
    if value is None or value == "":
        return DEFAULT_CREATED
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        return datetime.fromisoformat(str(value).strip()).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"site {site_id}: created must be a date (2024-09-01) or a date and time, "
                         f"not {str(value)[:40]!r}") from None


def _strings(value: Any) -> tuple[str, ...]:
    """A YAML list of patterns as strings: `[2024]` is "2024" (its int broke every hit of the site
    with an AttributeError), and a lone `curl` one pattern, not the letters c, u, r, l."""
    if value is None:
        return ()
    if isinstance(value, str | int | float):
        return (str(value),)
    return tuple(str(v) for v in value)


class SiteRegistry:
    def __init__(self, sites: list[Site], projects: dict[str, AlertContacts] | None = None):
        self._by_id = {s.id: s for s in sites}
        self.projects = projects or {}  # ENT project code -> its editor's alert contacts

    @classmethod
    def load(cls, path: Path) -> SiteRegistry:
        if not path.exists():
            return cls([])
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        projets = data.get("projets") or {}
        if not isinstance(projets, dict):
            raise ValueError("projets must be a mapping of ENT project codes")
        return cls([_site_from_dict(s) for s in data.get("sites", [])],
                   {str(code): _contacts((raw or {}).get("alerts")) for code, raw in projets.items()})

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


def dump_sites(sites: list[dict[str, Any]], path: Path, projets: dict[str, Any] | None = None) -> None:
    """Write the registry: its sites and, when there are any, the ENT projects' settings."""
    doc: dict[str, Any] = {"sites": sites}
    if projets:
        doc["projets"] = projets
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
