"""School holidays (zones A/B/C from `vacances-scolaires-france`, offline data) and public holidays
(`holidays`, FR with Alsace-Moselle and overseas subdivisions) per territory, for the checks to skip."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

log = logging.getLogger("dnma.checks")

METRO_ZONES = ("A", "B", "C")

# Académie -> zone (calendar since 2016; Caen and Rouen merged into Normandie, both still accepted).
_ACADEMIE_ZONES: dict[str, str] = {
    **dict.fromkeys(
        ("besancon", "bordeaux", "clermont-ferrand", "dijon", "grenoble", "limoges", "lyon", "poitiers"), "A"
    ),
    **dict.fromkeys(
        ("aix-marseille", "amiens", "lille", "nancy-metz", "nantes", "nice", "normandie", "caen", "rouen",
         "orleans-tours", "reims", "rennes", "strasbourg"),
        "B",
    ),
    **dict.fromkeys(("creteil", "montpellier", "paris", "toulouse", "versailles"), "C"),
    "corse": "CORSE",
    "guadeloupe": "GUADELOUPE",
    "martinique": "MARTINIQUE",
    "guyane": "GUYANE",
    "la reunion": "REUNION",
    "reunion": "REUNION",
    "mayotte": "MAYOTTE",
}

# Département (annuaire writing) -> zone: the same map keyed by département, so a perimeter
# given as départements needs no referential.
_DEPARTEMENT_ZONES: dict[str, str] = {
    **dict.fromkeys(
        "025 039 070 090 024 033 040 047 064 003 015 043 063 021 058 071 089 007 026 038 073 074 019 023 087 "
        "001 042 069 016 017 079 086".split(),
        "A",
    ),
    **dict.fromkeys(
        "004 005 013 084 002 060 080 059 062 054 055 057 088 044 049 053 072 085 006 083 014 027 050 061 076 "
        "018 028 036 037 041 045 008 010 051 052 022 029 035 056 067 068".split(),
        "B",
    ),
    **dict.fromkeys("077 093 094 011 030 034 048 066 075 009 012 031 032 046 065 081 082 078 091 092 095".split(), "C"),
    "2A": "CORSE",
    "2B": "CORSE",
    "971": "GUADELOUPE",
    "972": "MARTINIQUE",
    "973": "GUYANE",
    "974": "REUNION",
    "976": "MAYOTTE",
}

# INSEE région code -> zones (régions and zones line up since 2016).
_REGION_ZONES: dict[str, tuple[str, ...]] = {
    "84": ("A",), "27": ("A",), "75": ("A",),
    "24": ("B",), "32": ("B",), "44": ("B",), "52": ("B",), "28": ("B",), "53": ("B",), "93": ("B",),
    "11": ("C",), "76": ("C",),
    "94": ("CORSE",),
    "01": ("GUADELOUPE",), "02": ("MARTINIQUE",), "03": ("GUYANE",), "04": ("REUNION",), "06": ("MAYOTTE",),
}

# Public-holiday subdivisions of `holidays.FR`: Alsace-Moselle and the overseas départements.
_SUBDIVISIONS: dict[str, str] = {"057": "57", "067": "6AE", "068": "6AE", **{d: d for d in ("971", "972", "973", "974", "976")}}
_ZONE_SUBDIVISION = {"GUADELOUPE": "971", "MARTINIQUE": "972", "GUYANE": "973", "REUNION": "974", "MAYOTTE": "976"}


def _key(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().strip()
    for prefix in ("academie:", "academie de ", "academie d'", "ac-"):
        plain = plain.removeprefix(prefix)
    return plain.replace("_", "-").strip()


def _departement(raw: str) -> str:
    code = raw.strip().upper()
    if code in ("02A", "02B"):
        return code[1:]
    return code.zfill(3) if code.isdigit() and len(code) < 3 else code


@dataclass(frozen=True)
class Territory:
    """Where a scope's pupils are: the holiday zones and public-holiday subdivisions that apply."""

    zones: frozenset[str] = frozenset(METRO_ZONES)
    subdivisions: frozenset[str] = frozenset()

    def __or__(self, other: Territory) -> Territory:
        return Territory(self.zones | other.zones, self.subdivisions | other.subdivisions)


NATIONAL = Territory()


