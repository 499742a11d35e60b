"""The reporting API's queries (INDICATORS.md, a Matomo-compatible subset) over `visits` and `hits`,
through any clickhouse-connect client: one ReportFilter in, typed rows out, Matomo's JSON shapes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date, timedelta
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from aggregator.api_filters import FilterError, GenericFilters
from aggregator.periods import PeriodError, Periods, resolve
from aggregator.reporting_actions import METHODS as ACTIONS_METHODS
from aggregator.reporting_actions import ShapeError
from aggregator.reporting_dnma import METHODS as DNMA_METHODS
from aggregator.reporting_person import METHODS as PERSON_METHODS
from aggregator.reporting_person import PER_PERSON_METHODS
from aggregator.reporting_referrers import METHODS as REFERRERS_METHODS
from aggregator.reporting_visits import METHODS as VISITS_METHODS
from aggregator.reporting_visits import NO_PERIOD
from aggregator.rollups import USER_KEY, inline_dates
from aggregator.segments import PER_PERSON_SEGMENTS, Segment, SegmentError, compile_segment, parse
from aggregator.visits_query import checked_timezones, local_day
from dnma.params import as_int
from dnma.vocab import COUNTED_ACTIONS, DEFAULT_DIMENSION_MAPPING, PROPERTIES

INVALID_FLAG = "invalid_uai"  # INDICATORS.md: such hits are excluded from indicators
NOT_DEFINED = "Value not defined"  # Matomo's label for an empty dimension value
# Matomo refuses dates before its first website was online (core/Date.php), with this message.
FIRST_DATE = date(1991, 8, 6)
# The last day ClickHouse's Date holds: later days have no data, and a literal past it wraps around.
STORAGE_LAST = date(2149, 6, 6)


class ReportError(ValueError):
    """A request Matomo would answer with {"result": "error"}; the message goes to the caller."""


@dataclass(frozen=True)
class ReportFilter:
    """What every report is restricted to: sites, periods, the visits of a segment, and Matomo's
    generic filters on rows."""

    site_ids: tuple[int, ...]
    periods: Periods
    filters: GenericFilters = field(default_factory=GenericFilters)
    database: str = "dnma"
    segment: Segment | None = None
    # The sites not in Europe/Paris and their time zones: their days and hours are their own.
    zones: tuple[tuple[int, str], ...] = ()

    @classmethod
    def build(cls, site_ids: tuple[int, ...], period: str, date_param: str, today: date,
              filters: GenericFilters | None = None, database: str = "dnma",
              segment: Segment | None = None, timezones: Mapping[int, str] | None = None) -> ReportFilter:
        try:
            periods = resolve(period, date_param, today)
        except PeriodError as exc:
            raise ReportError(str(exc)) from None
        if periods.first < FIRST_DATE:
            raise ReportError(f"The date '{periods.first.isoformat()}' is a date before first website was "
                              f"online. Try date that's after {FIRST_DATE.isoformat()}.")
        try:
            zones = checked_timezones({s: z for s, z in (timezones or {}).items() if s in site_ids})
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ReportError(f"bad time zone of a site: {exc}") from None
        return cls(site_ids, periods, filters or GenericFilters(), database, segment, tuple(sorted(zones.items())))

    @property
    def beyond_storage(self) -> bool:
        """Every day asked for is past what ClickHouse stores: nothing to read."""
        return self.periods.first > STORAGE_LAST

    @property
    def limit(self) -> int | None:
        return self.filters.sql_limit()

    @property
    def parameters(self) -> dict[str, Any]:
        out = {"sites": list(self.site_ids), "first": self.periods.first,
               "last": min(self.periods.last, STORAGE_LAST)}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.filters.pattern:
            out["pattern"] = self.filters.regex
        if self.segment is not None:
            out.update(self.segment.parameters)
        if self.zones:
            # Hits of a site-local day lie within the Paris days around it.
            out["hits_first"] = self.periods.first - timedelta(days=1)
            out["hits_last"] = min(self.periods.last + timedelta(days=1), STORAGE_LAST)
        return out

    def hit_day(self, column: str = "ts") -> str:
        """SQL of a hit's day in its site's time zone, as the visits' `day` (sessionizer): plain
        toDate(ts), the hits' sort-key prefix, when every site is in Paris."""
        return local_day(dict(self.zones), column)

    @property
    def hits_where(self) -> str:
        """The condition on `hits` (columns unqualified) of the hits of the days asked for, each
        on its site's local day: the Paris days for Paris sites; for sites elsewhere, the Paris days
        one wider each side (still a range of the sort key), then the local day."""
        if not self.zones:
            return "toDate(ts) BETWEEN {first:Date} AND {last:Date}"
        return (f"toDate(ts) BETWEEN {{hits_first:Date}} AND {{hits_last:Date}} "
                f"AND {self.hit_day()} BETWEEN {{first:Date}} AND {{last:Date}}")

    def local_hour(self, column: str) -> str:
        """SQL of the hour of `column` (a DateTime of `visits`, site_id alongside) in its site's zone."""
        if not self.zones:
            return f"toHour({column})"
        by_zone: dict[str, list[int]] = {}
        for site, zone in self.zones:
            by_zone.setdefault(zone, []).append(site)
        branches = ", ".join(f"site_id IN ({', '.join(map(str, ids))}), toHour({column}, '{zone}')"
                             for zone, ids in sorted(by_zone.items()))
        return f"multiIf({branches}, toHour({column}))"

    def zone_of(self, site_id: int) -> str:
        return dict(self.zones).get(site_id, "Europe/Paris")

    @property
    def visits_where(self) -> str:
        """The segment's condition on `visits` (its columns unqualified), or nothing."""
        return "" if self.segment is None else f" AND ({self.segment.sql})"

    def bucket(self, day_sql: str) -> str:
        """SQL giving the first day of the period a row falls in (a date, mapped to a label)."""
        return {
            "day": day_sql,
            "week": f"toMonday({day_sql})",
            "month": f"toStartOfMonth({day_sql})",
            "year": f"toStartOfYear({day_sql})",
        }.get(self.periods.period, "{first:Date}")

    def label_of(self, bucket_start: date) -> str:
        for span in self.periods.spans:
            if span.first == bucket_start:
                return span.label
        raise KeyError(bucket_start)  # a bucket outside the spans means the SQL filter is wrong

    def shape(self, by_label: Mapping[str, Any], render: Callable[[Any], Any]) -> Any:
        """Matomo's shape: one value, or an object keyed by period label (lastN, A,B)."""
        if self.periods.keyed:
            return {s.label: render(by_label.get(s.label)) for s in self.periods.spans}
        return render(by_label.get(self.periods.spans[0].label))


