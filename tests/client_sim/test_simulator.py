"""The simulator alone: deterministic, plausible mixes (profiles, calendar, hours, devices, tools),
bad tagging in controlled shares, perimeters and the silent site."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from functools import lru_cache
from urllib.parse import parse_qsl

import pytest
from dnma_client.calendar import day_kind
from dnma_client.simulator import SILENT_DAYS, Simulation, batches, demo_sites, site_of, token_batches

from dnma import uai as uai_rules
from dnma.access import Access
from dnma.clock import PARIS
from dnma.settings import Settings
from dnma.sites import SiteRegistry, dump_sites
from dnma.vocab import SERVICES

WEEK = date(2025, 11, 17)  # a Monday, outside holidays in every zone


def parse(item: str) -> dict[str, str]:
    return dict(parse_qsl(item.lstrip("?"), keep_blank_values=True))


@lru_cache(maxsize=1)
def fortnight() -> dict[date, list[dict[str, str]]]:
    sim = Simulation(scale=0.3, seed=11)
    return {d: [parse(i) for i in items] for d, items in sim.days(WEEK, 14)}


def all_hits() -> list[dict[str, str]]:
    return [h for hits in fortnight().values() for h in hits]


def test_same_seed_same_hits_other_seed_other_hits() -> None:
    day = date(2025, 11, 18)
    a = Simulation(scale=0.1, seed=7).day(day)
    b = Simulation(scale=0.1, seed=7).day(day)
    c = Simulation(scale=0.1, seed=8).day(day)
    assert a == b
    assert a != c
    assert len(a) > 500


def test_scale_one_is_about_16k_hits_on_school_days() -> None:
    sim = Simulation(scale=1.0, seed=3)
    school = [len(sim.day(WEEK + timedelta(days=i))) for i in range(5)]
    mean = sum(school) / len(school)
    assert 13_000 < mean < 19_000, school


def test_profile_shares() -> None:
    pages = [h for h in all_hits() if "action_name" in h and h["dimension5"]]
    shares = {p: n / len(pages) for p, n in Counter(h["dimension5"] for h in pages).items()}
    assert 0.50 < shares["ELEVE"] < 0.70, shares
    assert 0.13 < shares["PARENT"] < 0.27, shares
    assert 0.08 < shares["ENSEIGNANT"] < 0.16, shares
    assert {"ADMIN_VIE_SCOL_TECH", "PERSONNEL_COLLECTIVITE", "AUTRE"} <= set(shares)


def test_weekends_holidays_and_wednesdays_are_lower() -> None:
    days = fortnight()
    weekdays = [len(h) for d, h in days.items() if d.weekday() in (0, 1, 3)]
    weekend = [len(h) for d, h in days.items() if d.weekday() >= 5]
    assert max(weekend) < 0.5 * min(weekdays)
    sim = Simulation(scale=0.3, seed=11)
    holiday = len(sim.day(date(2025, 12, 23)))  # a Tuesday of the Christmas holidays (all zones)
    assert holiday < 0.3 * len(sim.day(date(2025, 12, 16)))

    def afternoon_1d(d: date) -> int:
        return sum(1 for h in days[d] if h["idsite"] in ("2", "4")
                   and 13 <= datetime.fromtimestamp(int(h["cdt"]), PARIS).hour < 17)

    assert afternoon_1d(date(2025, 11, 19)) < 0.5 * afternoon_1d(date(2025, 11, 18))


def test_rentree_peak_and_zones() -> None:
    assert day_kind(date(2025, 9, 1), "A", "2D").factor > 1.5  # rentrée 2025: Monday 1 September
    assert day_kind(date(2025, 10, 8), "A", "2D").factor < 1.0  # an ordinary Wednesday
    # Winter holidays are staggered by zone: on 2026-02-10 some zones are off, others at school.
    kinds = {z: day_kind(date(2026, 2, 10), z, "2D").school_day for z in "ABC"}
    assert len(set(kinds.values())) == 2, kinds


def test_evening_homework_peak_for_pupils() -> None:
    hours = Counter(
        datetime.fromtimestamp(int(h["cdt"]), PARIS).hour
        for d, hits in fortnight().items() if d.weekday() < 5
        for h in hits if h.get("dimension5") == "ELEVE" and "action_name" in h
    )
    total = sum(hours.values())
    assert sum(hours[h] for h in range(17, 22)) / total > 0.3
    assert sum(hours[h] for h in range(0, 6)) / total < 0.03


def test_bad_tagging_shares_within_bounds() -> None:
    hits = all_hits()
    n = len(hits)
    invalid = sum(1 for h in hits if not uai_rules.is_valid(h["dimension1"]))
    no_profil = sum(1 for h in hits if not h["dimension5"])
    no_service = sum(1 for h in hits if not h["dimension2"])
    assert 0.007 < invalid / n < 0.013, invalid / n
    assert 0.003 < no_profil / n < 0.007
    assert 0.003 < no_service / n < 0.007
    # Invalid ones are a wrong check letter on an otherwise well-formed UAI.
    bad = [h["dimension1"] for h in hits if not uai_rules.is_valid(h["dimension1"])]
    assert all(uai_rules.status(u) is uai_rules.UaiStatus.BAD_CHECK_LETTER for u in bad)


def test_perimeters_and_the_out_of_perimeter_site() -> None:
    perims = {s["id"]: set(s["perimeter"]["departements"]) for s in demo_sites("t")}
    outside: Counter[str] = Counter()
    per_site: Counter[str] = Counter()
    for h in all_hits():
        per_site[h["idsite"]] += 1
        if h["dimension1"][:3] not in perims[int(h["idsite"])]:
            outside[h["idsite"]] += 1
    assert set(outside) == {"4"}, outside
    assert 0.05 < outside["4"] / per_site["4"] < 0.3
    assert set(per_site) == {str(i) for i in perims}


def test_services_tools_and_devices() -> None:
    pages = [h for h in all_hits() if "action_name" in h]
    assert {h["dimension2"].lower() for h in pages if h["dimension2"]} == set(SERVICES)
    tiers = [h for h in pages if h["dimension3"] == "TIERS"]
    assert 0.1 < len(tiers) / len(pages) < 0.5
    assert all(h["dimension4"] for h in tiers) and not any(h["dimension4"] for h in pages if h["dimension3"] == "NATIF")
    assert {"PRONOTE", "LABOMEP", "EDUTHEQUE"} <= {h["dimension4"] for h in tiers}
    uas = Counter(h["ua"] for h in pages)
    assert len(uas) >= 12
    mobile = sum(n for ua, n in uas.items() if "Mobile" in ua)
    assert 0.3 < mobile / len(pages) < 0.8
    kinds = Counter("ping" if "ping" in h else "event" if "e_c" in h else "download" if "download" in h
                    else "outlink" if "link" in h else "page" for h in all_hits())
    assert kinds["page"] > kinds["ping"] > kinds["event"] > kinds["download"] > kinds["outlink"] > 0


def test_visits_have_several_pages_within_30_minutes() -> None:
    by_visitor: dict[tuple[str, str], list[int]] = {}
    for h in fortnight()[WEEK]:
        if "action_name" in h:
            by_visitor.setdefault((h["idsite"], h["_id"]), []).append(int(h["cdt"]))
    gaps = [b - a for ts in by_visitor.values() for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)]
    assert sum(1 for g in gaps if g < 1800) / len(gaps) > 0.7
    # Returning users: stable ids, a good part of them seen on three days or more.
    seen: Counter[tuple[str, str]] = Counter()
    for hits in fortnight().values():
        seen.update({(h["idsite"], h["uid"]) for h in hits})
    assert sum(1 for n in seen.values() if n >= 3) > 0.2 * len(seen)


def test_silent_site_stops_for_the_last_days() -> None:
    sim = Simulation(scale=0.05, seed=2)
    days = list(sim.days(WEEK, 10))
    sent = [any(i.startswith("?idsite=5&") for i in items) for _, items in days]
    assert all(sent[: 10 - SILENT_DAYS][i] for i in range(5))  # school days before: it sends
    assert not any(sent[10 - SILENT_DAYS:])


def test_demo_sites_registry_and_batches(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "sites.yaml"  # type: ignore[operator]
    dump_sites(demo_sites("secret"), path)
    registry = SiteRegistry.load(path)
    assert [s.id for s in registry.all()] == [1, 2, 3, 4, 5]
    access = Access(Settings(data_dir=path.parent, sites_file=path))
    grant = access.grant("secret")
    assert grant is not None and all(grant.may_write(s.id) for s in registry.all())
    assert access.grant("other") is None
    items = Simulation(scale=0.2, seed=1).day(WEEK)
    chunks = list(batches(items))
    assert sum(len(c) for c in chunks) == len(items)
    assert all(len(c) <= 1000 and sum(len(i) + 4 for i in c) <= 900_000 for c in chunks)


def test_with_a_token_per_site_each_batch_holds_one_sites_items_and_its_token() -> None:
    items = Simulation(scale=0.2, seed=1).day(WEEK)
    tokens = {i: f"token-{i}" for i in range(1, 6)}
    sent: dict[int, list[str]] = {}
    for token, batch in token_batches(items, tokens):
        sites = {site_of(i) for i in batch}
        assert len(sites) == 1 and token == tokens[min(sites)]
        assert len(batch) <= 1000 and sum(len(i) + 4 for i in batch) <= 900_000
        sent.setdefault(min(sites), []).extend(batch)
    assert sent == {s: [i for i in items if site_of(i) == s] for s in sent}
    assert sorted(sent) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="no token for site"):
        list(token_batches(items, {1: "only-one"}))
