"""Realistic, seed-deterministic ENT traffic (`dnma demo`): school calendar, hours, profiles,
services and tools, devices, a little deliberately bad tagging; sent through the real collector."""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from dnma_client import catalog
from dnma_client.calendar import day_kind
from dnma_client.population import (
    REFERENTIEL_DIR,
    SITES,
    Population,
    SimulatedUser,
    SiteSpec,
    build_population,
    site_registration,
)

PARIS = ZoneInfo("Europe/Paris")  # the SDK imports nothing of the server (dnma.clock.PARIS)
HITS_PER_SCHOOL_DAY = 16_000  # at scale 1: 60 days is then about a million hits
HITS_PER_VISIT = 5.0  # hits a visit makes on average, weighted by the weekday mix: calibrates the scale
CHECK_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"

# Deliberately bad tagging, per hit (TAGGING.md quality signals; flagged, never refused).
INVALID_UAI_SHARE = 0.01
MISSING_PROFIL_SHARE = 0.005
MISSING_SERVICE_SHARE = 0.005
SILENT_DAYS = 3  # the silent site stops this many days before the end (when the run is long enough)

MAX_BATCH_ITEMS = 1000
MAX_BATCH_BYTES = 900_000  # under the collector's 1 MiB body limit


def demo_sites(tokens: str | Mapping[int, str]) -> list[dict[str, Any]]:
    """Registrations of the simulated sites (a server's sites.yaml entries), each site's write token
    stored as its SHA-256 as the server expects (dnma/sites.py). `tokens` maps a site id to its
    token; one string gives every site the same token (tests writing as a single client)."""
    return [site_registration(s, hashlib.sha256(_token_of(tokens, s.id).encode()).hexdigest()) for s in SITES]


def demo_site_ids() -> list[int]:
    return [s.id for s in SITES]


def _token_of(tokens: str | Mapping[int, str], site: int) -> str:
    if isinstance(tokens, str):
        return tokens
    if site not in tokens:
        raise ValueError(f"no token for site {site}")
    return tokens[site]


