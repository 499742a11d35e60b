"""The school calendar past the data of vacances-scolaires-france (it ends with the last school
year published): never silently school days; projected from the last known school year, with a
warning logged once."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.checks import calendar
from aggregator.checks.calendar import METRO_ZONES, NATIONAL, SchoolCalendar, school_data_end
from dnma.settings import Settings

CAL = SchoolCalendar(Settings())
LYON, RENNES, PARIS = (CAL.territory_of_academie(a) for a in ("Lyon", "Rennes", "Paris"))


def test_the_data_ends_before_2035() -> None:
    # The cases below are past the data; a package that reaches 2035 makes them moot: move them on.
    assert school_data_end() < date(2035, 1, 1)


def test_2035_holidays_are_projected_not_school_days() -> None:
    assert CAL.is_off(date(2035, 10, 24), RENNES)  # Toussaint (a Wednesday)
    assert CAL.is_off(date(2035, 12, 27), RENNES)  # Noël (a Thursday)
    assert CAL.is_off(date(2035, 7, 17), LYON) and CAL.is_off(date(2035, 8, 14), PARIS)  # summer
    assert not CAL.is_off(date(2035, 10, 9), RENNES)  # an ordinary Tuesday of October
    assert not CAL.is_off(date(2035, 3, 20), PARIS)  # an ordinary Tuesday of March
    # The winter break rotates between zones: past the data, its weeks are off for every zone.
    assert all(CAL.is_off(date(2035, 2, 14), t) for t in (LYON, RENNES, PARIS))


def test_the_autumn_after_the_data_is_projected() -> None:
    """The data ends with a summer break: the Toussaint that follows is off, not a school day."""
    end = school_data_end()
    assert end.month in (7, 8, 9)
    wednesday = next(d for d in (date(end.year, 10, n) for n in range(24, 31)) if d.weekday() == 2)
    assert CAL.is_off(wednesday, RENNES)


def test_a_warning_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    calendar._warn_past_school_data.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dnma.checks"):
        CAL.is_off(date(2024, 10, 21), RENNES)  # inside the data: no warning
        assert not [r for r in caplog.records if r.msg == "school_holidays_projected"]
        for day in (date(2035, 10, 24), date(2036, 1, 8), date(2040, 5, 2)):
            CAL.is_off(day, RENNES)
    warnings = [r for r in caplog.records if r.msg == "school_holidays_projected"]
    assert len(warnings) == 1
    assert warnings[0].data_end == school_data_end().isoformat()  # type: ignore[attr-defined]


@given(st.dates(min_value=school_data_end() + timedelta(days=1), max_value=date(2045, 12, 31)))
def test_past_the_data_every_zone_agrees(day: date) -> None:
    zones = {z: CAL.school_holiday(day, z) for z in METRO_ZONES}
    assert len(set(zones.values())) == 1, zones
    assert CAL.is_off(day, NATIONAL) == CAL.is_off(day, RENNES)
