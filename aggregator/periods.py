"""Matomo's `period` and `date` parameters resolved into date spans (day, ISO week, month, year,
range; today, yesterday, YYYY-MM-DD, lastN, previousN, A,B), and the labels Matomo keys them by."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

PERIODS = ("day", "week", "month", "year", "range")
MAX_PERIODS = 1000  # lastN beyond this is a mistake, not a report
_LAST = re.compile(r"^(last|previous)([0-9]{1,9})$")  # ASCII digits, few: int() takes them all


class PeriodError(ValueError):
    """A `period`/`date` pair Matomo would refuse; the message is shown to the API caller."""


@dataclass(frozen=True)
class Span:
    label: str  # Matomo's key: 2024-01-05 | 2024-01-01,2024-01-07 | 2024-01 | 2024 | A,B
    first: date
    last: date


@dataclass(frozen=True)
class Periods:
    period: str
    spans: tuple[Span, ...]
    keyed: bool  # lastN / previousN / A,B over day..year: an object keyed by label

    @property
    def first(self) -> date:
        return self.spans[0].first

    @property
    def last(self) -> date:
        return self.spans[-1].last


def school_year(d: date) -> int:
    """The school year a day belongs to, as its first year: 1 August starts a new one
    (spec/INDICATORS.md, the dashboards' `annee_scolaire`): 2026-07-31 -> 2025, 2026-08-01 -> 2026."""
    return d.year - (d.month < 8)


def start_of(period: str, d: date) -> date:
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "year":
        return d.replace(month=1, day=1)
    return d


def _next_start(period: str, start: date) -> date:
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if period == "year":
        return start.replace(year=start.year + 1)
    return start + timedelta(days=1)


def span_of(period: str, d: date) -> Span:
    first = start_of(period, d)
    last = _next_start(period, first) - timedelta(days=1)
    if period == "week":
        label = f"{first.isoformat()},{last.isoformat()}"
    elif period == "month":
        label = first.strftime("%Y-%m")
    elif period == "year":
        label = str(first.year)
    else:
        label = first.isoformat()
    return Span(label, first, last)


def _one_date(text: str, today: date) -> date:
    text = text.strip()
    if text in ("today", "now"):
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"The date '{text}' is not a correct date.") from None


def _count(match: re.Match[str]) -> int:
    n = int(match.group(2))
    if not 1 <= n <= MAX_PERIODS:
        raise PeriodError(f"lastN/previousN: N must be between 1 and {MAX_PERIODS}")
    return n


def resolve(period: str, date_param: str, today: date) -> Periods:
    """`today` is the current day in the site's time zone (Matomo computes it so)."""
    try:
        return _resolve(period, date_param, today)
    except PeriodError:
        raise
    except (OverflowError, ValueError):  # a period reaching past year 1 or 9999
        raise PeriodError(f"The date '{date_param[:40]}' is out of the supported range.") from None


def _resolve(period: str, date_param: str, today: date) -> Periods:
    if period not in PERIODS:
        raise PeriodError(f"The period '{period}' is not supported. Try any of the following instead: "
                          + ", ".join(PERIODS))
    text = (date_param or "").strip()
    if not text:
        raise PeriodError("Parameter 'date' is missing")
    last_match = _LAST.match(text)
    if period == "range":
        if last_match:
            n = _count(last_match)
            end = today if last_match.group(1) == "last" else today - timedelta(days=1)
            first, last = end - timedelta(days=n - 1), end
        elif "," in text:
            a, b = text.split(",", 1)
            first, last = _one_date(a, today), _one_date(b, today)
        else:
            raise PeriodError("The range period needs date=YYYY-MM-DD,YYYY-MM-DD or lastN / previousN")
        if first > last:
            raise PeriodError(f"The date range '{text}' ends before it starts")
        return Periods("range", (Span(f"{first.isoformat()},{last.isoformat()}", first, last),), False)
    if last_match:
        n = _count(last_match)
        current = span_of(period, today)
        newest = current if last_match.group(1) == "last" else span_of(period, current.first - timedelta(days=1))
        backwards: list[Span] = [newest]
        while len(backwards) < n:
            backwards.append(span_of(period, backwards[-1].first - timedelta(days=1)))
        return Periods(period, tuple(reversed(backwards)), True)
    if "," in text:
        a, b = text.split(",", 1)
        first, last = _one_date(a, today), _one_date(b, today)
        if first > last:
            raise PeriodError(f"The date range '{text}' ends before it starts")
        spans: list[Span] = [span_of(period, first)]
        while spans[-1].last < last:
            spans.append(span_of(period, spans[-1].last + timedelta(days=1)))
            if len(spans) > MAX_PERIODS:
                raise PeriodError(f"at most {MAX_PERIODS} periods in one request")
        return Periods(period, tuple(spans), True)
    return Periods(period, (span_of(period, _one_date(text, today)),), False)
