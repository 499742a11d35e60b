"""Matomo's visit-level reports over `visits` (plugins DevicesDetection, VisitTime, VisitorInterest,
VisitFrequency): Matomo 5's labels, buckets, columns, their order and formatting, read from its
plugins' API.php, RecordBuilders and tests/PHPUnit/System/expected answers. Every report reads the
visits of the request's sites, periods and segment (`f.visits_where`), and applies the generic filters.

The visit metrics of a row, as Matomo's archiver keeps them:
- a day: `nb_uniq_visitors`, `nb_visits`, `nb_actions`, `nb_users`, `max_actions`,
  `sum_visit_length`, `bounce_count`, `nb_visits_converted` (0: DNMA has no goals);
- longer periods: the same without unique visitors and users, and after them
  `sum_daily_nb_uniq_visitors`, `sum_daily_nb_users` (each day's distinct ones, summed: Matomo sums
  the days' archives).
An empty period is Matomo's empty table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from aggregator.api_filters import natural_key
from aggregator.reporting_actions import ReportFilter, ShapeError, php_round
from dnma.datatable import Simple, Table

SITE_ZONE = ZoneInfo("Europe/Paris")  # the zone `visits.start` is stored in
STORAGE_LAST = date(2149, 6, 6)  # ClickHouse's last Date, as aggregator.reporting

# --- the visit metrics of rows grouped by a key


METRICS_SQL = """count() AS nb_visits, uniqExact(visitor_id) AS nb_uniq_visitors,
  uniqExact(visitor_id, day) AS sum_daily_nb_uniq_visitors, uniqExactIf(user_hash, user_hash != 0) AS nb_users,
  uniqExactIf((user_hash, day), user_hash != 0) AS sum_daily_nb_users, sum(actions) AS nb_actions,
  max(actions) AS max_actions, sum(duration) AS sum_visit_length, countIf(is_bounce = 1) AS bounce_count"""
METRIC_NAMES = ("nb_visits", "nb_uniq_visitors", "sum_daily_nb_uniq_visitors", "nb_users", "sum_daily_nb_users",
                 "nb_actions", "max_actions", "sum_visit_length", "bounce_count")


def _visits_from(f: ReportFilter, extra_where: str = "") -> str:
    return (f"FROM {f.database}.visits WHERE site_id IN {{sites:Array(UInt32)}} "
            f"AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}{extra_where}")


def grouped(client: Any, f: ReportFilter, key_sql: str) -> dict[str, dict[Any, dict[str, int]]]:
    """Each period's visit metrics by `key_sql` (an expression on `visits` from this module only)."""
    if f.beyond_storage:
        return {}
    sql = f"SELECT {f.bucket('day')} AS bucket, {key_sql} AS k, {METRICS_SQL} {_visits_from(f)} GROUP BY bucket, k"
    out: dict[str, dict[Any, dict[str, int]]] = {}
    for row in client.query(sql, parameters=f.parameters).result_rows:
        out.setdefault(f.label_of(row[0]), {})[row[1]] = dict(zip(METRIC_NAMES, (int(v) for v in row[2:]), strict=True))
    return out


def metric_columns(f: ReportFilter, m: Mapping[str, int]) -> dict[str, int]:
    """A row's visit metrics in Matomo's order for the period kind."""
    if f.periods.period == "day":
        return {"nb_uniq_visitors": m["nb_uniq_visitors"], "nb_visits": m["nb_visits"], "nb_actions": m["nb_actions"],
                "nb_users": m["nb_users"], "max_actions": m["max_actions"], "sum_visit_length": m["sum_visit_length"],
                "bounce_count": m["bounce_count"], "nb_visits_converted": 0}
    return {"nb_visits": m["nb_visits"], "nb_actions": m["nb_actions"], "max_actions": m["max_actions"],
            "sum_visit_length": m["sum_visit_length"], "bounce_count": m["bounce_count"], "nb_visits_converted": 0,
            "sum_daily_nb_uniq_visitors": m["sum_daily_nb_uniq_visitors"], "sum_daily_nb_users": m["sum_daily_nb_users"]}


