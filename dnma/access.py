"""Who may do what, decided here only: the super user, a site's token, a perimeter token; the
registry of tokens (sites.yaml's digests, `<data_dir>/access.yaml`'s perimeter tokens) and its reload.

Three kinds of token, one `Grant` each:

- the **super user** (`settings.super_user_token`): everything, on every site;
- a **site token** (`token_sha256` of a site in sites.yaml; one token may serve several sites):
  write hits (the auth-only tracking parameters, old `cdt`, bulk batches), view the site's reports
  and quality alerts, operate it (the debug view; quarantine when it comes);
- a **perimeter token** (`dnma access issue --perimeter academie:Rennes --name NAME`): view only,
  across sites, the establishments of one perimeter (or, `site:ID`, the whole of one site: its
  editor's view, as Superset's site-level role for the Marquage dashboard). It may call the
  reporting methods on the sites whose declared perimeter overlaps (`PerimeterFilter.overlaps`),
  never write or operate. Which establishments it may see is `Grant.establishments`, a filter of
  kind and value on the establishment's columns; **the reporting queries do not apply it to their
  rows yet** (later work): today a perimeter token sees the whole of every site it may view.

Perimeter kinds and values are Superset's (superset/perimeters.yaml `level` / `value`, checked by
tests/test_access.py): `national`, `region` (région académique), `academie`, `departement` (names
as the annuaire writes them, see dnma.territory), `projet` (the ENT project) and `site` (a site id,
the role of a site's editor: views that one site, all its establishments). A perimeter token
`academie:Rennes` sees what the Superset role of the perimeter `{level: academie, value: Rennes}`
sees once the queries filter rows: the RLS clause `academie = 'Rennes'`.

Tokens are stored as SHA-256 only. A presented token is hashed and looked up by digest (its timing
depends on a digest the caller cannot steer, so it tells nothing of the stored ones); the super
user's digest is compared with `hmac.compare_digest`. Valid tokens are then remembered with their
grant until the next reload: the per-hit cost of a tracker's token is one dict lookup. The registry is read once and re-read
when sites.yaml or access.yaml changes (size, mtime, inode), looked at no more than every
RELOAD_CHECK_S seconds: never a file read per request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from dnma import territory
from dnma.settings import Settings
from dnma.sites import Site, SiteRegistry

log = logging.getLogger("dnma.access")

KINDS = ("national", "region", "academie", "departement", "projet", "site")  # = Superset's perimeter levels
RELOAD_CHECK_S = 2.0  # how stale a worker's view of sites.yaml / access.yaml may be
ACCESS_FILE = "access.yaml"  # under data_dir
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new_secret(nbytes: int = 24) -> str:
    """A random URL-safe secret that never starts with '-', so that it passes as a command-line
    value (`--token X`) without being read as an option."""
    while (value := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return value


def access_file(settings: Settings) -> Path:
    return settings.data_dir / ACCESS_FILE


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; '' for any other header."""
    scheme, _, rest = authorization.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else ""


def request_token(token_auth: str, authorization: str) -> str:
    """A request's token: `token_auth` (Matomo's parameter) or else the Bearer header."""
    return token_auth or bearer(authorization)


# --- perimeters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerimeterFilter:
    """A perimeter: which establishments (kind = value on their columns) and, through the sites'
    declared perimeters, which sites. Values are canonical (the annuaire's spelling)."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "national" else f"{self.kind}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> PerimeterFilter:
        """'academie:Rennes', 'region:Bretagne' (or its INSEE code 'region:53'), 'departement:035'
        (or 'departement:Ille-et-Vilaine'), 'projet:ENT_BRETAGNE', 'site:1' (a site id), 'national'.
        ValueError otherwise."""
        kind, _, raw = text.partition(":")
        kind, value = kind.strip().lower(), raw.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown perimeter kind {kind!r} (one of {', '.join(KINDS)})")
        if kind == "national":
            if value:
                raise ValueError("a national perimeter takes no value")
            return cls(kind)
        if not value:
            raise ValueError(f"a {kind} perimeter needs a value ({kind}:VALUE)")
        if kind == "projet":
            return cls(kind, value)
        if kind == "site":  # canonical as Superset's RLS compares it (site_id = 1): no sign, no zeros
            if not value.isascii() or not value.isdigit() or int(value) == 0:
                raise ValueError(f"a site perimeter takes a site id (site:1), not {value!r}")
            return cls(kind, str(int(value)))
        found: str | None
        if kind == "departement":
            dep = territory.DEPARTEMENTS.get(territory.departement_code(value))
            found = dep.name if dep else territory.DEPARTEMENT_NAMES.get(territory.key(value))
        elif kind == "academie":
            found = territory.ACADEMIES.get(territory.key(value))
        else:
            codes = territory.departements_of_region_code(value) if value.isdigit() else frozenset()
            found = (territory.DEPARTEMENTS[min(codes)].region if codes
                     else territory.REGIONS.get(territory.key(value)))
        if found is None:
            raise ValueError(f"unknown {kind} {value!r} (names as the annuaire de l'éducation writes them)")
        return cls(kind, found)

    @property
    def departements(self) -> frozenset[str]:
        """The département codes of a territorial perimeter (empty for national and projet)."""
        attr = {"region": "region", "academie": "academie", "departement": "name"}.get(self.kind)
        return territory.departements_where(attr, self.value) if attr else frozenset()

    def overlaps(self, site: Site) -> bool:
        """May hold establishments of this perimeter, by the site's declaration: every site for
        national; its fixed `projet` for projet; the site itself for site; its declared territory
        for the others. A site
        declaring no territory (or no projet) overlaps no territorial (or projet) perimeter: until
        the queries filter rows, that would show a national platform to one académie."""
        if self.kind == "national":
            return True
        if self.kind == "projet":
            return bool(site.projet) and territory.key(site.projet) == territory.key(self.value)
        if self.kind == "site":
            return site.id == int(self.value)
        return not self.departements.isdisjoint(site_departements(site))


def site_departements(site: Site) -> frozenset[str]:
    """The département codes of a site's declared territory (départements, académies, régions)."""
    p = site.perimeter
    codes = {territory.departement_code(d) for d in p.departements}
    for name in p.academies:
        codes |= territory.departements_where("academie", name.removeprefix("academie:"))
    for raw in p.regions:
        region = raw.removeprefix("region:").strip()
        codes |= (territory.departements_of_region_code(region) if region.isdigit()
                  else territory.departements_where("region", region))
    return frozenset(codes)


