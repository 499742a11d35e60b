""""Active" and "coverage": one definition, read by the dashboards' datasets
(dnma_superset.dataset_sql), the tagging-coverage check (aggregator.checks.coverage) and any export
that publishes them. It lives in the core because both rooms read it and neither imports the other.

- An establishment is **active** when it has at least one visit (dnma.visits_daily: visits of valid
  UAIs) in the last N school weeks, the running week being the first of them (N:
  settings.active_school_weeks, default ACTIVE_SCHOOL_WEEKS). For the census it is active through
  any ENT; for an ENT's (or a site's) tagging coverage, through that ENT (or site) only: an ENT is
  never credited with an establishment active only through another one.
- **School weeks** are the ISO weeks holding school days in every metropolitan zone, told from the
  date alone so that SQL and Python agree: every week but those of the summer break, Toussaint
  and Christmas, whose dates are national (weeks whose Monday falls from 6 July to 28 August, from
  19 October to 1 November, from 19 December to 1 January). Winter and spring holidays are
  staggered over the three zones: their weeks count (two zones in three are at school).
- **Coverage** = active establishments / a denominator, one of two, named:
  CENSUS: the public establishments (secteur 'PU') with a degree (1D/2D) of a territory, as the
  ministry's deployment census counts them (spec/INDICATORS.md); private ones are not counted.
  TAGGING: the establishments (any sector) of an ENT's declared perimeter in the sites registry,
  materialised per site in `perimetres_ent` (aggregator.checks.perimetres): the same set whoever
  looks, whatever UAIs the ENT's traffic carries.
"""

from __future__ import annotations

from datetime import date, timedelta

ACTIVE_SCHOOL_WEEKS = 4  # about a month of school: the Déploiement view's "last 30 days" (spec/INDICATORS.md)
PERIMETERS_TABLE = "perimetres_ent"
CENSUS = "census"
TAGGING = "tagging"
DENOMINATORS = (CENSUS, TAGGING)
# Weeks looked back to find N school weeks: the longest run of off weeks (summer) is 8.
_LOOKBACK_WEEKS = 60

# Off weeks: (month, first day, month, last day) of the Mondays of weeks without school nationally.
_OFF_MONDAYS = ((7, 6, 8, 28), (10, 19, 11, 1), (12, 19, 12, 31), (1, 1, 1, 1))


def is_school_week(monday: date) -> bool:
    md = (monday.month, monday.day)
    return not any((m1, d1) <= md <= (m2, d2) for m1, d1, m2, d2 in _OFF_MONDAYS)


def school_weeks(today: date, n: int) -> list[date]:
    """The Mondays of the last `n` school weeks up to `today`'s week (included), newest first."""
    monday = today - timedelta(days=today.weekday())
    weeks = [m for i in range(_LOOKBACK_WEEKS) if is_school_week(m := monday - timedelta(weeks=i))]
    return weeks[:max(n, 1)]


# Rentrée comparisons (spec/INDICATORS.md): week k of a school year against week k of the one
# before, counted in school weeks from each year's rentrée (not in calendar dates: the rentrée moves
# from 29 August to 4 September). A school year's first school week is the week of its 4 September
# (its Monday falls from 29 August to 4 September, the first Monday after the summer's off weeks).
_YEAR_WEEKS = 48  # Mondays looked at from the rentrée: past the last school week, short of the next rentrée


def rentree_monday(year: int) -> date:
    """The Monday of the first school week of school year `year`-`year + 1`."""
    sept4 = date(year, 9, 4)
    return sept4 - timedelta(days=sept4.weekday())


def school_year_weeks(year: int) -> list[date]:
    """The Mondays of school year `year`-`year + 1`'s school weeks, in order: week k is [k - 1]."""
    first = rentree_monday(year)
    return [m for i in range(_YEAR_WEEKS) if is_school_week(m := first + timedelta(weeks=i))]


def school_week_number(day: date) -> tuple[int, int] | None:
    """(school year, k) of `day`'s week, k from 1; None in a week without school."""
    monday = day - timedelta(days=day.weekday())
    year = monday.year if monday >= rentree_monday(monday.year) else monday.year - 1
    weeks = school_year_weeks(year)
    return (year, weeks.index(monday) + 1) if monday in weeks else None


def same_school_week_year_ago(day: date) -> date | None:
    """The Monday of the school week of the year before with the same number k as `day`'s; None
    when `day`'s week has no school or that year had fewer weeks."""
    found = school_week_number(day)
    if found is None:
        return None
    weeks = school_year_weeks(found[0] - 1)
    return weeks[found[1] - 1] if found[1] <= len(weeks) else None


def reference_school_year(today: date) -> int:
    """The school year the rentrée comparison shows by default: the running one once its first
    school week is complete, else the last one (on 1 August, and in the rentrée's own week)."""
    year = today.year if today.month >= 8 else today.year - 1
    return year if rentree_monday(year) + timedelta(days=7) <= today else year - 1


