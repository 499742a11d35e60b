"""Registering and changing sites in the sites YAML (`dnma sites add|set|list|projet`): every value
validated before anything is written, the file replaced atomically under a lock, a site's write
token generated here, returned once and stored as its SHA-256 only.

Running collectors and the loader read the file again when it changes (dnma.access's reload):
nothing to restart. Keys this module does not know (dimensions, exclusions, …) are kept as written;
YAML comments are not (the previous file is kept beside it as `<name>.bak` when it had any).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from dnma import territory
from dnma.access import new_secret, write_private
from dnma.sites import SiteRegistry, _site_from_dict, hash_token

SITE_ID_MAX = 2**32 - 1  # hits.site_id is a UInt32
NAME_MAX = 90  # Matomo's site.name is a VARCHAR(90)
DEGREES = ("1D", "2D")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_PROJET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistrationError(ValueError):
    """Bad input: its message is the one line the command prints."""


# --- validation of each value ---------------------------------------------------------------------


def check_id(value: int) -> int:
    if not 0 < value <= SITE_ID_MAX:
        raise RegistrationError(f"--id must be an integer from 1 to {SITE_ID_MAX}, not {value}")
    return value


def check_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise RegistrationError("--name must not be empty")
    if len(name) > NAME_MAX:
        raise RegistrationError(f"--name is {len(name)} characters long (at most {NAME_MAX})")
    if any(ord(c) < 32 for c in name):
        raise RegistrationError("--name must not hold control characters")
    return name


def check_url(value: str, option: str = "--url") -> str:
    url = value.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        raise RegistrationError(f"{option} must be an http(s) URL with a host (https://ent.example.fr), "
                                f"not {value[:60]!r}")
    return url


def check_timezone(value: str) -> str:
    zone = value.strip()
    try:
        if not zone or zone != zone.strip("/") or ".." in zone:
            raise ValueError
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise RegistrationError(f"--timezone {value[:40]!r} is not a time zone (e.g. Europe/Paris, "
                                "America/Cayenne, Indian/Reunion)") from None
    return zone


def check_projet(value: str) -> str:
    code = value.strip()
    if code and not _PROJET.match(code):
        raise RegistrationError(f"--projet {value[:40]!r}: letters, digits, '_', '.', '-' (e.g. ENT_BRETAGNE)")
    return code


def check_email(value: str) -> str:
    address = value.strip()
    if not _EMAIL.match(address):
        raise RegistrationError(f"--alert-email {value[:60]!r} is not an e-mail address")
    return address


def parse_perimeter(text: str) -> dict[str, list[str]]:
    """`--perimeter 2D,035,academie:Rennes,region:53` -> the YAML's perimeter mapping.

    Items, comma-separated: a degree (1D, 2D); a département code (035, 35, 2A, 974) or
    `departement:NAME`; `academie:NAME`; `region:CODE` or `region:NAME` (stored as the INSEE code the
    checks compare). Names are read as the annuaire writes them, accents and case aside. Empty: none.
    """
    out: dict[str, list[str]] = {"degrees": [], "departements": [], "academies": [], "regions": []}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        kind, sep, value = item.partition(":")
        kind, value = kind.strip().lower(), value.strip()
        if not sep:
            if item.upper() in DEGREES:
                _add(out["degrees"], item.upper())
                continue
            kind, value = "departement", item
        if kind == "departement":
            code = territory.departement_code(value)
            if code not in territory.DEPARTEMENTS:
                by_name = territory.departements_where("name", value)
                if len(by_name) != 1:
                    raise RegistrationError(f"--perimeter: unknown département {value!r} (a code such as 035, 2A, "
                                            "974, or departement:NAME)")
                code = next(iter(by_name))
            _add(out["departements"], code)
        elif kind == "academie":
            name = territory.ACADEMIES.get(territory.key(value))
            if name is None:
                raise RegistrationError(f"--perimeter: unknown académie {value!r}")
            _add(out["academies"], name)
        elif kind == "region":
            code = value.zfill(2) if value.isdigit() else ""
            if not value.isdigit():
                region = territory.REGIONS.get(territory.key(value))
                found = {d.region_code for d in territory.DEPARTEMENTS.values() if region and d.region == region}
                code = found.pop() if len(found) == 1 else ""
            if not code or not territory.departements_of_region_code(code):
                raise RegistrationError(f"--perimeter: unknown région {value!r} (its INSEE code, e.g. region:53, "
                                        "or its name)")
            _add(out["regions"], code)
        else:
            raise RegistrationError(f"--perimeter: {item!r} is not 1D, 2D, a département code, departement:, "
                                    "academie: or region:")
    return {k: v for k, v in out.items() if v}


def _add(values: list[str], value: str) -> None:
    if value not in values:
        values.append(value)


# --- the changes ------------------------------------------------------------------------------------


@dataclass
class SiteChange:
    """What `add` or `set` writes; None leaves a value as it is (for `add`: its default)."""

    name: str | None = None
    url: str | None = None
    timezone: str | None = None
    perimeter: str | None = None
    projet: str | None = None
    alert_webhook: str | None = None  # "" removes it
    alert_emails: list[str] | None = None  # [] removes them
    per_person_reports: bool | None = None  # the reporting API's per-person reports (off unless True)


def _apply(entry: dict[str, Any], change: SiteChange) -> None:
    """Validate every given value, then write them into a site's YAML entry."""
    if change.name is not None:
        entry["name"] = check_name(change.name)
    if change.url is not None:
        entry["main_url"] = check_url(change.url)
    if change.timezone is not None:
        entry["timezone"] = check_timezone(change.timezone)
    if change.perimeter is not None:
        perimeter = parse_perimeter(change.perimeter)
        if perimeter:
            entry["perimeter"] = perimeter
        else:
            entry.pop("perimeter", None)
    if change.projet is not None:
        entry["projet"] = check_projet(change.projet)
    if change.per_person_reports is not None:
        if change.per_person_reports:
            entry["per_person_reports"] = True
        else:
            entry.pop("per_person_reports", None)
    _apply_alerts(entry, change)