# --- grants ----------------------------------------------------------------------------------------


class Role(StrEnum):
    SUPER_USER = "super_user"
    SITE = "site"
    PERIMETER = "perimeter"


@dataclass(frozen=True)
class Grant:
    """What one token may do. `writes`: the sites it writes and operates; `views`: the sites whose
    reports it may read (the super user: every site, both)."""

    role: Role
    name: str
    writes: frozenset[int] = frozenset()
    views: frozenset[int] = frozenset()
    perimeter: PerimeterFilter | None = None
    everything: bool = False  # the super user's (a bool: may_write runs per hit, an enum lookup costs)

    @property
    def is_super_user(self) -> bool:
        return self.everything

    def may_write(self, site_id: int) -> bool:
        """Send what only an authenticated tracker may (cip, geo, cdt older than 24 h, bulk)."""
        return self.everything or site_id in self.writes

    def may_operate(self, site_id: int) -> bool:
        """The site's operator actions: the debug view (and quarantine)."""
        return self.everything or site_id in self.writes

    def may_view(self, site_id: int) -> bool:
        """Read the site's reports and quality alerts."""
        return self.everything or site_id in self.views

    @property
    def establishments(self) -> PerimeterFilter | None:
        """Which establishments of the viewable sites it may see: None for all of them (super user,
        site tokens, national and site perimeters), else the perimeter. Not applied by the reporting
        queries yet."""
        p = self.perimeter
        return p if p is not None and p.kind not in ("national", "site") else None


SUPER_USER = Grant(Role.SUPER_USER, "super user", everything=True)
KNOWN_MAX = 1024  # valid tokens remembered per registry snapshot (there are a few dozen)


# --- the registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerimeterToken:
    """One entry of access.yaml (never the token itself)."""

    name: str
    perimeter: PerimeterFilter
    token_sha256: str
    issued_at: str = ""


def read_perimeter_tokens(path: Path) -> list[PerimeterToken]:
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for raw in doc.get("tokens") or []:
        out.append(PerimeterToken(str(raw["name"]), PerimeterFilter.parse(str(raw["perimeter"])),
                                  str(raw["token_sha256"]), str(raw.get("issued_at", ""))))
    return out


@dataclass(frozen=True)
class _Snapshot:
    sites: SiteRegistry
    grants: dict[bytes, Grant]
    perimeter_tokens: tuple[PerimeterToken, ...] = ()
    # Valid tokens already hashed, with their grant: a tracker sends the same token on every hit.
    # Bound to the snapshot, so a reload forgets them all (a revoked token is never remembered).
    known: dict[str, Grant] = field(default_factory=dict)


