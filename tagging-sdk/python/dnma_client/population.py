"""The simulated ENT sites, their establishments (real UAIs from the shared referential) and
their users (stable pseudonymous ids), all drawn deterministically from a seed."""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dnma_client import catalog

# tagging-sdk/python/dnma_client/population.py -> the repo's parent holds shared/.
REFERENTIEL_DIR = Path(__file__).resolve().parents[3] / "deploy" / "referentiel"  # shipped in the repository


@dataclass(frozen=True)
class Etablissement:
    uai: str
    degree: str  # '1D' or '2D'
    departement: str
    pupils: int


@dataclass(frozen=True)
class SiteSpec:
    """A simulated ENT platform. `send_fixed` False: PROJET/EXPLOITANT/PLATEFORME are fixed in
    the registration instead of travelling in every hit (both are allowed by TAGGING.md)."""

    id: int
    name: str
    host: str
    degree: str
    zone: str  # school-holiday zone A/B/C
    projet: str
    exploitant: str
    plateforme: str
    departements: tuple[str, ...]
    share: float  # of the visits of the whole simulation
    send_fixed: bool = True
    # Deliberately bad tagging: a share of users in establishments outside the perimeter.
    foreign_share: float = 0.0
    foreign_departements: tuple[str, ...] = ()
    # Goes silent for the last days of the simulation (for the silence check).
    silent_last_days: bool = False


