"""The school calendar as traffic factors: holidays per zone (A/B/C), public holidays,
weekends, the 1D Wednesday and the back-to-school (rentrée) peak."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _holiday_dates() -> Any:
    # The package ships its table, up to the last school year published; it never goes to the network.
    from vacances_scolaires_france import SchoolHolidayDates

    return SchoolHolidayDates()


@lru_cache(maxsize=1)
def _known_span() -> tuple[date, date]:
    """The first and last holiday days of the package's table: outside, its dates are unknown."""
    dates = _holiday_dates()
    return min(dates.holidays_for_year(dates.min_year)), max(dates.holidays_for_year(dates.max_year))


@lru_cache(maxsize=4)
def _public_holidays(year: int) -> frozenset[date]:
    import holidays

    return frozenset(holidays.France(years=year))


@lru_cache(maxsize=4096)
def is_school_holiday(day: date, zone: str) -> bool:
    """From the package's table. Outside it only the summer (6 July to 31 August) is a holiday:
    a simulation far from today needs no more, and a warning (once) says the table ran out."""
    first, last = _known_span()
    if first <= day <= last:
        return bool(_holiday_dates().is_holiday_for_zone(day, zone))
    _warn_outside_table(first, last)
    return day.month == 8 or (day.month == 7 and day.day >= 6)


@lru_cache(maxsize=1)
def _warn_outside_table(first: date, last: date) -> None:
    log.warning("school holidays known from %s to %s (vacances-scolaires-france): outside, only the summer",
                first, last)


@lru_cache(maxsize=4096)
def rentree(day: date, zone: str) -> date | None:
    """The first school day after the summer holidays of `day`'s school year, if found nearby."""
    start = date(day.year if day.month >= 8 else day.year - 1, 8, 25)
    for i in range(20):
        d = start + timedelta(days=i)
        if d.weekday() < 5 and not is_school_holiday(d, zone) and d not in _public_holidays(d.year):
            return d
    return None


@dataclass(frozen=True)
class DayKind:
    factor: float  # traffic relative to an ordinary school Tuesday
    school_day: bool  # pupils are at school (hours follow the school-day curve)
    wednesday_1d: bool  # no school on Wednesday afternoon (most écoles: no school at all)


def day_kind(day: date, zone: str, degree: str) -> DayKind:
    weekday = day.weekday()
    weekend = weekday >= 5
    if is_school_holiday(day, zone):
        if day.month in (7, 8):
            # Summer is near silent, then staff and parents come back the last week of August.
            factor = 0.25 if (day.month == 8 and day.day >= 25) else 0.04
        else:
            factor = 0.12 if weekend else 0.18
        return DayKind(factor, False, False)
    if day in _public_holidays(day.year):
        return DayKind(0.2, False, False)
    if weekend:
        # Sunday evening homework weighs more than Saturday.
        return DayKind(0.28 if weekday == 5 else 0.35, False, False)
    factor = {0: 1.1, 1: 1.0, 2: 0.85, 3: 1.0, 4: 0.9}[weekday]
    wednesday_1d = weekday == 2 and degree == "1D"
    if wednesday_1d:
        factor = 0.55
    first = rentree(day, zone)
    if first is not None and 0 <= (day - first).days < 15:
        # The rentrée peak: accounts to activate, timetables to read; fades over two weeks.
        factor *= 1.7 - 0.7 * (day - first).days / 15
    return DayKind(factor, True, wednesday_1d)