def _build(sites: SiteRegistry, tokens: list[PerimeterToken]) -> _Snapshot:
    grants: dict[bytes, Grant] = {}
    for t in tokens:
        views = frozenset(s.id for s in sites.all() if t.perimeter.overlaps(s))
        grants[bytes.fromhex(t.token_sha256)] = Grant(Role.PERIMETER, t.name, views=views, perimeter=t.perimeter)
    by_digest: dict[bytes, list[int]] = {}
    for s in sites.all():
        if s.token_sha256:
            try:
                by_digest.setdefault(bytes.fromhex(s.token_sha256), []).append(s.id)
            except ValueError:
                raise ValueError(f"site {s.id}: token_sha256 is not a hexadecimal SHA-256") from None
    for key, ids in by_digest.items():  # a site token wins over a (colliding) perimeter token
        grants[key] = Grant(Role.SITE, "site " + ",".join(map(str, ids)), writes=frozenset(ids), views=frozenset(ids))
    return _Snapshot(sites, grants, tuple(tokens))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Access:
    """The token registry of one process: read at construction, re-read when its files change."""

    def __init__(self, settings: Settings, *, check_every_s: float = RELOAD_CHECK_S) -> None:
        self.sites_file = settings.resolved_sites_file
        self.access_file = access_file(settings)
        self.check_every_s = check_every_s
        sup = settings.super_user_token
        self._super = digest(sup) if sup else b""
        self._lock = threading.Lock()
        self._stamps = self._current_stamps()
        self._snap = self._load()  # a broken file at start-up fails loudly
        self._next_check = time.monotonic() + check_every_s

    @property
    def sites(self) -> SiteRegistry:
        self._maybe_reload()
        return self._snap.sites

    @property
    def perimeter_tokens(self) -> tuple[PerimeterToken, ...]:
        self._maybe_reload()
        return self._snap.perimeter_tokens

    def grant(self, token: str) -> Grant | None:
        """What `token` may do; None for no token or an unknown one."""
        if not token:
            return None
        if time.monotonic() >= self._next_check:
            self._maybe_reload()
        snap = self._snap
        found = snap.known.get(token)  # str hashes are keyed per process: no timing to learn from
        if found is not None:
            return found
        d = digest(token)
        found = SUPER_USER if self._super and hmac.compare_digest(d, self._super) else snap.grants.get(d)
        if found is not None and len(snap.known) < KNOWN_MAX:
            snap.known[token] = found
        return found

    def is_super_user(self, token: str) -> bool:
        return bool(token and self._super) and hmac.compare_digest(digest(token), self._super)

    def viewable(self, token: str) -> list[Site]:
        """The sites `token` may view."""
        g = self.grant(token)
        return [s for s in self.sites.all() if g.may_view(s.id)] if g else []

    # --- reload
    def _current_stamps(self) -> tuple[Any, ...] | None:
        """The files' stamps; None while one changed in the last second: a second write within the
        same mtime tick, at the same size, would go unseen, so such a file is read again next time."""
        stamps = _stamp(self.sites_file), _stamp(self.access_file)
        recent = time.time_ns() - 1_000_000_000
        return None if any(st is not None and st[0] > recent for st in stamps) else stamps

    def _load(self) -> _Snapshot:
        return _build(SiteRegistry.load(self.sites_file), read_perimeter_tokens(self.access_file))

    def _maybe_reload(self) -> None:
        if time.monotonic() < self._next_check or not self._lock.acquire(blocking=False):
            return  # another thread is looking: the current snapshot serves meanwhile
        try:
            self._next_check = time.monotonic() + self.check_every_s
            stamps = self._current_stamps()  # taken before reading: a change while reading is seen next time
            if stamps is not None and stamps == self._stamps:
                return
            self._stamps = stamps  # a broken file is reported once, not at every look
            try:
                self._snap = self._load()
            except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
                log.error("access_registry_not_reloaded",
                          extra={"fields": {"error": type(exc).__name__, "detail": str(exc)[:200], "kept": "previous"}})
            else:
                log.info("access_registry_reloaded")
        finally:
            self._lock.release()


# --- issuing and revoking perimeter tokens (the `dnma access` command) ------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, tokens: list[PerimeterToken]) -> None:
    doc = {"tokens": [{"name": t.name, "perimeter": str(t.perimeter), "token_sha256": t.token_sha256,
                       "issued_at": t.issued_at} for t in tokens]}
    text = ("# Perimeter tokens (`dnma access issue|revoke|list`): SHA-256 only, the token is shown once.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    write_private(path, text)


def write_private(path: Path, text: str) -> None:
    """Replaces `path` with `text` atomically, mode 0600, fsynced: a reader (a collector re-reading a
    registry) sees the old file or the new one, never half; a secret's hash is never world-readable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def issue(settings: Settings, name: str, perimeter: PerimeterFilter, issued_at: str = "") -> str:
    """A new perimeter token named `name`; returns the token (stored only as its SHA-256)."""
    if not _NAME.match(name):
        raise ValueError(f"token name {name!r}: letters, digits, '.', '_', '-' (at most 64)")
    path = access_file(settings)
    with _locked(path):
        tokens = read_perimeter_tokens(path)
        if any(t.name == name for t in tokens):
            raise ValueError(f"a perimeter token named {name!r} exists: revoke it first")
        token = new_secret(32)
        tokens.append(PerimeterToken(name, perimeter, digest(token).hex(), issued_at))
        _write(path, tokens)
    return token


def revoke(settings: Settings, name: str) -> bool:
    """Remove the perimeter token `name`; False when there is none."""
    path = access_file(settings)
    with _locked(path):
        tokens = read_perimeter_tokens(path)
        kept = [t for t in tokens if t.name != name]
        if len(kept) == len(tokens):
            return False
        _write(path, kept)
    return True
