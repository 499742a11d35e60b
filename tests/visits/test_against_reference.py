"""The production SQL (array prefix scans) against the window-function formulation and the
plain-Python reference of the rules, on random hits built to hit the boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.migrations.m0003_visits import VISIT_COLUMN_NAMES
from aggregator.visits_query import array_select, content_hash, window_select

from .conftest import Db, hit, open_db, paris
from .reference import local_day, sessionize

TIMEZONES = {2: "America/Cayenne"}  # site 2 off Paris: the local-day branch is exercised too
START = paris(2026, 3, 28, 22, 0, 0)  # spans midnight and the spring daylight-saving change
GAPS = st.sampled_from([0, 0, 1, 5, 600, 1799, 1800, 1801, 3000, 20000])
COMPARED = [c for c in VISIT_COLUMN_NAMES if c not in ("visit_id", "degre", "academie", "departement",
                                                        "region", "nature", "secteur")]


@st.composite
def visitor_hits(draw: st.DrawFn) -> list[dict[str, Any]]:
    site_id = draw(st.sampled_from([1, 2]))
    visitor_id = draw(st.integers(1, 3))
    offset = draw(st.integers(0, 4 * 3600))
    out = []
    for gap in draw(st.lists(GAPS, min_size=1, max_size=12)):
        offset += gap
        out.append(hit(
            START + timedelta(seconds=offset),
            site_id=site_id,
            visitor_id=visitor_id,
            action=draw(st.sampled_from(["pageview", "ping", "ping", "event", "download", "content", "search"])),
            new_visit=draw(st.sampled_from([0, 0, 0, 1])),
            campaign=draw(st.sampled_from(["", "", "a", "b"])),
            uai=draw(st.sampled_from(["", "0350001A", "0350002B"])),
            service=draw(st.sampled_from(["", "notes", "absences"])),
            type=draw(st.sampled_from(["", "NATIF", "TIERS"])),
            user_hash=draw(st.sampled_from([0, 0, 77])),
            flags=draw(st.sampled_from([[], [], ["invalid_uai"], ["missing_service"]])),
        ))
    return out


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    tmp: Path = tmp_path_factory.mktemp("reference")
    sites = [{"id": 1, "name": "a", "main_url": "https://a"},
             {"id": 2, "name": "b", "main_url": "https://b", "timezone": TIMEZONES[2]}]
    db = open_db(tmp, sites)
    yield db
    db.client.close()


def _hits_as_seen(db: Db) -> list[dict[str, Any]]:
    sql = (
        f"SELECT site_id, visitor_id, toUInt32(ts) AS unix_ts, toString(action) AS action,"
        f" {content_hash()} AS h, new_visit, campaign, uai, profil, device, os, browser, projet, service, outil,"
        f" type, user_hash, flags FROM dnma.hits"
    )
    # The unix seconds under another name: an alias `ts` would shadow the DateTime column in ClickHouse.
    return [{**h, "ts": h.pop("unix_ts")} for h in db.client.query(sql).named_results()]


def _days(hits: list[dict[str, Any]]) -> list[Any]:
    """The local days of the hits, as the reference finds them: the days the SQL is asked for."""
    return sorted({local_day(h["site_id"], h["ts"], TIMEZONES) for h in hits})


def _visits(db: Db, select: str, days: list[Any]) -> list[dict[str, Any]]:
    out = []
    for day in days:
        sql = f"SELECT * EXCEPT (start, `end`), toUInt32(start) AS start, toUInt32(`end`) AS `end` FROM ({select})"
        out += db.client.query(sql, parameters={"day": day}).named_results()
    # Two visits can agree on every compared column (same second, one forced by new_visit): their
    # ids tell them apart, or the order ClickHouse returned them in would decide the comparison.
    return sorted(({c: v[c] for c in COMPARED} | {"visit_id": v["visit_id"]} for v in out),
                  key=lambda v: (_canonical(v), v["visit_id"]))


def _canonical(visit: dict[str, Any]) -> tuple[str, ...]:
    # Two visits may start in the same second (new_visit, campaign): order on every column.
    return tuple(str(visit[c]) for c in COMPARED)


def _compared(visits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({c: v[c] for c in COMPARED} for v in visits), key=_canonical)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(visitor_hits(), min_size=1, max_size=4))
def test_sql_matches_reference_and_window_functions(shared_db: Db, groups: list[list[dict[str, Any]]]) -> None:
    db = shared_db
    db.client.command("TRUNCATE TABLE dnma.hits")
    db.insert([h for group in groups for h in group])
    seen = _hits_as_seen(db)
    days = _days(seen)
    by_array = _visits(db, array_select(db.r, TIMEZONES), days)
    by_window = _visits(db, window_select(db.r, TIMEZONES), days)
    assert by_array == by_window  # visit ids included
    assert _compared(by_array) == _compared(sessionize(seen, TIMEZONES))


def test_window_functions_agree_on_a_larger_sample(shared_db: Db) -> None:
    db = shared_db
    db.client.command("TRUNCATE TABLE dnma.hits")
    # 20k hits from ClickHouse functions: 200 visitors, boundary-heavy gaps, pings, campaigns
    db.client.command(
        "INSERT INTO dnma.hits (ts, site_id, visitor_id, action, new_visit, campaign, service, uai) "
        "SELECT toDateTime('2026-03-29 00:00:00', 'Europe/Paris') + intDiv(number, 200) * 900"
        "  + (cityHash64(number, 1) % 3) * 1799 + (number % 200) * 7, 1 + number % 2, number % 200,"
        "  ['pageview', 'ping', 'event', 'download'][1 + cityHash64(number, 2) % 4],"
        "  cityHash64(number, 3) % 40 = 0, ['', '', '', 'a', 'b'][1 + cityHash64(number, 4) % 5],"
        "  ['notes', 'absences', ''][1 + cityHash64(number, 5) % 3], '0350001A' FROM numbers(20000)"
    )
    seen = _hits_as_seen(db)
    days = _days(seen)
    by_array = _visits(db, array_select(db.r, TIMEZONES), days)
    assert len(by_array) > 1000
    assert by_array == _visits(db, window_select(db.r, TIMEZONES), days)
    assert _compared(by_array) == _compared(sessionize(seen, TIMEZONES))


def test_two_visits_alike_in_every_compared_column_compare_by_their_ids(shared_db: Db) -> None:
    """Found by the property test: two events in the same second, the later-sorted one with
    new_visit=1, make two one-hit visits that differ only by visit_id."""
    db = shared_db
    db.client.command("TRUNCATE TABLE dnma.hits")
    at = paris(2026, 3, 28, 22, 30, 0)
    db.insert([hit(paris(2026, 3, 28, 22, 0, 0), visitor_id=1, uai="", service="", type="", action="pageview")] * 2
              + [hit(at, visitor_id=1, uai="", service="", action="event", user_hash=77, new_visit=n) for n in (0, 1)])
    days = _days(_hits_as_seen(db))
    by_array = _visits(db, array_select(db.r, TIMEZONES), days)
    assert len(by_array) == 3 and by_array == _visits(db, window_select(db.r, TIMEZONES), days)