# --- VisitsSummary.get


@dataclass(frozen=True)
class VisitsSummary:
    nb_visits: int
    nb_uniq_visitors: int
    nb_users: int
    nb_actions: int
    max_actions: int
    sum_visit_length: int
    bounce_count: int

    def as_matomo(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["nb_visits_converted"] = 0  # no goals in DNMA: Matomo's value for a site without goals
        visits = self.nb_visits
        out["bounce_rate"] = f"{round(100 * self.bounce_count / visits) if visits else 0}%"
        per_visit = round(self.nb_actions / visits, 1) if visits else 0
        out["nb_actions_per_visit"] = int(per_visit) if float(per_visit).is_integer() else per_visit
        out["avg_time_on_site"] = round(self.sum_visit_length / visits) if visits else 0
        # Matomo's column order (VisitsSummary's archive, then its processed metrics).
        return {k: out[k] for k in VISITS_SUMMARY_ORDER}


VISITS_SUMMARY_ORDER = ("nb_uniq_visitors", "nb_users", "nb_visits", "nb_actions", "nb_visits_converted",
                        "bounce_count", "sum_visit_length", "max_actions", "bounce_rate",
                        "nb_actions_per_visit", "avg_time_on_site")


def visits_summary(client: Any, f: ReportFilter) -> dict[str, VisitsSummary]:
    """nb_uniq_visitors is DNMA's "utilisateurs" (rollups.USER_KEY: the uid hash, else the visitor id;
    the collector makes a visitor with a uid that uid's hash, as Matomo derives idvisitor from the User
    ID), the figure the dashboards and the exports publish; nb_users, Matomo's, counts User IDs only."""
    sql = f"""
SELECT {f.bucket('day')} AS bucket, count() AS nb_visits, uniqExact({USER_KEY}) AS nb_uniq_visitors,
  uniqExactIf(user_hash, user_hash != 0) AS nb_users, sum(actions) AS nb_actions,
  max(actions) AS max_actions, sum(duration) AS sum_visit_length, countIf(is_bounce = 1) AS bounce_count
FROM {f.database}.visits
WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}
GROUP BY bucket"""
    out: dict[str, VisitsSummary] = {}
    if f.beyond_storage:
        return out
    for row in client.query(sql, parameters=f.parameters).result_rows:
        out[f.label_of(row[0])] = VisitsSummary(*(int(v) for v in row[1:]))
    return out


def visits_summary_matomo(client: Any, f: ReportFilter) -> Any:
    # Matomo answers an empty period with [] rather than an object of zeros.
    return f.shape(visits_summary(client, f),
                   lambda s: f.filters.columns(s.as_matomo()) if s and s.nb_visits else [])


# --- reports over hits, attributed to the visits they belong to


def _hits_in_visits(f: ReportFilter, row_type: type, *, label_sql: str, where_sql: str, selects: str) -> str:
    """Hits matching `where_sql`, each joined to its visit (same site, visitor and day, time within
    the visit), grouped by period and label, rows kept by filter_pattern, in the default order (most
    visits first), a page of them per period when the filters allow. Hits outside any visit (flagged
    invalid) drop out."""
    counted = ", ".join(f"'{a}'" for a in COUNTED_ACTIONS)
    having = ""
    if f.filters.pattern:
        # Matomo matches a column the row lacks as the empty string; column names from the row type only.
        column = f.filters.pattern_column
        matched = f"toString(`{column}`)" if column in {x.name for x in fields(row_type)} else "''"
        having = f"HAVING match({matched}, {{pattern:String}})"
    limit = "" if f.limit is None else "LIMIT {limit:UInt32} BY bucket"
    return f"""
SELECT toDate({f.bucket('h.d')}) AS bucket, h.label AS label, uniqExact(v.visit_id) AS nb_visits, {selects}
FROM (
  SELECT site_id, visitor_id, {f.hit_day()} AS d, ts, action, url, user_hash, event_value,
    {label_sql} AS label
  FROM {f.database}.hits
  WHERE site_id IN {{sites:Array(UInt32)}} AND {f.hits_where}
    AND action IN ({counted}) AND NOT has(flags, '{INVALID_FLAG}') AND ({where_sql})
) AS h
INNER JOIN (
  SELECT site_id, visitor_id, day, visit_id, start, `end`
  FROM {f.database}.visits
  WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}
) AS v ON h.site_id = v.site_id AND h.visitor_id = v.visitor_id AND h.d = v.day
WHERE h.ts >= v.start AND h.ts <= v.`end`
GROUP BY bucket, label
{having}
ORDER BY bucket, nb_visits DESC, label
{limit}"""


def _rows_by_label(client: Any, f: ReportFilter, sql: str, row_type: type, params: dict[str, Any] | None = None,
                   ) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if f.beyond_storage:
        return out
    parameters = {**f.parameters, **(params or {})}
    # Dates as literals: `toDate(ts) BETWEEN <parameters>` would read every granule of the months.
    result = client.query(inline_dates(sql, parameters), parameters=parameters)
    for row in result.result_rows:
        out.setdefault(f.label_of(row[0]), []).append(row_type(*row[1:]))
    return out


def _as_rows(f: ReportFilter) -> Callable[[list[Any] | None], list[dict[str, Any]]]:
    """One period's rows in Matomo's shape, through the request's generic filters."""
    return lambda rows: f.filters.rows([r.as_matomo() for r in rows or []])


@dataclass(frozen=True)
class DimensionRow:
    label: str
    nb_visits: int
    nb_actions: int
    nb_uniq_visitors: int
    nb_users: int

    def as_matomo(self) -> dict[str, Any]:
        out = asdict(self)
        out["label"] = self.label or NOT_DEFINED
        return out


def dimension_column(id_dimension: int, slots: Mapping[int, str] | None = None) -> tuple[str, dict[str, Any]]:
    """SQL for custom dimension N: a DNMA property column when the site maps N to one, otherwise
    the free dimension kept in the `dimensions` map. Column names come from the vocabulary only."""
    prop = (slots or DEFAULT_DIMENSION_MAPPING).get(id_dimension)
    if prop in PROPERTIES:
        return f"`{prop}`", {}
    return "dimensions[{dimkey:String}]", {"dimkey": f"dimension{id_dimension}"}


def custom_dimension(client: Any, f: ReportFilter, id_dimension: int,
                     slots: Mapping[int, str] | None = None) -> dict[str, list[DimensionRow]]:
    column, params = dimension_column(id_dimension, slots)
    sql = _hits_in_visits(
        f, DimensionRow, label_sql=f"toString({column})", where_sql="1",
        selects="count() AS nb_actions, uniqExact(h.visitor_id) AS nb_uniq_visitors, "
                "uniqExactIf(h.user_hash, h.user_hash != 0) AS nb_users",
    )
    return _rows_by_label(client, f, sql, DimensionRow, params)


# --- Matomo method table: name -> function(client, filter, params, slots) -> JSON-able answer

Handler = Callable[[Any, ReportFilter, Mapping[str, str], Mapping[int, str] | None], Any]


def _custom_dimension(client: Any, f: ReportFilter, params: Mapping[str, str],
                      slots: Mapping[int, str] | None) -> Any:
    slot = as_int(params.get("idDimension", "").strip())
    if slot is None or slot < 1:
        raise ReportError("Please specify a valid idDimension (a positive integer)")
    # Only the dimensions the site declares exist, as in Matomo (its message, first site's id).
    if slot not in (slots or DEFAULT_DIMENSION_MAPPING):
        raise ReportError(f"Dimension {slot} for website {f.site_ids[0]} does not exist.")
    return f.shape(custom_dimension(client, f, slot, slots), _as_rows(f))


METHODS: dict[str, Handler] = {
    "VisitsSummary.get": lambda c, f, p, s: visits_summary_matomo(c, f),
    "CustomDimensions.getCustomDimension": _custom_dimension,
}
# Actions.* and Events.*: aggregator/reporting_actions.py (Matomo's hierarchical reports).
METHODS.update(ACTIONS_METHODS)
# DevicesDetection, VisitTime, VisitorInterest, VisitFrequency: aggregator/reporting_visits.py.
METHODS.update(VISITS_METHODS)
METHODS.update(REFERRERS_METHODS)  # Referrers.*: aggregator/reporting_referrers.py
# UserId.getUsers, Live.getLastVisitsDetails, Referrers.getCampaigns: aggregator/reporting_person.py,
# answered only where per_person() allows (the collector's reporting routes check it).
METHODS.update(PERSON_METHODS)
# DNMA.getProfils, getServices, ...: the open-data exports' figures, aggregator/reporting_dnma.py.
METHODS.update(DNMA_METHODS)


def per_person(method: str, params: Mapping[str, str]) -> bool:
    """Whether the call is a per-person or campaign report (a method of PER_PERSON_METHODS, or a
    segment on a per-person dimension): the super user's only, on sites that turn them on."""
    if method in PER_PERSON_METHODS:
        return True
    definition = params.get("segment", "")
    if not definition.strip():
        return False
    try:
        conditions = parse(definition)
    except SegmentError:
        return False  # refused as a bad segment by call()
    return any(c.name in PER_PERSON_SEGMENTS for ors in conditions for c in ors)


def call(client: Any, method: str, params: Mapping[str, str], site_ids: tuple[int, ...], today: date, *,
         slots: Mapping[int, str] | None = None, database: str = "dnma",
         timezones: Mapping[int, str] | None = None, establishments: tuple[str, str] | None = None,
         active_weeks: int | None = None) -> Any:
    """Run one reporting method for already-authorised sites. Raises ReportError for bad input.
    `timezones`: the sites' time zones (sites registry), Europe/Paris for those left out.
    `establishments`: a perimeter token's (kind, value), which the DNMA module's rows keep to;
    `active_weeks`: settings.active_school_weeks, DNMA.getDeploiement's (ACTIVE_SCHOOL_WEEKS if None)."""
    handler = METHODS.get(method)
    if handler is None:
        raise ReportError(f"The method '{method}' does not exist or is not available in this API")
    if method in NO_PERIOD:  # Live.getCounters, API.getSegmentsMetadata: no period of their own
        params = {**params, "period": "day", "date": "today"}
    if params.get("period") is None or params.get("date") is None:
        raise ReportError("Parameters 'period' and 'date' are required")
    try:
        segment = compile_segment(params.get("segment", ""), slots)
        filters = GenericFilters.parse(params)
    except (SegmentError, FilterError) as exc:
        raise ReportError(str(exc)) from None
    f = ReportFilter.build(site_ids, params["period"], params["date"], today, filters, database, segment,
                           timezones)
    if filters.pattern:
        _check_pattern(client, filters)
    try:
        if method in DNMA_METHODS:
            return DNMA_METHODS[method](client, f, params, slots, establishments, active_weeks)
        return handler(client, f, params, slots)
    except ShapeError as exc:
        raise ReportError(str(exc)) from None


_RE2_REASON = re.compile(r"error: (.*?)(?:\. Look at|\n|$)")


def _check_pattern(client: Any, filters: GenericFilters) -> None:
    """filter_pattern is a regular expression for ClickHouse (RE2): a bad one is the caller's error,
    told before the report runs, not a failed query."""
    try:
        client.query("SELECT match('', {pattern:String})", parameters={"pattern": filters.regex})
    except ClickHouseError as exc:
        found = _RE2_REASON.search(str(exc))
        reason = f": {found[1][:120]}" if found else ""
        raise ReportError(f"Parameter 'filter_pattern' is not a valid regular expression (RE2 syntax){reason}") from None
