"""The simulator's calendar outside the holiday package's table: only the summer is a holiday,
and a warning (once) says the table ran out."""

from __future__ import annotations

import logging
from datetime import date

import pytest
from dnma_client import calendar


def test_outside_the_table_only_summer_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    calendar._warn_outside_table.cache_clear()
    calendar.is_school_holiday.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dnma_client.calendar"):
        assert calendar.is_school_holiday(date(2024, 10, 21), "B")  # Toussaint 2024, in the table
        assert not caplog.records
        assert calendar.is_school_holiday(date(2035, 8, 1), "B")
        assert not calendar.is_school_holiday(date(2035, 10, 24), "B")
        assert not calendar.is_school_holiday(date(1985, 12, 26), "A")
    assert len(caplog.records) == 1 and "vacances-scolaires-france" in caplog.records[0].getMessage()