def _apply_alerts(entry: dict[str, Any], change: SiteChange) -> None:
    alerts = dict(entry.get("alerts") or {})
    if change.alert_webhook is not None:
        alerts["webhook"] = check_url(change.alert_webhook, "--alert-webhook") if change.alert_webhook else ""
    if change.alert_emails is not None:
        alerts["emails"] = [check_email(a) for a in change.alert_emails if a.strip()]
    alerts = {k: v for k, v in alerts.items() if v}
    if alerts:
        entry["alerts"] = alerts
    else:
        entry.pop("alerts", None)


@contextlib.contextmanager
def _edit(path: Path) -> Iterator[dict[str, Any]]:
    """The registry document, locked against another `dnma sites` run; written back (atomically,
    0600) when the block ends without an error, and only if it still loads as a registry."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise RegistrationError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}): fix it first") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("sites") or [], list):
            raise RegistrationError(f"{path}: expected a mapping with a `sites:` list")
        doc.setdefault("sites", [])
        doc["sites"] = doc["sites"] or []
        yield doc
        try:  # what the collector will read: refuse to write what it could not load
            for raw in doc["sites"]:
                _site_from_dict(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistrationError(f"{path}: the result would not load ({exc}); nothing written") from None
        if any(line.lstrip().startswith("#") for line in text.splitlines()):
            path.with_name(path.name + ".bak").write_text(text, encoding="utf-8")
        write_private(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    finally:
        os.close(fd)


def _find(doc: dict[str, Any], site_id: int) -> dict[str, Any] | None:
    for entry in doc["sites"]:
        if isinstance(entry, dict) and str(entry.get("id")) == str(site_id):
            return entry
    return None


def add_site(path: Path, site_id: int, change: SiteChange, *, created: str = "") -> str:
    """Register a new site; returns its write token (only its SHA-256 is written)."""
    check_id(site_id)
    if change.name is None or change.url is None:
        raise RegistrationError("a new site needs --name and --url")
    entry: dict[str, Any] = {"id": site_id}
    _apply(entry, change)
    entry.setdefault("timezone", "Europe/Paris")
    token = new_secret()
    entry["token_sha256"] = hash_token(token)
    if created:
        entry["created"] = created
    with _edit(path) as doc:
        if _find(doc, site_id) is not None:
            raise RegistrationError(f"site {site_id} exists: change it with `dnma sites set --id {site_id} …`")
        doc["sites"].append(entry)
    return token


def set_site(path: Path, site_id: int, change: SiteChange, *, new_token: bool = False) -> str:
    """Change a registered site; returns its new write token when `new_token` (else '')."""
    check_id(site_id)
    scratch: dict[str, Any] = {}
    _apply(scratch, change)  # every value checked before the file is locked
    token = new_secret() if new_token else ""
    with _edit(path) as doc:
        entry = _find(doc, site_id)
        if entry is None:
            raise RegistrationError(f"no site {site_id} in {path}: register it with `dnma sites add`")
        _apply(entry, change)
        if token:
            entry["token_sha256"] = hash_token(token)
    return token


def set_project(path: Path, code: str, change: SiteChange) -> None:
    """An ENT project's alert contacts (the top-level `projets:` of the registry)."""
    code = check_projet(code)
    if not code:
        raise RegistrationError("an ENT project code is needed (e.g. ENT_BRETAGNE)")
    scratch: dict[str, Any] = {}
    _apply_alerts(scratch, change)
    with _edit(path) as doc:
        projets = doc.get("projets") or {}
        if not isinstance(projets, dict):
            raise RegistrationError(f"{path}: `projets:` must be a mapping of ENT project codes")
        entry = dict(projets.get(code) or {})
        _apply_alerts(entry, change)
        if entry:
            projets[code] = entry
        else:
            projets.pop(code, None)
        if projets:
            doc["projets"] = projets
        else:
            doc.pop("projets", None)


def describe(registry: SiteRegistry) -> list[dict[str, Any]]:
    """`dnma sites list --json`: each site as registered, never its token's digest."""
    out = []
    for s in registry.all():
        p = s.perimeter
        out.append({
            "id": s.id, "name": s.name, "url": s.main_url, "timezone": s.timezone, "projet": s.projet,
            "perimeter": [*p.degrees, *p.departements, *(f"academie:{a}" for a in p.academies),
                          *(f"region:{r}" for r in p.regions)],
            "token": bool(s.token_sha256), "created": s.created.strftime("%Y-%m-%d %H:%M:%S"),
            "alerts": s.alerts.as_yaml(), "per_person_reports": s.per_person_reports,
        })
    return out