SITES: tuple[SiteSpec, ...] = (
    SiteSpec(1, "ENT Bretagne 2D", "ent-bretagne.example", "2D", "B", "ENT_BRETAGNE", "REGION_BRETAGNE",
             "TOUTATICE", ("035",), 0.30),
    SiteSpec(2, "ENT 94 1D", "ent94-1d.example", "1D", "C", "ENT_94_1D", "DEPARTEMENT_94", "ONE",
             ("094",), 0.22),
    SiteSpec(3, "ENT Collèges Lyon", "ent-colleges-lyon.example", "2D", "A", "ENT_AURA", "REGION_AURA",
             "ENTCORE", ("001", "042", "069"), 0.22),
    SiteSpec(4, "ENT 35 1D", "ent35-1d.example", "1D", "B", "ENT_35_1D", "DEPARTEMENT_35", "ONE",
             ("035",), 0.16, send_fixed=False, foreign_share=0.15, foreign_departements=("094",)),
    SiteSpec(5, "ENT Collèges Savoie", "ent-colleges-savoie.example", "2D", "A", "ENT_SAVOIE",
             "DEPARTEMENTS_SAVOIE", "ENTCORE", ("073", "074"), 0.10, send_fixed=False, silent_last_days=True),
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


def _default_pupils(uai: str, base: int) -> int:
    # Files without counts: a stable spread around a typical size, so sites are not flat.
    spread = int(hashlib.sha1(uai.encode()).hexdigest()[:4], 16) / 0xFFFF
    return int(base * (0.5 + spread))


@lru_cache(maxsize=2)
def etablissements(referentiel_dir: Path = REFERENTIEL_DIR) -> tuple[Etablissement, ...]:
    """Open 1D and 2D establishments of the annuaires (35, 94) and the collèges file."""
    out: dict[str, Etablissement] = {}
    for name in ("annuaire-education-35-2023.csv", "annuaire-education-94-ecoles-2026.csv"):
        for r in _rows(referentiel_dir / name):
            nature = r.get("code_nature", "")
            if r.get("etat") != "OUVERT" or nature[:1] not in ("1", "3"):
                continue
            uai = r["Identifiant_de_l_etablissement"].strip().upper()
            degree = "1D" if nature.startswith("1") else "2D"
            count = (r.get("Nombre_d_eleves") or "").strip()
            pupils = int(count) if count.isdigit() and int(count) > 0 else _default_pupils(
                uai, 180 if degree == "1D" else 550)
            out[uai] = Etablissement(uai, degree, r["Code_departement"].strip(), pupils)
    for r in _rows(referentiel_dir / "geolocalisation-colleges-france.csv"):
        uai = r["numero_uai"].strip().upper()
        if r.get("etat_etablissement") != "1" or uai in out:
            continue
        out[uai] = Etablissement(uai, "2D", r["code_departement"].strip(), _default_pupils(uai, 520))
    return tuple(sorted(out.values(), key=lambda e: e.uai))


def site_etablissements(site: SiteSpec, referentiel_dir: Path = REFERENTIEL_DIR) -> list[Etablissement]:
    return [e for e in etablissements(referentiel_dir) if e.degree == site.degree and e.departement in site.departements]


@dataclass
class SimulatedUser:
    site_id: int
    profil: str
    uai: str
    visitor_id: str  # 16 hex, what the tag's cookie holds
    uid: str  # pseudonymous id sent by the ENT (hashed again by the collector)
    device: str  # key of catalog.USER_AGENTS
    activity: float  # relative visit frequency


@dataclass
class Population:
    """Users by (site, profil), with cumulative weights ready for `random.choices`."""

    users: dict[tuple[int, str], list[SimulatedUser]] = field(default_factory=dict)
    cum_weights: dict[tuple[int, str], list[float]] = field(default_factory=dict)

    def pick(self, rng: random.Random, site_id: int, profil: str) -> SimulatedUser:
        users = self.users[(site_id, profil)]
        return rng.choices(users, cum_weights=self.cum_weights[(site_id, profil)])[0]


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def build_population(seed: int, visits_per_school_day: float, referentiel_dir: Path = REFERENTIEL_DIR,
                     sites: tuple[SiteSpec, ...] = SITES) -> Population:
    """Sizes each (site, profil) group so that a user visits about VISITS_PER_USER_DAY times a
    school day; users sit in establishments in proportion to pupils."""
    rng = random.Random(f"population:{seed}")
    pop = Population()
    for site in sites:
        home = site_etablissements(site, referentiel_dir)
        foreign = [e for e in etablissements(referentiel_dir)
                   if e.degree == site.degree and e.departement in site.foreign_departements]
        home_w = [e.pupils for e in home]
        foreign_w = [e.pupils for e in foreign]
        for profil, pct in catalog.PROFILE_MIX[site.degree].items():
            visits = visits_per_school_day * site.share * pct / 100
            n = max(5, round(visits / catalog.VISITS_PER_USER_DAY[profil]))
            users: list[SimulatedUser] = []
            for i in range(n):
                if foreign and rng.random() < site.foreign_share:
                    etab = rng.choices(foreign, weights=foreign_w)[0]
                else:
                    etab = rng.choices(home, weights=home_w)[0]
                key = f"{seed}:{site.id}:{profil}:{i}"
                users.append(SimulatedUser(
                    site_id=site.id,
                    profil=profil,
                    uai=etab.uai,
                    visitor_id=hashlib.sha1(f"vid:{key}".encode()).hexdigest()[:16],
                    uid="u" + hashlib.sha1(f"uid:{key}".encode()).hexdigest()[:24],
                    device=_weighted(rng, catalog.DEVICE_MIX[profil]),
                    # Heavy-tailed: a few users come every day, most now and then.
                    activity=rng.lognormvariate(0, 0.8),
                ))
            cum: list[float] = []
            total = 0.0
            for u in users:
                total += u.activity
                cum.append(total)
            pop.users[(site.id, profil)] = users
            pop.cum_weights[(site.id, profil)] = cum
    return pop


def site_registration(site: SiteSpec, token_sha256: str) -> dict[str, Any]:
    """The registration of one simulated site, in the shape of `dnma.sites.dump_sites`."""
    return {
        "id": site.id,
        "name": site.name,
        "main_url": f"https://{site.host}",
        "timezone": "Europe/Paris",
        "token_sha256": token_sha256,
        "projet": site.projet,
        "exploitant": site.exploitant,
        "plateforme": site.plateforme,
        "perimeter": {"degrees": [site.degree], "departements": list(site.departements)},
    }