def _cum(weights: Iterable[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


@dataclass
class _Choices:
    """Keys with cumulative weights, for fast repeated `rng.choices`."""

    keys: list[Any]
    cum: list[float]

    @classmethod
    def of(cls, weights: dict[Any, float]) -> _Choices:
        keys = [k for k, w in weights.items() if w > 0]
        return cls(keys, _cum(weights[k] for k in keys))

    def pick(self, rng: random.Random) -> Any:
        return rng.choices(self.keys, cum_weights=self.cum)[0]


@dataclass
class Simulation:
    """`days(start, n)` yields, day by day, the bulk items (`?idsite=...&cdt=...`) sorted by time."""

    scale: float = 1.0
    seed: int = 1
    referentiel_dir: Path = REFERENTIEL_DIR
    sites: tuple[SiteSpec, ...] = SITES
    bad_tagging: bool = True  # False: none of the deliberate tagging faults (for false-positive tests)
    _prefix_cache: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def visits_per_school_day(self) -> float:
        return HITS_PER_SCHOOL_DAY * self.scale / HITS_PER_VISIT

    @cached_property
    def population(self) -> Population:
        return build_population(self.seed, self.visits_per_school_day, self.referentiel_dir, self.sites)

    @cached_property
    def _services(self) -> dict[tuple[str, str], _Choices]:
        out = {}
        for degree in ("1D", "2D"):
            for profil, weights in catalog.SERVICE_WEIGHTS.items():
                if degree == "1D":
                    weights = {s: w * catalog.SERVICE_FACTOR_1D.get(s, 1) for s, w in weights.items()}
                out[(degree, profil)] = _Choices.of(weights)
        return out

    @cached_property
    def _tools(self) -> dict[tuple[str, str], _Choices]:
        out = {}
        for degree, table in (("1D", catalog.TOOLS_1D), ("2D", catalog.TOOLS_2D)):
            for service, tools in table.items():
                out[(degree, service)] = _Choices.of(dict(tools))
        return out

    @cached_property
    def _hours(self) -> dict[tuple[str, str], _Choices]:
        """(profil, kind) with kind in school / off / wed1d / wed2d."""
        out = {}
        for profil, curve in catalog.HOURS_SCHOOL_DAY.items():
            out[(profil, "school")] = _Choices.of(dict(enumerate(curve)))
            staff = profil in ("ADMIN_VIE_SCOL_TECH", "PERSONNEL_COLLECTIVITE")
            out[(profil, "off")] = _Choices.of(dict(enumerate(curve if staff else catalog.HOURS_DAY_OFF)))
            for kind, damp in (("wed1d", 0.3), ("wed2d", 0.7)):
                out[(profil, kind)] = _Choices.of(
                    {h: w * (damp if 12 <= h <= 17 else 1) for h, w in enumerate(curve)})
        return out

    # --- one user's constant part of every hit
    def _prefix(self, site: SiteSpec, user: SimulatedUser) -> str:
        key = id(user)
        cached = self._prefix_cache.get(key)
        if cached is None:
            ua = quote(catalog.USER_AGENTS[user.device], safe="")
            cached = (f"idsite={site.id}&rec=1&_id={user.visitor_id}&uid={user.uid}&ua={ua}"
                      f"&res={catalog.SCREENS[user.device]}&lang=fr-FR")
            if site.send_fixed:
                cached += f"&dimension6={site.projet}&dimension7={site.exploitant}&dimension8={site.plateforme}"
            self._prefix_cache[key] = cached
        return cached

    def _dims(self, rng: random.Random, user: SimulatedUser, service: str, outil: str) -> str:
        uai, profil, svc = user.uai, user.profil, service.upper()
        r = rng.random() if self.bad_tagging else 1.0
        if r < INVALID_UAI_SHARE:
            uai = uai[:7] + CHECK_LETTERS[(CHECK_LETTERS.index(uai[7]) + 1 + rng.randrange(22)) % 23]
        elif r < INVALID_UAI_SHARE + MISSING_PROFIL_SHARE:
            profil = ""
        elif r < INVALID_UAI_SHARE + MISSING_PROFIL_SHARE + MISSING_SERVICE_SHARE:
            svc = ""
        typ = "TIERS" if outil else "NATIF"
        return (f"dimension1={uai}&dimension2={svc}&dimension3={typ}&dimension4={outil}"
                f"&dimension5={profil}")

    def _visit(self, rng: random.Random, site: SiteSpec, user: SimulatedUser, t: int,
               out: list[tuple[int, str]]) -> None:
        prefix = self._prefix(site, user)
        services = self._services[(site.degree, user.profil)]
        base_url = f"https%3A%2F%2F{site.host}%2F"
        pages = 1 if rng.random() < 0.3 else min(30, 2 + int(rng.expovariate(1 / 3)))
        for p in range(pages):
            service = "accueil" if p == 0 and rng.random() < 0.5 else services.pick(rng)
            tools = self._tools.get((site.degree, service))
            outil = tools.pick(rng) if tools else ""
            page = f"connecteur%2F{outil.lower()}" if outil else f"{service}%2F{('', 'liste', 'consulter', 'edition')[rng.randrange(4)]}"
            url = base_url + page
            pv = f"{rng.getrandbits(24):06x}"
            common = f"{prefix}&{self._dims(rng, user, service, outil)}&url={url}&pv_id={pv}"
            title = quote(service.replace("_", " ").capitalize())
            out.append((t, f"{common}&action_name={title}"))
            dwell = min(1200, 5 + int(rng.lognormvariate(3.7, 0.9)))  # median about 45 s
            r = rng.random()
            if r < 0.08:
                cat, act = catalog.EVENTS[rng.randrange(len(catalog.EVENTS))]
                out.append((t + dwell // 2, f"{common}&ca=1&e_c={cat}&e_a={act}&e_n={service}"))
            elif r < 0.11:
                doc = f"{base_url}stockage_partage%2Ffichiers%2Fdoc-{rng.randrange(500)}.pdf"
                out.append((t + dwell // 2, f"{common}&ca=1&download={doc}"))
            elif r < 0.12 and outil:
                out.append((t + dwell // 2, f"{common}&ca=1&link=https%3A%2F%2F{outil.lower()}.example%2F"))
            if rng.random() < 0.25:
                # Heartbeats every 15 s while the page keeps the focus (matomo.js enableHeartBeatTimer).
                for k in range(1, 1 + min(rng.randrange(1, 5), dwell // 15)):
                    out.append((t + 15 * k, f"{common}&ping=1"))
            t += dwell

    def day(self, day: date, *, last_day: date | None = None) -> list[str]:
        """All items of one day, sorted by time. Deterministic in (seed, scale, day, last_day)."""
        rng = random.Random(f"day:{self.seed}:{day.isoformat()}")
        hour_epoch = [int(datetime(day.year, day.month, day.day, h, tzinfo=PARIS).timestamp()) for h in range(24)]
        hits: list[tuple[int, str]] = []
        for site in self.sites:
            if site.silent_last_days and last_day is not None and (last_day - day).days < SILENT_DAYS:
                continue
            kind = day_kind(day, site.zone, site.degree)
            if kind.wednesday_1d:
                hour_kind = "wed1d"
            elif kind.school_day:
                hour_kind = "wed2d" if day.weekday() == 2 else "school"
            else:
                hour_kind = "off"
            noise = max(0.5, rng.gauss(1.0, 0.05))  # day-to-day variation
            for profil, pct in catalog.PROFILE_MIX[site.degree].items():
                expected = self.visits_per_school_day * site.share * pct / 100 * kind.factor * noise
                if not kind.school_day and profil in ("ADMIN_VIE_SCOL_TECH", "PERSONNEL_COLLECTIVITE"):
                    expected *= 0.2  # staff rarely work days off
                n = int(expected) + (rng.random() < expected - int(expected))
                hours = self._hours[(profil, hour_kind)]
                for _ in range(n):
                    user = self.population.pick(rng, site.id, profil)
                    start = hour_epoch[hours.pick(rng)] + rng.randrange(3600)
                    self._visit(rng, site, user, start, hits)
        hits.sort()
        return [f"?{q}&cdt={ts}" for ts, q in hits]

    def days(self, start: date, n: int) -> Iterator[tuple[date, list[str]]]:
        last = start + timedelta(days=n - 1)
        for i in range(n):
            d = start + timedelta(days=i)
            yield d, self.day(d, last_day=last if n >= SILENT_DAYS + 4 else None)


# --- sending through the collector


@dataclass
class SendReport:
    hits: int = 0
    tracked: int = 0
    invalid: int = 0
    batches: int = 0
    failed_batches: int = 0
    seconds: float = 0.0
    invalid_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        rate = self.hits / self.seconds if self.seconds else 0.0
        return {"hits": self.hits, "tracked": self.tracked, "invalid": self.invalid, "batches": self.batches,
                "failed_batches": self.failed_batches, "seconds": round(self.seconds, 2),
                "hits_per_s": round(rate)}


def batches(items: Iterable[str]) -> Iterator[list[str]]:
    """≤ MAX_BATCH_ITEMS items and about ≤ MAX_BATCH_BYTES of JSON each."""
    batch: list[str] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= MAX_BATCH_ITEMS or size + len(item) + 4 > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 4
    if batch:
        yield batch


def site_of(item: str) -> int:
    """The site of a bulk item (`?idsite=N&...`, as `Simulation.day` writes them)."""
    return int(item[len("?idsite="):item.index("&")])


def token_batches(items: Iterable[str], tokens: str | Mapping[int, str]) -> Iterator[tuple[str, list[str]]]:
    """(token, batch) pairs: with one token, `batches(items)`; with a token per site, each batch
    holds one site's items and carries that site's token, so that no token writes another site."""
    if isinstance(tokens, str):
        for batch in batches(items):
            yield tokens, batch
        return
    pending: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for item in items:
        site = site_of(item)
        batch = pending.get(site, [])
        if batch and (len(batch) >= MAX_BATCH_ITEMS or sizes[site] + len(item) + 4 > MAX_BATCH_BYTES):
            yield _token_of(tokens, site), batch
            batch = []
        if not batch:
            pending[site], sizes[site] = batch, 0
        batch.append(item)
        sizes[site] += len(item) + 4
    for site, batch in pending.items():
        if batch:
            yield _token_of(tokens, site), batch


def _post_batch(http: Any, url: str, batch: list[str], token: str, retries: int = 6) -> dict[str, Any]:
    import httpx
    import orjson

    body = orjson.dumps({"requests": batch, "token_auth": token})
    delay = 0.5
    for attempt in range(retries):
        try:
            resp = http.post(url, content=body, headers={"Content-Type": "application/json"})
        except httpx.TransportError:
            if attempt == retries - 1:
                raise
        else:
            if resp.status_code != 503:
                resp.raise_for_status()
                return dict(orjson.loads(resp.content))
            # Spool full: the collector says when to come back.
            delay = float(resp.headers.get("Retry-After", delay))
        time.sleep(delay)
        delay = min(delay * 2, 10)
    raise RuntimeError(f"batch refused {retries} times (spool full?)")


def send(items: Iterable[str], collector: str, tokens: str | Mapping[int, str], *, concurrency: int = 4,
         progress: bool = True, total: int | None = None) -> SendReport:
    """Bulk-posts `items` with up to `concurrency` requests in flight, on pooled connections; each
    batch carries its site's token (`tokens` as for `token_batches`)."""
    import httpx
    from tqdm import tqdm

    url = collector.rstrip("/") + "/matomo.php"
    report = SendReport()
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="hit", unit_scale=True, disable=not progress, file=sys.stderr)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=120, limits=limits) as http, ThreadPoolExecutor(concurrency) as pool:
        pending: dict[Future[dict[str, Any]], list[str]] = {}

        def collect(done: Iterable[Future[dict[str, Any]]]) -> None:
            for fut in done:
                batch = pending.pop(fut)
                try:
                    answer = fut.result()
                except Exception as exc:  # one failed batch must not hide the others' results
                    report.failed_batches += 1
                    report.invalid_samples.append(f"batch failed: {exc}")
                    continue
                report.tracked += int(answer.get("tracked", 0))
                report.invalid += int(answer.get("invalid", 0))
                for i in answer.get("invalid_indices", [])[:3]:
                    if len(report.invalid_samples) < 10:
                        report.invalid_samples.append(batch[i])
                bar.update(len(batch))

        for token, batch in token_batches(items, tokens):
            report.hits += len(batch)
            report.batches += 1
            pending[pool.submit(_post_batch, http, url, batch, token)] = batch
            if len(pending) >= concurrency * 2:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        collect(list(pending))
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
