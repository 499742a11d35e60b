"""What the pipeline's steps read besides the hit: the worker's sites, access, classifiers and
secrets, and its memos of per-site and per-value normalisations, each bounded (`remember`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from collector.hit import DIMENSION_MAX
from collector.metrics import Tally
from collector.privacy import Pseudonymiser
from collector.useragent import UAClasses, UAClassifier
from dnma import uai as uai_rules
from dnma import vocab
from dnma.access import Access
from dnma.sites import Site, SiteRegistry

K = TypeVar("K")
V = TypeVar("V")

VALUES_MAX = 4096  # per-value normalisations (SERVICE, TYPE, PROFIL, OUTIL, User-Agents)
SITE_IDS_MAX = 1024  # `idsite` texts seen valid
UAIS_MAX = 50_000  # raw UAI values per site
UAI_FLAGS_MAX = 100_000  # normalised UAIs per site: about all the establishments of France
PROPERTIES_MAX = 8192  # (site, raw DNMA property values) of pages
SERVICES = frozenset(vocab.SERVICES)


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store `value` under `key` in a memo that never holds more than `limit` entries: a full
    memo is emptied first (no LRU bookkeeping on the hot path; what is still used comes back at
    once). Returns `value`."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def record_fragment(columns: dict[str, Any]) -> bytes:
    """`,"k":v,...` for the columns not at their default (empty), to splice into a JSON record."""
    kept = {k: v for k, v in columns.items() if v}
    return b"," + orjson.dumps(kept)[1:-1] if kept else b""


# (props, flags they raised, mapped dimensions, record fragment) of a page's DNMA properties.
Properties = tuple[dict[str, str], tuple[str, ...], int, bytes]


@dataclass
class PipelineContext:
    """Per-worker state the steps read: sites, access, secrets, memos. Built once at startup; the
    sites replaced (use_sites) when the registry file changes."""

    sites: SiteRegistry
    access: Access
    honour_dnt_default: bool
    ua: UAClassifier
    pseudo: Pseudonymiser
    tally: Tally
    _networks: dict[int, list[Any]] = field(default_factory=dict)
    _slots: dict[int, dict[str, str]] = field(default_factory=dict)
    _uai_flags: dict[tuple[int, str], str] = field(default_factory=dict)
    _site_by_raw: dict[str, Site] = field(default_factory=dict)
    _uai_by_raw: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    _service: dict[str, tuple[str, str]] = field(default_factory=dict)
    _upper: dict[str, str] = field(default_factory=dict)
    _props: dict[tuple[Any, ...], Properties] = field(default_factory=dict)
    _uac: dict[str, tuple[UAClasses, bytes]] = field(default_factory=dict)

    def use_sites(self, sites: SiteRegistry) -> None:
        """Serve from a re-read registry (sites.yaml changed): the memos built from the old sites'
        settings (exclusions, mappings, perimeters, the resolved `idsite` texts) are forgotten."""
        self.sites = sites
        for memo in (self._networks, self._slots, self._uai_flags, self._site_by_raw, self._uai_by_raw, self._props):
            memo.clear()

    def excluded_networks(self, site: Site) -> list[Any]:
        found = self._networks.get(site.id)
        if found is None:
            found = []
            for spec in site.excluded_ips:
                try:
                    found.append(ipaddress.ip_network(spec, strict=False))
                except ValueError:
                    continue
            remember(self._networks, site.id, found, SITE_IDS_MAX)
        return found

    def uai_flag(self, site: Site, uai: str) -> str:
        """The quality flag of a normalised UAI for this site ('' when fine), remembered."""
        key = (site.id, uai)
        found = self._uai_flags.get(key)
        if found is None:
            status = uai_rules.status(uai)
            if status is uai_rules.UaiStatus.MISSING:
                found = "missing_uai"
            elif status is not uai_rules.UaiStatus.VALID:
                found = "invalid_uai"
            elif (
                site.perimeter.departements
                and uai_rules.departement_code(uai) not in site.perimeter.departements
            ):
                found = "outside_perimeter"
            else:
                found = ""
            remember(self._uai_flags, key, found, UAI_FLAGS_MAX)
        return found

    def uai(self, site: Site, raw: str | None) -> tuple[str, str]:
        """A page's UAI value → (normalised UAI, its quality flag or ''), remembered per site."""
        key = (site.id, raw or "")
        found = self._uai_by_raw.get(key)
        if found is None:
            uai = uai_rules.normalise(raw)[:DIMENSION_MAX]
            found = (uai, self.uai_flag(site, uai))
            if len(key[1]) <= 16:  # a UAI is 8 characters: longer values are not remembered
                remember(self._uai_by_raw, key, found, UAIS_MAX)
        return found

    def service(self, raw: str | None) -> tuple[str, str]:
        """A page's SERVICE value → (normalised, its quality flag or ''), remembered."""
        found = self._service.get(raw or "")
        if found is None:
            service = vocab.normalise_service(raw) if raw else ""
            flag = "missing_service" if not service else "" if service in SERVICES else "unknown_service"
            found = remember(self._service, raw or "", (service, flag), VALUES_MAX)
        return found

    def upper(self, raw: str) -> str:
        """`vocab.normalise_upper`, remembered (TYPE, PROFIL, OUTIL take few values)."""
        found = self._upper.get(raw)
        if found is None:
            found = remember(self._upper, raw, vocab.normalise_upper(raw), VALUES_MAX)
        return found

    def site_for(self, raw: str) -> Site | None:
        """A registered site named by this exact `idsite` text, once it has been seen valid."""
        return self._site_by_raw.get(raw)

    def remember_site(self, raw: str, site: Site) -> None:
        remember(self._site_by_raw, raw, site, SITE_IDS_MAX)

    def user_agent(self, ua: str) -> tuple[UAClasses, bytes]:
        """A User-Agent's classes and their record fragment: a plain dict in front of the
        classifier's LRU (its hits still counted as the classifier's)."""
        found = self._uac.get(ua)
        if found is None:
            uac = self.ua.classify(ua)
            fragment = record_fragment({"device": uac.device, "os": uac.os, "browser": uac.browser})
            found = remember(self._uac, ua, (uac, fragment), VALUES_MAX)
        else:
            self.ua.hits += 1
        return found

    def slots(self, site: Site) -> dict[str, str]:
        """`dimensionN` parameter name → DNMA property, for this site's mapping."""
        found = self._slots.get(site.id)
        if found is None:
            found = {f"dimension{n}": p for n, p in site.dimensions.items()}
            remember(self._slots, site.id, found, SITE_IDS_MAX)
        return found

    def known_properties(self, key: tuple[Any, ...]) -> Properties | None:
        """The DNMA properties a page with these (site, raw values) had: shared, read only."""
        return self._props.get(key)

    def remember_properties(self, key: tuple[Any, ...], properties: Properties) -> None:
        remember(self._props, key, properties, PROPERTIES_MAX)
