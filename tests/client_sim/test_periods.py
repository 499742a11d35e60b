"""Matomo's period/date resolution (pure): spans, labels, lastN/previousN, ranges, errors."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.periods import PeriodError, resolve, span_of

TODAY = date(2025, 11, 20)  # a Thursday


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
       st.sampled_from(["day", "week", "month", "year"]))
def test_span_contains_its_date_and_periods_tile(d: date, period: str) -> None:
    span = span_of(period, d)
    assert span.first <= d <= span.last
    assert span_of(period, span.last + timedelta(days=1)).first == span.last + timedelta(days=1)
    if period == "week":
        assert span.first.weekday() == 0 and (span.last - span.first).days == 6


def test_labels_and_keyed_answers() -> None:
    assert resolve("day", "yesterday", TODAY).spans[0].label == "2025-11-19"
    week = resolve("week", "2025-11-20", TODAY)
    assert not week.keyed and week.spans[0].label == "2025-11-17,2025-11-23"
    last3 = resolve("month", "last3", TODAY)
    assert last3.keyed and [s.label for s in last3.spans] == ["2025-09", "2025-10", "2025-11"]
    prev2 = resolve("year", "previous2", TODAY)
    assert [s.label for s in prev2.spans] == ["2023", "2024"]
    days = resolve("day", "2025-11-18,2025-11-20", TODAY)
    assert days.keyed and len(days.spans) == 3
    rng = resolve("range", "last7", TODAY)
    assert not rng.keyed and (rng.first, rng.last) == (date(2025, 11, 14), TODAY)
    assert resolve("range", "previous7", TODAY).last == date(2025, 11, 19)
    assert resolve("range", "2025-01-01,today", TODAY).spans[0].label == "2025-01-01,2025-11-20"


@pytest.mark.parametrize(("period", "value"), [
    ("hour", "today"), ("day", ""), ("day", "2025-13-01"), ("range", "today"), ("day", "last0"),
    ("range", "2025-02-01,2025-01-01"), ("day", "last5000"),
])
def test_refused(period: str, value: str) -> None:
    with pytest.raises(PeriodError):
        resolve(period, value, TODAY)