def _is_school_week_sql(m: str) -> str:
    md = f"(toMonth({m}) * 100 + toDayOfMonth({m}))"
    return " AND ".join(f"NOT ({md} BETWEEN {m1 * 100 + d1} AND {m2 * 100 + d2})" for m1, d1, m2, d2 in _OFF_MONDAYS)


def school_weeks_sql(today: str, n: str) -> str:
    """SQL of school_weeks(): an Array(Date) of Mondays; `today` a Date expression, `n` an integer one."""
    return (f"arraySlice(arrayFilter(m -> {_is_school_week_sql('m')}, "
            f"arrayMap(i -> toMonday({today}) - 7 * i, range({_LOOKBACK_WEEKS}))), 1, greatest(toUInt32({n}), 1))")


def rentree_monday_sql(year: str) -> str:
    """SQL of rentree_monday(); `year` an integer expression."""
    return f"toMonday(makeDate({year}, 9, 4))"


def school_year_weeks_sql(year: str) -> str:
    """SQL of school_year_weeks(): an Array(Date) of Mondays, week k at index k."""
    return (f"arrayFilter(m -> {_is_school_week_sql('m')}, "
            f"arrayMap(i -> {rentree_monday_sql(year)} + 7 * i, range({_YEAR_WEEKS})))")


def reference_school_year_sql(today: str) -> str:
    """SQL of reference_school_year(); `today` a Date expression (DNMA's clock)."""
    year = f"(toYear({today}) - (toMonth({today}) < 8))"
    return f"if({rentree_monday_sql(year)} + 7 <= {today}, {year}, {year} - 1)"


def active_sql(db: str, today: str, n: str) -> str:
    """One row per active establishment: uai, the ENTs (projets) and the sites it is active
    through. `today`: a Date expression (DNMA's clock, never ClickHouse's today()); `n`: weeks."""
    return (f"WITH {school_weeks_sql(today, n)} AS semaines_actives\n"
            f"      SELECT uai, groupUniqArray(projet) AS projets, groupUniqArray(site_id) AS sites\n"
            f"      FROM {db}.visits_daily\n"
            f"      WHERE day >= arrayMin(semaines_actives) AND day <= {today}"
            f" AND has(semaines_actives, toMonday(day)) AND uai != ''\n"
            f"      GROUP BY uai")


# The census's three levels (spec/INDICATORS.md), from the establishment's nature (annuaire codes:
# 1xx écoles, 340-359 collèges, 300-339 lycées); other 2D natures (EREA...) are in none of them.
# Écoles and collèges are counted by département, lycées by région académique.
CENSUS_LEVELS = ("Écoles", "Collèges", "Lycées")
CENSUS_LEVEL_SQL = ("multiIf(degre = '1D', 'Écoles', code_nature BETWEEN 340 AND 359, 'Collèges', "
                    "code_nature BETWEEN 300 AND 339, 'Lycées', '')")


def census_sql(db: str) -> str:
    """The census's denominator: the public establishments with a degree, one row each, with their
    census level (niveau, CENSUS_LEVEL_SQL; '' for a 2D establishment in none of the three) and
    pupil count (eleves, the referential's effectifs; 0 = unknown, never guessed)."""
    return (f"SELECT uai, nom, degre, region, academie, departement, departement_iso, region_iso, eleves,"
            f" {CENSUS_LEVEL_SQL} AS niveau\n"
            f"      FROM {db}.etablissements FINAL WHERE secteur = 'PU' AND degre != ''")


def tagging_sql(db: str) -> str:
    """The tagging check's denominator: (site, ENT, establishment) of each site's declared perimeter;
    an ENT's perimeter is the union of its sites'."""
    return f"SELECT site_id, projet, uai, degre FROM {db}.{PERIMETERS_TABLE} FINAL"


# The census's five classes (spec/INDICATORS.md), by index 0-4, ordered: the share of a territory's
# public establishments that are active (census denominator). Index 0: none is active; from
# traffic alone, "no ENT project" and "an ENT we do not measure" look the same.
CENSUS_CLASSES = ("Aucun projet ou non mesuré", "Déploiement < 20 %", "Déploiement 20–50 %",
                  "Généralisation partielle (≥ 50 %)", "Généralisation massive (≥ 90 %)")
# Their fixed ordinal palette, colour-blind safe: grey for "none", then viridis' four steps (light
# yellow to dark violet, readable in deuteranopia, protanopia and tritanopia and in greyscale),
# named for the legend. Registered in Superset as the sequential scheme CENSUS_SCHEME.
CENSUS_SCHEME = "dnma_recensement"
CENSUS_COLORS = ("#BDBDBD", "#FDE725", "#35B779", "#31688E", "#440154")
CENSUS_COLOR_NAMES = ("gris", "jaune", "vert", "bleu", "violet foncé")


def census_class_sql(active: str, total: str) -> str:
    """The census class index (0-4) of `active` establishments out of `total`, in integers (no
    floating-point edge at exactly 20, 50 or 90 %)."""
    return (f"toUInt8(multiIf({active} = 0, 0, {active} * 10 >= 9 * {total}, 4, {active} * 2 >= {total}, 3,"
            f" {active} * 5 >= {total}, 2, 1))")
