"""The school calendar: zones from académies, départements and régions, Corsica and overseas,
public holidays with subdivisions, the Ascension bridge, and settings' overrides."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from aggregator.checks.calendar import NATIONAL, SchoolCalendar
from dnma.settings import Settings
from dnma.sites import SitePerimeter

CAL = SchoolCalendar(Settings())


def test_zones_from_perimeters() -> None:
    assert CAL.territory_of_perimeter(SitePerimeter(departements=("035",))).zones == {"B"}
    assert CAL.territory_of_perimeter(SitePerimeter(academies=("academie:Créteil",))).zones == {"C"}
    assert CAL.territory_of_perimeter(SitePerimeter(regions=("84",))).zones == {"A"}
    assert CAL.territory_of_perimeter(SitePerimeter(departements=("974",))).subdivisions == {"974"}
    assert CAL.territory_of_perimeter(SitePerimeter(departements=("67",))).subdivisions == {"6AE"}
    assert CAL.territory_of_perimeter(None) == NATIONAL
    assert CAL.territory_of_perimeter(SitePerimeter(degrees=("1D",))) == NATIONAL


def test_holidays_per_zone() -> None:
    b, c = CAL.territory_of_academie("Rennes"), CAL.territory_of_academie("Créteil")
    assert CAL.is_off(date(2024, 10, 21), b)  # Toussaint, every zone
    assert not CAL.is_off(date(2024, 10, 15), b)
    assert CAL.is_off(date(2024, 2, 12), c) and not CAL.is_off(date(2024, 2, 12), b)  # winter, zone C only
    assert CAL.is_off(date(2024, 11, 11), b)  # Armistice
    assert CAL.is_off(date(2025, 5, 30), b)  # the Friday after Ascension
    assert CAL.is_off(date(2025, 12, 26), CAL.territory_of_perimeter(SitePerimeter(departements=("057",))))
    assert not CAL.is_off(date(2025, 12, 19), b) and CAL.is_off(date(2025, 12, 22), b)


def test_overrides_from_settings() -> None:
    cal = SchoolCalendar(Settings(quality_academie_zones={"Rennes": "C"},
                                  quality_extra_holidays=["REUNION:2025-03-03/2025-03-07", "2025-03-11"]))
    assert cal.territory_of_academie("Rennes").zones == {"C"}
    reunion = cal.territory_of_academie("La Réunion")
    assert cal.is_off(date(2025, 3, 5), reunion) and not cal.is_off(date(2025, 3, 5), cal.territory_of_academie("Lille"))
    assert cal.is_off(date(2025, 3, 11), cal.territory_of_academie("Lille"))


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2028, 12, 31)))
def test_national_is_off_whenever_a_zone_is(day: date) -> None:
    zone_off = any(CAL.is_off(day, CAL.territory_of_academie(a)) for a in ("Lyon", "Rennes", "Paris"))
    assert CAL.is_off(day, NATIONAL) == zone_off