ZERO = dict.fromkeys(METRIC_NAMES, 0)


def _keep_pattern(client: Any, f: ReportFilter, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """filter_pattern on `filter_column`, matched by ClickHouse (RE2) as in the other reports."""
    if not f.filters.pattern or not rows:
        return rows
    values = [str(r.get(f.filters.pattern_column, "")) for r in rows]
    kept = client.query("SELECT arrayMap(x -> match(x, {pattern:String}), {values:Array(String)})",
                        parameters={"pattern": f.filters.regex, "values": values}).result_rows[0][0]
    return [r for r, k in zip(rows, kept, strict=True) if k]


def table(client: Any, f: ReportFilter, by_period: Mapping[str, list[dict[str, Any]]],
          metadata: tuple[str, ...] = ("segment", "logo")) -> Any:
    """Each period's rows (in the report's default order) through filter_pattern and the generic filters."""
    kept = {p: _keep_pattern(client, f, rows) for p, rows in by_period.items()}
    return f.shape(kept, lambda rows: Table(f.filters.rows(rows or []), metadata))


def by_visits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Matomo's default order: most visits first, ties by label in PHP's natural order (which skips spaces)."""
    return sorted(rows, key=lambda r: (-r["nb_visits"], natural_key(str(r["label"]).replace(" ", ""))))


# --- DevicesDetection


LOGOS = "plugins/Morpheus/icons/dist"
# Every device type Matomo lists (DeviceParser::getAvailableDeviceTypes, its labels); a table with
# data lists the others with no visits.
DEVICE_TYPES = ("Desktop", "Smartphone", "Tablet", "Feature phone", "Console", "Tv", "Car browser", "Smart display",
                "Camera", "Portable media player", "Phablet", "Smart speaker", "Wearable", "Peripheral")
# DNMA's device classes (collector/useragent.py: phablets and feature phones are smartphones).
_DEVICE_OF_CLASS = {"ordinateur": "Desktop", "smartphone": "Smartphone", "tablette": "Tablet"}
UNKNOWN = "Unknown"


def _device_row(label: str, columns: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"label": label, **columns}
    if label != UNKNOWN:
        out["segment"] = "deviceType==" + quote_plus(label.lower())
    out["logo"] = f"{LOGOS}/devices/{label.lower().replace(' ', '_') if label != UNKNOWN else 'unknown'}.png"
    return out


def _label_sql(column: str, labels: Mapping[str, str]) -> str:
    """SQL mapping DNMA's classes in `column` to Matomo's labels (names from this module only)."""
    keys = ", ".join(f"'{k}'" for k in labels)
    values = ", ".join(f"'{v}'" for v in labels.values())
    return f"transform(`{column}`, [{keys}], [{values}], '{UNKNOWN}')"


def device_types(client: Any, f: ReportFilter) -> Any:
    by_period = {}
    for period, groups in grouped(client, f, _label_sql("device", _DEVICE_OF_CLASS)).items():
        rows = [_device_row(label, metric_columns(f, m)) for label, m in groups.items()]
        rows += [_device_row(label, {"nb_visits": 0}) for label in DEVICE_TYPES if label not in groups]
        by_period[period] = by_visits(rows)
    return table(client, f, by_period)


# DNMA's browser classes: Matomo's browser name and code (device-detector's short codes).
BROWSERS = {"chrome": ("Chrome", "CH"), "chromemobile": ("Chrome Mobile", "CM"), "safari": ("Safari", "SF"),
            "edge": ("Microsoft Edge", "PS"), "firefox": ("Firefox", "FF"), "opera": ("Opera", "OP"),
            "samsungbrowser": ("Samsung Browser", "SB"), "miuibrowser": ("Mi Browser", "MU"),
            "huaweibrowser": ("Huawei Browser", "HP")}
# DNMA's OS classes: Matomo's OS family and its code.
OS_FAMILIES = {"windows": ("Windows", "WIN"), "android": ("Android", "AND"), "ios": ("iOS", "IOS"),
               "macos": ("Mac", "MAC"), "linux": ("GNU/Linux", "LIN"), "chromeos": ("Chrome OS", "COS")}
_BROWSER_CODES = {name: code for name, code in BROWSERS.values()} | {UNKNOWN: "UNK"}
_OS_CODES = {name: code for name, code in OS_FAMILIES.values()} | {UNKNOWN: "UNK"}


def browsers(client: Any, f: ReportFilter) -> Any:
    by_period = {}
    labels = {cls: name for cls, (name, _) in BROWSERS.items()}
    for period, groups in grouped(client, f, _label_sql("browser", labels)).items():
        rows = [{"label": label, **metric_columns(f, m), "logo": f"{LOGOS}/browsers/{_BROWSER_CODES[label]}.png",
                 "segment": f"browserCode=={_BROWSER_CODES[label]}"} for label, m in groups.items()]
        by_period[period] = by_visits(rows)
    return table(client, f, by_period)


def os_families(client: Any, f: ReportFilter) -> Any:
    by_period = {}
    labels = {cls: name for cls, (name, _) in OS_FAMILIES.items()}
    for period, groups in grouped(client, f, _label_sql("os", labels)).items():
        rows = [{"label": label, **metric_columns(f, m), "logo": f"{LOGOS}/os/{_OS_CODES[label]}.png"}
                for label, m in groups.items()]
        by_period[period] = by_visits(rows)
    return table(client, f, by_period, ("logo",))


# --- VisitTime


def _utc_hour(f: ReportFilter, hour: int) -> int:
    """Matomo's segment of an hour row (AddSegmentByLabelInUTC): the site's hour on the period's
    last day, in UTC."""
    last = f.periods.last
    local = datetime(last.year, last.month, last.day, hour, tzinfo=ZoneInfo(f.zone_of(f.site_ids[0])))
    return local.astimezone(ZoneInfo("UTC")).hour


def server_time(client: Any, f: ReportFilter) -> Any:
    """Visits by the hour of their first action in the site's time zone (sites registry), as Matomo's
    "server time": its archiver takes HOUR(visit_first_action_time) in UTC and converts it to the
    site's zone (RecordBuilders/ServerTime::convertTimeToLocalTimezone). Every hour once a period
    has a visit."""
    by_period = {}
    for period, groups in grouped(client, f, f.local_hour("start")).items():
        by_period[period] = [{"label": f"{h:02d}", **metric_columns(f, groups.get(h, ZERO)),
                              "segment": f"visitStartServerHour=={_utc_hour(f, h)}"} for h in range(24)]
    return table(client, f, by_period, ("segment",))


def local_time(client: Any, f: ReportFilter) -> Any:
    """DNMA does not collect the visitor's local time (the tracker's h, m, s): Matomo's empty answer."""
    return f.shape({}, lambda rows: Table([], ("segment",)))


DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def by_day_of_week(client: Any, f: ReportFilter) -> Any:
    """Visits by weekday, from the days' figures summed (Matomo: day archives merged, so unique
    visitors and users are summed over the days; no max_actions)."""
    if f.periods.keyed:
        raise ShapeError("VisitTime.getByDayOfWeek does not support multiple dates.")
    if f.beyond_storage:
        return Table([], ("day_of_week",))
    sql = f"""
SELECT toDayOfWeek(day) AS dow, count(), uniqExact(visitor_id, day), sum(actions), uniqExactIf((user_hash, day), user_hash != 0),
  sum(duration), countIf(is_bounce = 1)
{_visits_from(f)} GROUP BY dow"""
    found = {int(r[0]): r[1:] for r in client.query(sql, parameters=f.parameters).result_rows}
    if not found:
        return Table([], ("day_of_week",))
    rows = []
    for n, name in enumerate(DAYS, 1):
        if n in found:
            v = [int(x) for x in found[n]]
            rows.append({"label": name, "nb_visits": v[0], "nb_uniq_visitors": v[1], "nb_actions": v[2],
                         "nb_users": v[3], "sum_visit_length": v[4], "bounce_count": v[5], "nb_visits_converted": 0,
                         "day_of_week": n})
        else:
            rows.append({"label": name, "nb_visits": 0, "day_of_week": n})
    return Table(f.filters.rows(_keep_pattern(client, f, rows)), ("day_of_week",))


