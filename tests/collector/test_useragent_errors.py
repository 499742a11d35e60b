"""A User-Agent device-detector cannot read: classified unknown (the hit is kept), counted in the
collector's metrics, the first failure of a worker logged."""

from __future__ import annotations

import logging

import pytest

from collector.metrics import Tally
from collector.useragent import UNKNOWN, UAClassifier

# A lone surrogate: device-detector encodes the UA to UTF-8 and fails (UnicodeEncodeError).
UNREADABLE = "Mozilla/5.0 (Linux; Android \udcff)"
OTHER_UNREADABLE = "Mozilla/5.0 (Windows NT \udcfe)"


def test_unreadable_ua_is_unknown_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    tally = Tally([])
    ua = UAClassifier(16, tally)
    with caplog.at_level(logging.WARNING, logger="dnma.collector"):
        assert ua.classify(UNREADABLE) == UNKNOWN
        assert ua.classify(OTHER_UNREADABLE) == UNKNOWN
        assert ua.classify(UNREADABLE) == UNKNOWN  # cached: not parsed again
    assert (tally.ua_misses, tally.ua_errors, ua.errors) == (2, 2, 2)
    [record] = [r for r in caplog.records if r.msg == "ua_parse_failed"]
    assert record.exc_info and record.exc_info[0] is UnicodeEncodeError


def test_readable_ua_is_not_an_error() -> None:
    tally = Tally([])
    ua = UAClassifier(16, tally)
    found = ua.classify(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    )
    assert (found.device, found.browser, tally.ua_errors) == ("ordinateur", "chrome", 0)
