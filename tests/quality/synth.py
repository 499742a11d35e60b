"""Clean synthetic traffic for the false-positive test: per site, hour and day a realistic count
(weekday and hour profile, holidays lower, ±10 % noise), expanded to hits by INSERT ... SELECT.

The holidays that shape it are a literal table of their own, not the checks' SchoolCalendar: a bug
there must make the checks disagree with this traffic, not shape both sides alike."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from dnma.clock import PARIS
from dnma.vocab import PROFILS, SERVICES

WEEKDAY = (1.0, 1.0, 0.7, 1.0, 0.9, 0.35, 0.3)
# Share of a day's hits per hour: nothing at night, a morning bump and the evening homework peak.
HOURS = {7: 2, 8: 6, 9: 6, 10: 6, 11: 5, 12: 5, 13: 5, 14: 6, 15: 6, 16: 7, 17: 9, 18: 10, 19: 9, 20: 7, 21: 4, 22: 2}
_TOTAL = sum(HOURS.values())

# The official calendar (education.gouv.fr, Légifrance), first and last day off, from the end of the
# 2024 summer holidays to the eve of Christmas: the span COVERED, where this table is complete.
COVERED = (date(2024, 9, 1), date(2024, 12, 20))
SCHOOL_HOLIDAYS: dict[str, tuple[tuple[date, date], ...]] = {
    zone: ((date(2024, 7, 6), date(2024, 9, 1)),  # summer: back to school on Monday 2 September
           (date(2024, 10, 19), date(2024, 11, 3)))  # Toussaint, the same for the three zones
    for zone in ("A", "B", "C")
}
PUBLIC_HOLIDAYS = frozenset({date(2024, 11, 1), date(2024, 11, 11)})  # Toussaint, Armistice


def is_off(day: date, zone: str) -> bool:
    """A public holiday, or a school-holiday day of `zone` (A, B or C)."""
    if not COVERED[0] <= day <= COVERED[1]:
        raise ValueError(f"{day} is outside the synthetic holiday table ({COVERED[0]} to {COVERED[1]})")
    return day in PUBLIC_HOLIDAYS or any(first <= day <= last for first, last in SCHOOL_HOLIDAYS[zone])


def buckets(site_id: int, daily: int, first: date, last: date, zone: str, seed: int = 7) -> list[list[Any]]:
    """(site_id, hour, hits) rows from `first` to `last`, for pupils of school-holiday `zone`."""
    rng = random.Random(seed * 1000 + site_id)
    out: list[list[Any]] = []
    day = first
    while day <= last:
        factor = WEEKDAY[day.weekday()] * (0.3 if is_off(day, zone) else 1.0)
        for hour, weight in HOURS.items():
            n = round(daily * factor * weight / _TOTAL * rng.uniform(0.9, 1.1))
            if n:
                out.append([site_id, datetime(day.year, day.month, day.day, hour, tzinfo=PARIS), n])
        day += timedelta(days=1)
    return out


def insert_clean(client: Any, rows: list[list[Any]], uais: dict[int, list[str]], projets: dict[int, str]) -> int:
    client.command("CREATE TEMPORARY TABLE IF NOT EXISTS synth_buckets "
                   "(site_id UInt32, hour DateTime('Europe/Paris'), n UInt32) ENGINE = Memory")
    client.insert("synth_buckets", rows, column_names=["site_id", "hour", "n"])
    client.command(
        """
        INSERT INTO dnma.hits (ts, received_at, site_id, action, url, uai, service, type, profil, projet,
                               visitor_id, pv_id, device, os, browser)
        SELECT toDateTime(toUnixTimestamp(hour) + cityHash64(site_id, hour, i) % 3600, 'Europe/Paris') AS t,
               t + 1 + cityHash64(i, hour) % 4, site_id, 'pageview', concat('https://ent.example/p/', toString(i)),
               arrayElement(arrayElement({uais:Array(Array(String))}, indexOf({sites:Array(UInt32)}, site_id)),
                            1 + cityHash64(hour, i, 1) % {n_uai:UInt32}),
               arrayElement({services:Array(String)}, 1 + cityHash64(hour, i, 2) % {n_services:UInt32}),
               'NATIF',
               arrayElement({profils:Array(String)}, 1 + cityHash64(hour, i, 3) % 4),
               transform(site_id, {sites:Array(UInt32)}, {projets:Array(String)}, ''),
               cityHash64(site_id, toDate(hour), intDiv(i, 6)), hex(cityHash64(site_id, hour, i)),
               'ordinateur', 'windows', 'firefox'
        FROM synth_buckets ARRAY JOIN range(n) AS i
        """,
        parameters={
            "sites": sorted(uais),
            "uais": [uais[s] for s in sorted(uais)],
            "n_uai": min(len(v) for v in uais.values()),
            "projets": [projets[s] for s in sorted(uais)],
            "services": list(SERVICES),
            "n_services": len(SERVICES),
            "profils": list(PROFILS),
        },
    )
    return sum(r[2] for r in rows)