# --- VisitorInterest: Matomo's buckets (its Archiver's $timeGap and $pageGap), labels and segments


# (low, high) in seconds, both included, as Matomo's `BETWEEN`: a visit of exactly 60, 120, … 1800 s
# falls in two neighbouring buckets, as in Matomo; None: above low.
DURATION_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (0, 10, "0\u201310s"), (11, 30, "11\u201330s"), (31, 60, "31\u201360s"), (60, 120, "1-2 min"),
    (120, 240, "2-4 min"), (240, 420, "4-7 min"), (420, 600, "7-10 min"), (600, 900, "10-15 min"),
    (900, 1800, "15-30 min"), (1800, None, "30+ min"))
PAGE_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (1, 1, "1 page"), (2, 2, "2 pages"), (3, 3, "3 pages"), (4, 4, "4 pages"), (5, 5, "5 pages"),
    (6, 7, "6-7 pages"), (8, 10, "8-10 pages"), (11, 14, "11-14 pages"), (15, 20, "15-20 pages"),
    (20, None, "21+ pages"))


def _bucket_segment(name: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{name}>={low + 1}"
    if low == high:
        return f"{name}=={low}"
    return f"{name}>={low};{name}<={high}"


def _bucketed(client: Any, f: ReportFilter, column: str, segment_name: str,
              buckets: tuple[tuple[int, int | None, str], ...]) -> Any:
    if f.beyond_storage:
        counts: dict[str, list[int]] = {}
    else:
        terms = ", ".join(f"countIf({column} > {low})" if high is None else f"countIf({column} BETWEEN {low} AND {high})"
                          for low, high, _ in buckets)
        sql = f"SELECT {f.bucket('day')} AS bucket, count(), {terms} {_visits_from(f)} GROUP BY bucket"
        counts = {f.label_of(r[0]): [int(v) for v in r[2:]]
                  for r in client.query(sql, parameters=f.parameters).result_rows if r[1]}
    by_period = {p: [{"label": label, "nb_visits": n, "segment": _bucket_segment(segment_name, low, high)}
                     for (low, high, label), n in zip(buckets, values, strict=True)]
                 for p, values in counts.items()}
    return table(client, f, by_period, ("segment",))


def visits_per_duration(client: Any, f: ReportFilter) -> Any:
    return _bucketed(client, f, "duration", "visitDuration", DURATION_BUCKETS)


def visits_per_page(client: Any, f: ReportFilter) -> Any:
    return _bucketed(client, f, "actions", "actions", PAGE_BUCKETS)


# --- VisitFrequency.get: new and returning visits


def _frequency_sql(f: ReportFilter) -> str:
    """A visit is returning when its visitor id had an earlier visit on the site (any stored day,
    whatever the segment). Under the cookieless daily salt a visitor's id lasts a day, so for those
    visitors only the day's earlier visits count."""
    return f"""
SELECT {f.bucket('day')} AS bucket, start > first_start AS returning, count() AS nb_visits,
  uniqExact(visitor_id) AS nb_uniq_visitors, uniqExactIf(user_hash, user_hash != 0) AS nb_users,
  sum(actions) AS nb_actions, max(actions) AS max_actions, sum(duration) AS sum_visit_length,
  countIf(is_bounce = 1) AS bounce_count
FROM {f.database}.visits
INNER JOIN (
  SELECT site_id, visitor_id, min(start) AS first_start FROM {f.database}.visits
  WHERE site_id IN {{sites:Array(UInt32)}} AND day <= {{last:Date}} GROUP BY site_id, visitor_id
) AS fs USING (site_id, visitor_id)
WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}
GROUP BY bucket, returning"""


_FREQUENCY = ("nb_visits", "nb_uniq_visitors", "nb_users", "nb_actions", "max_actions", "sum_visit_length",
              "bounce_count")


def visit_frequency(client: Any, f: ReportFilter) -> Any:
    found: dict[str, dict[str, dict[str, int]]] = {}
    if not f.beyond_storage:
        for row in client.query(_frequency_sql(f), parameters=f.parameters).result_rows:
            found.setdefault(f.label_of(row[0]), {})["returning" if row[1] else "new"] = dict(
                zip(_FREQUENCY, (int(v) for v in row[2:]), strict=True))
    uniques = f.periods.period not in ("year", "range")  # Matomo leaves them out for a year or a range

    def render(groups: Mapping[str, dict[str, int]] | None) -> Simple:
        out: dict[str, Any] = {}
        for kind in ("new", "returning"):
            m = (groups or {}).get(kind)
            if not m:
                continue  # Matomo answers only the kinds of visit it saw
            visits = m["nb_visits"]
            cols: dict[str, Any] = {}
            if uniques:
                cols |= {"nb_uniq_visitors": m["nb_uniq_visitors"], "nb_users": m["nb_users"]}
            cols |= {"nb_visits": visits, "nb_actions": m["nb_actions"], "nb_visits_converted": 0,
                     "bounce_count": m["bounce_count"], "sum_visit_length": m["sum_visit_length"],
                     "max_actions": m["max_actions"],
                     "bounce_rate": f"{php_round(100 * m['bounce_count'] / visits)}%",
                     "nb_actions_per_visit": php_round(m["nb_actions"] / visits, 1),
                     "avg_time_on_site": php_round(m["sum_visit_length"] / visits)}
            out |= {f"{k}_{kind}": v for k, v in cols.items()}
        return Simple(f.filters.columns(out))

    return f.shape(found, render)


Handler = Callable[[Any, ReportFilter, Mapping[str, str], Mapping[int, str] | None], Any]


def _plain(fn: Callable[[Any, ReportFilter], Any]) -> Handler:
    return lambda c, f, p, s: fn(c, f)


METHODS: dict[str, Handler] = {
    "DevicesDetection.getType": _plain(device_types),
    "DevicesDetection.getBrowsers": _plain(browsers),
    "DevicesDetection.getOsFamilies": _plain(os_families),
    "VisitTime.getVisitInformationPerServerTime": _plain(server_time),
    "VisitTime.getVisitInformationPerLocalTime": _plain(local_time),
    "VisitTime.getByDayOfWeek": _plain(by_day_of_week),
    "VisitorInterest.getNumberOfVisitsPerVisitDuration": _plain(visits_per_duration),
    "VisitorInterest.getNumberOfVisitsPerPage": _plain(visits_per_page),
    "VisitFrequency.get": _plain(visit_frequency),
}


# --- Live.getCounters: the last minutes' visits, actions and visitors


def live_counters(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    """Visits whose last action is at most `lastMinutes` old, their visitors, and the counted
    actions of the segment's visits in that time (Matomo's Live model). Visits are the loader's:
    the visits of the day under way are at most one aggregation pass old (DNMA_LOADER_AGGREGATE_INTERVAL_S)."""
    from dnma import clock
    from dnma.params import as_int
    from dnma.vocab import COUNTED_ACTIONS

    raw = params.get("lastMinutes", "").strip()
    minutes = as_int(raw, signed=True) if raw else None
    if minutes is None:
        raise ShapeError("Please specify a value for 'lastMinutes'." if not raw
                         else "Parameter 'lastMinutes' must be an integer")
    if not 1 <= minutes <= 2880:
        raise ShapeError("lastMinutes only accepts values between 1 and 2880")
    since = clock.now(SITE_ZONE).replace(microsecond=0) - timedelta(minutes=minutes)
    counted = ", ".join(f"'{a}'" for a in COUNTED_ACTIONS)
    parameters = {**f.parameters, "since": since.replace(tzinfo=None), "since_day": since.date() - timedelta(days=1)}
    recent = (f"FROM {f.database}.visits WHERE site_id IN {{sites:Array(UInt32)}} AND day >= {{since_day:Date}} "
              f"AND `end` >= {{since:DateTime('Europe/Paris')}}{f.visits_where}")
    visits, visitors = client.query(f"SELECT count(), uniqExact(visitor_id) {recent}",
                                    parameters=parameters).result_rows[0]
    actions = 0
    if visits:
        actions = client.query(f"""
SELECT count() FROM (
  SELECT site_id, visitor_id, ts, {f.hit_day()} AS d FROM {f.database}.hits
  WHERE site_id IN {{sites:Array(UInt32)}} AND toDate(ts) >= {{since_day:Date}}
    AND ts >= {{since:DateTime('Europe/Paris')}} AND action IN ({counted}) AND NOT has(flags, 'invalid_uai')
) AS h
INNER JOIN (SELECT site_id, visitor_id, day, start, `end` {recent}) AS v
  ON h.site_id = v.site_id AND h.visitor_id = v.visitor_id AND h.d = v.day
WHERE h.ts BETWEEN v.start AND v.`end`""", parameters=parameters).result_rows[0][0]
    row = {"visits": int(visits), "actions": int(actions), "visitors": int(visitors), "visitsConverted": 0}
    shown, hidden = f.filters.show_columns, f.filters.hide_columns
    return Table([{k: v for k, v in row.items() if (not shown or k in shown) and k not in hidden}])


# --- MultiSites: visits, actions and page views of each site, and their evolution


def _previous(f: ReportFilter, first: date, last: date) -> tuple[date, date]:
    """The period before [first, last] (Matomo's previous period: the same kind, or a range as long)."""
    from aggregator.periods import span_of

    if f.periods.period in ("day", "week", "month", "year"):
        span = span_of(f.periods.period, first - timedelta(days=1))
        return span.first, span.last
    return first - (last - first) - timedelta(days=1), first - timedelta(days=1)


def _evolution(current: float, past: float) -> tuple[str, int]:
    """Matomo's evolution column (CalculateEvolutionFilter, 1 decimal) and its trend."""
    trend = (current > past) - (current < past)
    if not past:
        return ("100%" if current else "0%"), trend
    return f"{php_round(100 * (current - past) / past, 1)}%", trend


def _pretty(f: ReportFilter, first: date, last: date) -> str:
    """The previous period as Matomo's MultiSites names it (English)."""
    period = f.periods.period
    if period == "day":
        return f"{first:%a}, {first:%b} {first.day}"
    if period == "month":
        return f"{first:%B} {first.year}"
    if period == "year":
        return str(first.year)
    return f"{first:%b} {first.day}, {first.year} \u2013 {last:%b} {last.day}, {last.year}"


def _site_totals(client: Any, f: ReportFilter, first: date, last: date) -> dict[tuple[int, date], tuple[int, int, int]]:
    if first > STORAGE_LAST:
        return {}
    parameters = {**f.parameters, "first": first, "last": min(last, STORAGE_LAST)}
    sql = (f"SELECT site_id, day, count(), sum(actions), sum(pageviews) {_visits_from(f)} GROUP BY site_id, day")
    return {(int(r[0]), r[1]): (int(r[2]), int(r[3]), int(r[4]))
            for r in client.query(sql, parameters=parameters).result_rows}


def _summed(totals: Mapping[tuple[int, date], tuple[int, int, int]], site: int, first: date, last: date) -> list[int]:
    out = [0, 0, 0]
    for (s, day), values in totals.items():
        if s == site and first <= day <= last:
            out = [a + b for a, b in zip(out, values, strict=True)]
    return out


def multi_sites(client: Any, f: ReportFilter) -> dict[str, list[dict[str, Any]]]:
    """Each period's row of each site (by `idsite`), with the previous period's figures."""
    spans = f.periods.spans
    earliest = _previous(f, spans[0].first, spans[0].last)[0]
    totals = _site_totals(client, f, earliest, spans[-1].last)
    out: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        prev_first, prev_last = _previous(f, span.first, span.last)
        rows = []
        for site in f.parameters["sites"]:
            visits, actions, pageviews = _summed(totals, site, span.first, span.last)
            p_visits, p_actions, p_pageviews = _summed(totals, site, prev_first, prev_last)
            row: dict[str, Any] = {"nb_visits": visits, "nb_actions": actions, "nb_pageviews": pageviews, "revenue": 0}
            for name, now, past in (("visits", visits, p_visits), ("actions", actions, p_actions),
                                    ("pageviews", pageviews, p_pageviews), ("revenue", 0, 0)):
                row[f"{name}_evolution"], row[f"{name}_evolution_trend"] = _evolution(now, past)
            row |= {"idsite": site, "previous_nb_visits": p_visits, "periodName": f.periods.period,
                    "previousRange": _pretty(f, prev_first, prev_last), "previous_nb_actions": p_actions,
                    "previous_Actions_nb_pageviews": p_pageviews, "previous_Goal_revenue": 0}
            rows.append(row)
        out[span.label] = rows
    return out


_ONE = ("nb_visits", "nb_actions", "visits_evolution", "visits_evolution_trend", "actions_evolution",
        "actions_evolution_trend", "pageviews_evolution", "pageviews_evolution_trend", "revenue_evolution",
        "revenue_evolution_trend", "nb_pageviews", "revenue")


def multi_sites_one(client: Any, f: ReportFilter) -> Any:
    """MultiSites.getOne: one site's figures and their evolution, in Matomo's order."""
    found = multi_sites(client, f)
    return f.shape(found, lambda rows: Simple(f.filters.columns({k: rows[0][k] for k in _ONE})))


def multi_sites_all(client: Any, f: ReportFilter) -> Any:
    """MultiSites.getAll's figures for every site asked (the collector adds each site's name, URL
    and group); most visits first."""
    found = multi_sites(client, f)
    return f.shape(found, lambda rows: [dict(r) for r in sorted(rows or [], key=lambda r: -r["nb_visits"])])


# --- API.getSegmentsMetadata: the segments aggregator/segments.py compiles


def segments_metadata(client: Any, f: ReportFilter, slots: Mapping[int, str] | None) -> Any:
    """Matomo's fields (type, category, name, segment, acceptedValues; its SQL ones left out) of the
    segments DNMA computes, in Matomo's order (category, metrics first, then by name)."""
    from aggregator.segments import metadata

    rows = metadata(slots)
    rows.sort(key=lambda r: r["segment"], reverse=True)
    rows.sort(key=lambda r: r["name"])
    rows.sort(key=lambda r: r["type"], reverse=True)
    return rows


NO_PERIOD = frozenset({"Live.getCounters", "API.getSegmentsMetadata"})  # answered without period and date

METHODS.update({
    "Live.getCounters": lambda c, f, p, s: live_counters(c, f, p),
    "MultiSites.getOne": _plain(multi_sites_one),
    "MultiSites.getAll": _plain(multi_sites_all),
    "API.getSegmentsMetadata": lambda c, f, p, s: segments_metadata(c, f, s),
})
