"""Incremental passes over the day under way (aggregator.sessionizer, `incremental_visits`): after
every pass the visits are those a whole rebuild of the same hits gives, whatever arrived when: late
hits, hits out of order, a visitor whose visit spans passes, a midnight crossing, a site in
another time zone. The clock is set per pass (dnma.clock.configure), so the days are pinned."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.migrations.m0003_visits import VISIT_COLUMN_NAMES
from aggregator.rollups import HIT_ROLLUPS, VISIT_ROLLUPS, inline_dates
from aggregator.sessionizer import ARRIVALS, Settling, aggregate_once, site_timezones
from aggregator.visits_query import array_select
from dnma import clock

from .conftest import Db, hit, open_db, paris

DAY = date(2026, 3, 10)  # a Tuesday; passes run from 22:30 that evening to 01:30 the next morning
MIDNIGHT = paris(2026, 3, 11, 0, 0, 0)
SITES = [{"id": 1, "name": "a", "main_url": "https://a"},
         {"id": 2, "name": "b", "main_url": "https://b", "timezone": "America/Cayenne"}]  # UTC-3
TABLES = ("hits", "visits", "visits_fingerprints", "hits_fingerprints", ARRIVALS, f"{ARRIVALS}_taken",
          *HIT_ROLLUPS, *(v.table for v in VISIT_ROLLUPS))
COLUMNS = ", ".join(f"toString(`{c}`)" for c in VISIT_COLUMN_NAMES)


@pytest.fixture(scope="module")
def zdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    """One migrated chDB for the module (one engine path per process), emptied before each test and
    example; one site in Cayenne."""
    d = open_db(tmp_path_factory.mktemp("incremental"), SITES)
    yield d
    d.client.close()


def _at(moment: datetime) -> None:
    clock.configure(moment.isoformat())


@pytest.fixture(autouse=True)
def _restore_clock() -> Iterator[None]:
    yield
    clock.configure(os.environ.get("DNMA_NOW", ""))


def _reset(db: Db) -> None:
    for table in TABLES:
        db.client.command(f"TRUNCATE TABLE dnma.{table}")


def _check(db: Db, held: list[str]) -> None:
    """The days with hits, but past ones the pass held back: stored visits == a whole rebuild's
    (computed now, not stored), and each daily rollup counts each visit once."""
    timezones = site_timezones(db.settings)
    for day in (DAY, DAY + timedelta(days=1)):
        if day.isoformat() in held:
            continue
        whole = inline_dates(array_select(db.r, timezones), {"day": day})
        tiers = ", ".join(f"(SELECT sum(visites) FROM dnma.{v.table} WHERE day = '{day}')"
                          for v in VISIT_ROLLUPS if v.period == "day" and not v.by_service)
        stored, rebuilt, counted = db.client.query(
            f"SELECT (SELECT arraySort(groupArray(tuple({COLUMNS}))) FROM dnma.visits WHERE day = '{day}'), "
            f"(SELECT arraySort(groupArray(tuple({COLUMNS}))) FROM ({whole})), [{tiers}]").result_rows[0]
        assert stored == rebuilt, day
        assert counted == [len(stored)] * len(counted), day


# One hit: (pass it arrives before, seconds from midnight (14,400: midnight in Cayenne), visitor, site, action, new_visit, campaign, uai)
HITS = st.tuples(
    st.integers(0, 4),
    st.one_of(st.integers(-5400, 5400), st.sampled_from([-1800, -1799, -1, 0, 1, 1799, 1800, 14399, 14400])),
    st.integers(1, 3),
    st.sampled_from([1, 1, 2]),
    st.sampled_from(["pageview", "pageview", "ping", "event"]),
    st.sampled_from([0, 0, 0, 1]),
    st.sampled_from(["", "", "", "rentree"]),
    st.sampled_from(["", "0350001A", "0350002B"]),
)
# Pass k runs at MIDNIGHT + PASS_AT[k] seconds: two passes before midnight, three after.
PASS_AT = (-1500, -300, 120, 1800, 5400)


def _row(spec: tuple[Any, ...]) -> dict[str, Any]:
    _, offset, visitor, site, action, new_visit, campaign, uai = spec
    return hit(MIDNIGHT + timedelta(seconds=offset), visitor_id=visitor, site_id=site, action=action,
               new_visit=new_visit, campaign=campaign, uai=uai)


# A handful of examples keeps make test's budget (each pass is a dozen statements); raise it to
# search longer, e.g. DNMA_INCREMENTAL_EXAMPLES=100.
EXAMPLES = int(os.environ.get("DNMA_INCREMENTAL_EXAMPLES", "6"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hits=st.lists(HITS, min_size=1, max_size=25), seed=st.integers(0, 2**16))
def test_every_pass_gives_the_visits_of_a_whole_rebuild(zdb: Db, hits: list[tuple[Any, ...]], seed: int) -> None:
    _reset(zdb)
    shuffle = random.Random(seed)
    settling = Settling()
    for k, at in enumerate(PASS_AT):
        batch = [_row(h) for h in hits if h[0] == k]
        shuffle.shuffle(batch)  # out of order, in up to three insert blocks
        for first in range(0, len(batch), max(1, len(batch) // 3 + 1)):
            zdb.insert(batch[first:first + len(batch) // 3 + 1])
        _at(MIDNIGHT + timedelta(seconds=at))
        result = aggregate_once(zdb.client, zdb.settings, None, settling)
        _check(zdb, result["held_days"])
        assert zdb.scalar(f"SELECT count() FROM dnma.{ARRIVALS}_taken") == 0  # used up


def test_the_first_pass_builds_whole_then_passes_build_what_arrived(zdb: Db) -> None:
    """A visitor spanning passes: the first pass of a process builds the day whole, the next ones
    only the visitors that received hits (their visits extended, the others copied as they were)."""
    db = zdb
    _reset(db)
    now = paris(2026, 3, 10, 10, 0, 0)
    _at(now)
    settling = Settling()
    db.insert([hit(now - timedelta(minutes=20), visitor_id=1), hit(now - timedelta(minutes=10), visitor_id=2)])
    first = aggregate_once(db.client, db.settings, None, settling)
    assert (first["days"], first["incremental_days"]) == (["2026-03-10"], [])
    before = {v["visitor_id"]: v for v in db.visits()}
    db.insert([hit(now - timedelta(minutes=5), visitor_id=1, action="event")])  # visitor 1 goes on
    _at(now + timedelta(seconds=30))
    second = aggregate_once(db.client, db.settings, None, settling)
    assert (second["days"], second["incremental_days"]) == (["2026-03-10"], ["2026-03-10"])
    after = {v["visitor_id"]: v for v in db.visits()}
    assert (after[1]["actions"], after[1]["duration"]) == (2, 15 * 60 + 1)
    assert after[1]["visit_id"] == before[1]["visit_id"]  # the same visit, extended
    assert after[2] == before[2]
    assert db.scalar("SELECT sum(visites) FROM dnma.visits_daily WHERE day = '2026-03-10'") == 2
    assert aggregate_once(db.client, db.settings, None, settling)["days"] == []  # nothing arrived


def test_a_stopped_pass_keeps_what_it_took(zdb: Db) -> None:
    """A pass stopped before its day is built leaves the taken arrivals for the next pass."""
    import threading

    db = zdb
    _reset(db)
    now = paris(2026, 3, 10, 10, 0, 0)
    _at(now)
    settling = Settling()
    db.insert([hit(now - timedelta(minutes=20))])
    aggregate_once(db.client, db.settings, None, settling)
    db.insert([hit(now - timedelta(minutes=1), action="event")])
    stop = threading.Event()
    stop.set()
    assert aggregate_once(db.client, db.settings, stop, settling)["days"] == []
    assert db.scalar(f"SELECT count() FROM dnma.{ARRIVALS}_taken") == 1
    assert aggregate_once(db.client, db.settings, None, settling)["incremental_days"] == ["2026-03-10"]
    [visit] = db.visits()
    assert visit["actions"] == 2


def test_a_site_moved_to_another_time_zone_rebuilds_whole_days(zdb: Db) -> None:
    """Its hits change local days: the visits of the days under way are built whole again."""
    from dnma.sites import dump_sites

    db = zdb
    _reset(db)
    now = paris(2026, 3, 10, 10, 0, 0)
    _at(now)
    settling = Settling()
    db.insert([hit(now - timedelta(minutes=20))])
    aggregate_once(db.client, db.settings, None, settling)
    db.insert([hit(now - timedelta(minutes=1))])
    try:
        dump_sites([{**SITES[0], "timezone": "Europe/Berlin"}, SITES[1]], db.settings.resolved_sites_file)
        result = aggregate_once(db.client, db.settings, None, settling)
    finally:
        dump_sites(SITES, db.settings.resolved_sites_file)
    assert (result["days"], result["incremental_days"]) == (["2026-03-10"], [])
    [visit] = db.visits()
    assert visit["actions"] == 2
