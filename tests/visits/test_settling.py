"""Periodic passes hold back a past day while it keeps changing (a log import, a drained backlog)
and rebuild it once a pass finds it as the previous one left it; days under way are never held."""

from __future__ import annotations

from datetime import UTC, date, datetime

from aggregator.sessionizer import Settling, aggregate_once, live_from
from dnma import clock

from .conftest import Db, hit, paris

PAST = date(2026, 3, 10)


def _pass(db: Db, settling: Settling) -> dict[str, list[str]]:
    result = aggregate_once(db.client, db.settings, None, settling)
    return {"days": result["days"], "held": result["held_days"]}


def _visits_of(db: Db, day: date) -> tuple[int, int]:
    rows = db.client.query("SELECT count(), sum(actions) FROM dnma.visits WHERE day = {d:Date}",
                           parameters={"d": day}).result_rows
    return int(rows[0][0]), int(rows[0][1])


def test_a_past_day_is_rebuilt_once_a_pass_finds_it_unchanged(db: Db) -> None:
    settling = Settling()
    db.insert([hit(paris(2026, 3, 10, 9, 0, i)) for i in range(3)])
    assert _pass(db, settling) == {"days": [], "held": ["2026-03-10"]}  # first seen changing
    assert _visits_of(db, PAST) == (0, 0)
    db.insert([hit(paris(2026, 3, 10, 9, 1, i)) for i in range(3)])  # the import goes on
    assert _pass(db, settling) == {"days": [], "held": ["2026-03-10"]}
    assert _pass(db, settling) == {"days": ["2026-03-10"], "held": []}  # quiet for a pass
    assert _visits_of(db, PAST) == (1, 6)
    assert _pass(db, settling) == {"days": [], "held": []}  # built: no longer dirty, no longer tracked
    assert settling.seen == {}


def test_a_day_under_way_is_never_held_back(db: Db) -> None:
    settling = Settling()
    now = clock.now().replace(microsecond=0)
    db.insert([hit(now), hit(paris(2026, 3, 10, 9, 0, 0))])
    assert _pass(db, settling) == {"days": [live_from({}, now).isoformat()], "held": ["2026-03-10"]}
    assert _visits_of(db, PAST) == (0, 0)


def test_a_day_that_never_settles_is_rebuilt_after_the_most_passes(db: Db) -> None:
    settling = Settling(max_passes=2)
    results = []
    for minute in range(4):
        db.insert([hit(paris(2026, 3, 10, 10, minute, 0))])
        results.append(_pass(db, settling))
    assert results[0] == results[1] == {"days": [], "held": ["2026-03-10"]}
    assert results[2] == {"days": ["2026-03-10"], "held": []}  # held twice: built despite the flow
    assert results[3] == {"days": [], "held": ["2026-03-10"]}  # changed again: a new wait
    assert _visits_of(db, PAST) == (1, 3)


def test_without_settling_every_dirty_day_is_rebuilt(db: Db) -> None:
    """`dnma aggregate`, `--days` and a SIGUSR1 kick build what is dirty at once."""
    db.insert([hit(paris(2026, 3, 10, 9, 0, 0))])
    assert aggregate_once(db.client, db.settings)["days"] == ["2026-03-10"]


def test_live_from_is_today_in_the_zone_furthest_behind() -> None:
    moment = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)  # Paris 06:00 on the 29th, Tahiti 19:00 on the 28th
    assert live_from({}, moment) == date(2026, 11, 29)
    assert live_from({7: "Pacific/Noumea"}, moment) == date(2026, 11, 29)
    assert live_from({7: "Pacific/Noumea", 8: "Pacific/Tahiti"}, moment) == date(2026, 11, 28)
    assert live_from({}, datetime(2026, 11, 28, 23, 30, tzinfo=UTC)) == date(2026, 11, 29)  # Paris past midnight