class SchoolCalendar:
    """A day is *off* for a territory when any of its zones is on school holiday, or it is a public
    holiday there: traffic drops on part of the scope, and the checks must not read that as a fault."""

    def __init__(self, settings: Any) -> None:
        self.academie_zones = dict(_ACADEMIE_ZONES)
        for name, zone in (settings.quality_academie_zones or {}).items():
            self.academie_zones[_key(name)] = str(zone).upper()
        self.extra = _parse_extra(settings.quality_extra_holidays or [])
        self.ascension_bridge = True

    # --- territories
    def zone_of_academie(self, academie: str) -> str | None:
        return self.academie_zones.get(_key(academie))

    def territory_of_academie(self, academie: str) -> Territory:
        zone = self.zone_of_academie(academie)
        if zone is None:
            return NATIONAL  # unknown name: the widest calendar, so holidays never fire
        sub = _ZONE_SUBDIVISION.get(zone)
        return Territory(frozenset({zone}), frozenset({sub} if sub else ()))

    def territory_of_perimeter(self, perimeter: Any) -> Territory:
        if perimeter is None:
            return NATIONAL
        zones: set[str] = set()
        subs: set[str] = set()
        for raw in perimeter.departements:
            dep = _departement(raw)
            # An unknown code (overseas collectivity, typo): the widest calendar.
            zones.update((_DEPARTEMENT_ZONES[dep],) if dep in _DEPARTEMENT_ZONES else METRO_ZONES)
            if dep in _SUBDIVISIONS:
                subs.add(_SUBDIVISIONS[dep])
        for name in perimeter.academies:
            t = self.territory_of_academie(name)
            zones |= t.zones
            subs |= t.subdivisions
        for raw in perimeter.regions:
            code = raw.removeprefix("region:").strip().zfill(2)
            region_zones = _REGION_ZONES.get(code, METRO_ZONES)
            zones.update(region_zones)
            subs.update(_ZONE_SUBDIVISION[z] for z in region_zones if z in _ZONE_SUBDIVISION)
            if code == "44":
                subs.update(("57", "6AE"))
        if not zones:
            return NATIONAL
        return Territory(frozenset(zones), frozenset(subs))

    # --- days
    def school_holiday(self, day: date, zone: str) -> bool:
        if zone in METRO_ZONES:
            return _school_holiday(day, zone)
        # Corsica and overseas have their own calendars the package does not carry: take the union
        # of the metropolitan zones (never fires on a metropolitan holiday) plus settings' extra days.
        return any(_school_holiday(day, z) for z in METRO_ZONES)

    def public_holiday(self, day: date, subdivision: str = "") -> bool:
        return day in _public_holidays(day.year, subdivision)

    def is_off(self, day: date, territory: Territory = NATIONAL) -> bool:
        if self.public_holiday(day) or any(self.public_holiday(day, s) for s in territory.subdivisions):
            return True
        if self.ascension_bridge and day.weekday() == 4 and self.public_holiday(day - timedelta(days=1)):
            # The Friday after Ascension is off in every school; the package omits it. Any Friday
            # after a Thursday holiday is a bridge in practice too.
            return True
        if any(self.school_holiday(day, z) for z in territory.zones):
            return True
        return any(start <= day <= end and (zone is None or zone in territory.zones) for zone, start, end in self.extra)


def _parse_extra(specs: list[str]) -> list[tuple[str | None, date, date]]:
    out: list[tuple[str | None, date, date]] = []
    for spec in specs:
        zone, _, span = spec.rpartition(":") if spec.count(":") else ("", "", spec)
        start, _, end = span.partition("/")
        out.append((zone.upper() or None, date.fromisoformat(start), date.fromisoformat(end or start)))
    return out


@lru_cache(maxsize=1)
def _school_dates() -> Any:
    from vacances_scolaires_france import SchoolHolidayDates  # bundled CSV: no network

    return SchoolHolidayDates()


@lru_cache(maxsize=1)
def school_data_end() -> date:
    """The last school-holiday day the package knows: the end of its last summer break (the next
    school year's dates are not published in it). Past it, see `_projected_holiday`."""
    dates = _school_dates()
    return max(dates.holidays_for_year(dates.max_year))


def _school_holiday(day: date, zone: str) -> bool:
    end = school_data_end()
    if day > end:
        return _projected_holiday(day, end)
    return bool(_school_dates().is_holiday_for_zone(day, zone))


def _projected_holiday(day: date, end: date) -> bool:
    """A day past the package's data: a holiday when the same weekday of the last known school
    year (the nearest to the same date: whole weeks back) was one in any metropolitan zone.

    Deliberately neither "school day" (every unpublished holiday would fire the checks) nor
    "off" (the checks would go blind): Toussaint, Noël and summer come back on about the same
    weeks, and taking the union of the zones covers the winter and spring breaks, which rotate
    between zones, for all of them (the checks skip a few more weeks rather than fire on a
    holiday). Upgrade vacances-scolaires-france when the warning (logged once per process) shows:
    the real calendar moves by a few days from year to year."""
    _warn_past_school_data(end)
    years = 1
    while (known := day - timedelta(weeks=round(years * 365.2425 / 7))) > end:
        years += 1
    return any(_school_dates().is_holiday_for_zone(known, z) for z in METRO_ZONES)


@lru_cache(maxsize=1)
def _warn_past_school_data(end: date) -> None:
    log.warning(
        "school_holidays_projected",
        extra={"data_end": end.isoformat(), "package": "vacances-scolaires-france",
               "rule": "same week of the last known school year, any metropolitan zone"},
    )


@lru_cache(maxsize=64)
def _public_holidays(year: int, subdivision: str) -> frozenset[date]:
    import holidays

    return frozenset(holidays.FR(years=year, subdiv=subdivision or None).keys())
