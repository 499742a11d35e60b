"""The tests' clock. DNMA_TEST_NOW (an instant with its zone, e.g. 2027-03-28T01:30:00Z) runs the
session as if the host clock read that when the session started: every in-process call of
dnma.clock, every Settings() built here and every stack the harness starts get the same offset
(DNMA_NOW). Unset: the host clock. `make test-dates` runs the suites at the instants of DATES."""

from __future__ import annotations

import os

from dnma import clock

# The instants (UTC) every date-sensitive suite must pass at: weekdays, holidays, the summer
# break, both Paris DST changes (either side of the skipped hour, both passes of the repeated
# hour) and the year's end in Paris.
DATES = {
    "monday": "2026-12-07T08:00:00Z",
    "sunday": "2026-12-13T12:00:00Z",
    "christmas": "2026-12-25T10:00:00Z",
    "august": "2026-08-01T10:00:00Z",
    # 00:30Z is 01:30 in Paris, just before it skips 02:00-03:00; 01:30Z and 02:30Z are just after.
    "dst-spring-before": "2027-03-28T00:30:00Z",
    "dst-spring-after": "2027-03-28T01:30:00Z",
    "dst-spring-later": "2027-03-28T02:30:00Z",
    # 02:30 in Paris twice: summer time, then winter time.
    "dst-autumn-first": "2026-10-25T00:30:00Z",
    "dst-autumn-second": "2026-10-25T01:30:00Z",
    "new-year-eve": "2026-12-31T22:30:00Z",
}

INSTANT = os.environ.get("DNMA_TEST_NOW", "")
if INSTANT in DATES:
    INSTANT = DATES[INSTANT]
# Pinned once, so the stacks started later in the session share the test process's clock.
OFFSET = clock.as_offset(INSTANT)


def install() -> None:
    """Called once from conftest before any test module is imported."""
    if OFFSET:
        os.environ["DNMA_NOW"] = OFFSET
    else:
        os.environ.pop("DNMA_NOW", None)
    clock.configure(OFFSET)


def describe() -> str:
    if not INSTANT:
        return "DNMA clock: the host's (set DNMA_TEST_NOW to run at another instant)"
    return f"DNMA clock: {INSTANT} at session start (DNMA_NOW={OFFSET})"
