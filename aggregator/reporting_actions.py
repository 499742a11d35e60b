"""Matomo's Actions and Events reports (plugins/Actions, plugins/Events) over `hits` and `visits`:
the columns, their order, types and formatting of Matomo 5's answers, and its hierarchical shapes
(`idsubdatatable`, `expanded=1`, `flat=1`, `idSubtable=N`). Definitions, as Matomo's archiver's:

- a hit belongs to the visit whose span holds it (same site, visitor and day, the site-local day of
  the sessionizer); only counted actions;
- `nb_hits`: hits of the row; `nb_visits`: distinct visits among them ("unique pageviews");
  `nb_uniq_visitors` for a day, `sum_daily_nb_uniq_visitors` for longer periods (Matomo computes
  no unique visitors of an action over several days);
- time spent (`sum_time_spent`): each page view, download, outlink or search is credited with the
  time since the visit's previous action (events included, as Matomo's `time_spent_ref_action`),
  to the last page view or search before it; events' own gaps count for nothing (Matomo's
  archiver leaves events out of it);
- entry and exit: the first and last page view or search of each visit; `entry_bounce_count`
  counts visits of at most one action;
- folders of the URL tree sum their children's columns, unique visitors left out (Matomo's
  ArchivingHelper::deleteInvalidSummedColumnsFromDataTable).
- events are counted per (category, action, name) and summed into each report's rows and
  subtables, as Matomo's archiver does (a visit with two names of one category counts twice in
  the category's nb_visits); an empty secondary value has no subtable row.

Rows are built as a tree (top rows, children) and shaped at the end; a top row's `idsubdatatable`
is its rank in the period's table (1, 2, …), which `idSubtable=` reads back for the same period."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote_plus

from aggregator.api_filters import natural_key  # PHP natural order, as the Sort filter
from aggregator.rollups import inline_dates
from dnma.datatable import Simple, Table
from dnma.params import as_int
from dnma.vocab import COUNTED_ACTIONS

if TYPE_CHECKING:
    from aggregator.api_filters import GenericFilters
    from aggregator.periods import Periods


class ReportFilter(Protocol):
    """What these reports read of aggregator.reporting.ReportFilter (which imports this module)."""

    @property
    def site_ids(self) -> tuple[int, ...]: ...

    @property
    def filters(self) -> GenericFilters: ...

    @property
    def periods(self) -> Periods: ...

    @property
    def database(self) -> str: ...

    @property
    def visits_where(self) -> str: ...

    @property
    def beyond_storage(self) -> bool: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    @property
    def hits_where(self) -> str: ...

    def hit_day(self, column: str = "ts") -> str: ...

    def local_hour(self, column: str) -> str: ...

    def zone_of(self, site_id: int) -> str: ...

    def bucket(self, day_sql: str) -> str: ...

    def label_of(self, bucket_start: date) -> str: ...

    def shape(self, by_label: Mapping[str, Any], render: Callable[[Any], Any]) -> Any: ...


class ShapeError(ValueError):
    """A bad parameter of these reports; aggregator.reporting answers it as its ReportError."""

INVALID_FLAG = "invalid_uai"  # as aggregator.reporting: such hits are outside every indicator
PAGE_LIKE = ("pageview", "search")  # what Matomo counts as a page of the visit (entry, exit, time)
PAGE_URL_NOT_DEFINED = "Page URL not defined"  # Matomo: General_NotDefined % Actions_ColumnPageURL
PAGE_NAME_NOT_DEFINED = "Page Name not defined"
EVENT_NAME_NOT_DEFINED = "Event Name not defined"  # Matomo 5: Events_EventName is "Event Name"
NOT_DEFINED = "Value not defined"

# The flat label of a page URL: its path and query string, '/index' for the root (Matomo's).
URL_LABEL = ("if(path(url) IN ('', '/'), '/index', concat(path(url), if(queryString(url) = '', '', "
             "concat('?', queryString(url)))))")


def _error(message: str) -> Exception:
    return ShapeError(message)


def _num(value: float) -> int | float:
    """A sum or a quotient as Matomo prints it: 3.0 is 3."""
    return int(value) if float(value).is_integer() else value


def php_round(value: float, digits: int = 0) -> int | float:
    """PHP's round(): halves away from zero (Python's round() takes them to the even side)."""
    out = float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    return _num(out)


def _percent(part: float, whole: float) -> str:
    """Piwik::getQuotientSafe(precision 2) shown as a percentage: '33%', '0%' when nothing to divide."""
    return f"{_num(php_round(100 * php_round(part / whole, 2)))}%" if whole else "0%"


def _twice(value: str) -> str:
    """A URL in a segment, as Matomo writes it: urlencode(urlencode(url)) ('~' too, as PHP)."""
    return quote_plus(quote_plus(value, safe="").replace("~", "%7E"), safe="").replace("~", "%7E")


def _once(value: str) -> str:
    return quote_plus(value, safe="").replace("~", "%7E")


@dataclass
class Node:
    """One row of a report and its subtable (children), columns in Matomo's order."""

    label: str
    columns: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    segment: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # url: after the columns, before segment


# --- the visits' hits, in SQL


def _hits_sql(f: ReportFilter, label_sql: str, where_sql: str, extra: str = "") -> str:
    """Counted hits (valid ones) matching `where_sql`, each with its visit's id, actions and duration."""
    counted = ", ".join(f"'{a}'" for a in COUNTED_ACTIONS)
    return f"""
SELECT h.ts AS ts, h.d AS d, h.action AS action, h.label AS label, h.url AS url, h.visitor_id AS visitor_id,
  v.visit_id AS visit_id, v.actions AS v_actions, v.duration AS v_duration{extra}
FROM (
  SELECT site_id, visitor_id, {f.hit_day()} AS d, ts, action, url, event_category, event_action, event_name,
    event_value, {label_sql} AS label
  FROM {f.database}.hits
  WHERE site_id IN {{sites:Array(UInt32)}} AND {f.hits_where}
    AND action IN ({counted}) AND NOT has(flags, '{INVALID_FLAG}') AND ({where_sql})
) AS h
INNER JOIN (
  SELECT site_id, visitor_id, day, visit_id, start, `end`, actions, duration
  FROM {f.database}.visits
  WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}
) AS v ON h.site_id = v.site_id AND h.visitor_id = v.visitor_id AND h.d = v.day
WHERE h.ts >= v.start AND h.ts <= v.`end`"""


def _query(client: Any, f: ReportFilter, sql: str) -> list[tuple[Any, ...]]:
    if f.beyond_storage:
        return []
    parameters = dict(f.parameters)
    # Dates as literals: `toDate(ts) BETWEEN <parameters>` would read every granule of the months.
    return list(client.query(inline_dates(sql, parameters), parameters=parameters).result_rows)


def _by_label(f: ReportFilter, rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(f.label_of(row[0]), []).append(row[1:])
    return out


# --- pages (URLs, titles) and site search keywords


def _page_sql(f: ReportFilter, label_sql: str) -> str:
    """Over the visits' hits in sequence, per (bucket, action, label) of page views and searches:
    the counts, the entry and exit columns, and the time spent credited to them."""
    base = _hits_sql(f, f"if(action = 'search', search_keyword, {label_sql})", "1")
    seq = f"""
WITH hv AS ({base}),
seq AS (
  SELECT *,
    toInt64(ts) - toInt64(lagInFrame(ts, 1, ts) OVER (PARTITION BY visit_id ORDER BY ts, action, label
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS gap,
    anyLast(if(action IN {PAGE_LIKE}, action, NULL)) OVER (PARTITION BY visit_id ORDER BY ts, action, label
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS ref_action,
    anyLast(if(action IN {PAGE_LIKE}, label, NULL)) OVER (PARTITION BY visit_id ORDER BY ts, action, label
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS ref_label,
    row_number() OVER (PARTITION BY visit_id, action IN {PAGE_LIKE} ORDER BY ts, action, label) AS pn,
    count() OVER (PARTITION BY visit_id, action IN {PAGE_LIKE}) AS pc
  FROM hv
)"""
    own = "k.3 = 1"
    # One pass: each hit counts for its own row (own = 1) and credits its gap to the page before
    # it (own = 0); the two keys come out of one ARRAY JOIN and one GROUP BY.
    return f"""{seq}
SELECT toDate({f.bucket('d')}) AS bucket, k.1 AS row_action, k.2 AS row_label,
  countIf(({own})) AS nb_hits, uniqExactIf(visit_id, ({own})) AS nb_visits,
  uniqExactIf(visitor_id, ({own})) AS nb_uniq_visitors, uniqExactIf((visitor_id, d), ({own})) AS sum_daily_nb_uniq_visitors,
  countIf(({own}) AND pn = 1) AS entry_nb_visits, uniqExactIf(visitor_id, ({own}) AND pn = 1) AS entry_nb_uniq_visitors,
  uniqExactIf((visitor_id, d), ({own}) AND pn = 1) AS sum_daily_entry_nb_uniq_visitors,
  sumIf(v_actions, ({own}) AND pn = 1) AS entry_nb_actions, sumIf(v_duration, ({own}) AND pn = 1) AS entry_sum_visit_length,
  countIf(({own}) AND pn = 1 AND v_actions <= 1) AS entry_bounce_count,
  countIf(({own}) AND pn = pc) AS exit_nb_visits, uniqExactIf(visitor_id, ({own}) AND pn = pc) AS exit_nb_uniq_visitors,
  uniqExactIf((visitor_id, d), ({own}) AND pn = pc) AS sum_daily_exit_nb_uniq_visitors,
  minIf(url, ({own})) AS first_url, sumIf(gap, NOT ({own})) AS sum_time_spent
FROM seq
ARRAY JOIN [(action, label, 1), (ifNull(ref_action, ''), ifNull(ref_label, ''), 0)] AS k
WHERE (k.3 = 1 AND action IN {PAGE_LIKE}) OR (k.3 = 0 AND action != 'event' AND ref_action IS NOT NULL)
GROUP BY bucket, row_action, row_label
HAVING nb_hits > 0"""


_PAGE_COUNTS = ("nb_hits", "nb_visits", "nb_uniq_visitors", "sum_daily_nb_uniq_visitors", "entry_nb_visits",
                "entry_nb_uniq_visitors", "sum_daily_entry_nb_uniq_visitors", "entry_nb_actions",
                "entry_sum_visit_length", "entry_bounce_count", "exit_nb_visits", "exit_nb_uniq_visitors",
                "sum_daily_exit_nb_uniq_visitors", "url")


@dataclass
class PageStats:
    """One page (or keyword) of one period, before it is shaped."""

    values: dict[str, Any]
    sum_time_spent: int = 0


def page_stats(client: Any, f: ReportFilter, label_sql: str) -> dict[str, dict[tuple[str, str], PageStats]]:
    """Per period label: (action, label) -> its counts and time spent."""
    out: dict[str, dict[tuple[str, str], PageStats]] = {}
    for period, rows in _by_label(f, _query(client, f, _page_sql(f, label_sql))).items():
        out[period] = {(r[0], r[1]): PageStats(dict(zip(_PAGE_COUNTS, r[2:-1], strict=True)), int(r[-1]))
                       for r in rows}
    return out


def _page_columns(v: Mapping[str, Any], spent: int, day: bool, *, folder: bool = False) -> dict[str, Any]:
    """A page row's columns in Matomo's order (plugins/Actions expected answers): counts, entry and
    exit columns when the page was one, the daily sums for longer periods, then the processed ones."""
    out: dict[str, Any] = {"nb_visits": v["nb_visits"]}
    if day and not folder:
        out["nb_uniq_visitors"] = v["nb_uniq_visitors"]
    out["nb_hits"] = v["nb_hits"]
    out["sum_time_spent"] = spent
    if v["entry_nb_visits"]:
        if day and not folder:
            out["entry_nb_uniq_visitors"] = v["entry_nb_uniq_visitors"]
        for name in ("entry_nb_visits", "entry_nb_actions", "entry_sum_visit_length", "entry_bounce_count"):
            out[name] = v[name]
    if v["exit_nb_visits"]:
        if day and not folder:
            out["exit_nb_uniq_visitors"] = v["exit_nb_uniq_visitors"]
        out["exit_nb_visits"] = v["exit_nb_visits"]
    if not day:
        out["sum_daily_nb_uniq_visitors"] = v["sum_daily_nb_uniq_visitors"]
        if v["entry_nb_visits"]:
            out["sum_daily_entry_nb_uniq_visitors"] = v["sum_daily_entry_nb_uniq_visitors"]
        if v["exit_nb_visits"]:
            out["sum_daily_exit_nb_uniq_visitors"] = v["sum_daily_exit_nb_uniq_visitors"]
    out["avg_time_on_page"] = php_round(spent / v["nb_hits"]) if v["nb_hits"] else 0
    out["bounce_rate"] = _percent(v["entry_bounce_count"], v["entry_nb_visits"])
    out["exit_rate"] = _percent(v["exit_nb_visits"], v["nb_visits"])
    return out


_SUMMED = ("nb_hits", "nb_visits", "sum_daily_nb_uniq_visitors", "entry_nb_visits", "sum_daily_entry_nb_uniq_visitors",
           "entry_nb_actions", "entry_sum_visit_length", "entry_bounce_count", "exit_nb_visits",
           "sum_daily_exit_nb_uniq_visitors")


def _url_parts(label: str) -> list[str]:
    """Matomo's exploded page URL: folders, then '/leaf' ('/index' for a folder's own page)."""
    if label == "/index" or not label.startswith("/"):
        return [label]
    path, sep, query = label.partition("?")
    parts = path[1:].split("/")
    leaf = parts.pop() or "index"
    return [*parts[:9], "/" + leaf + sep + query]


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if rest else ""


def page_tree(stats: Mapping[tuple[str, str], PageStats], day: bool, *, titles: bool) -> list[Node]:
    """Page view rows as Matomo's tree: URLs split into folders, titles flat (Matomo's default title
    delimiter is empty), each title a ' '-prefixed leaf."""
    root: dict[tuple[str, str], Any] = {}
    for (action, label), s in stats.items():
        if action != "pageview":
            continue
        if titles:
            parts = [" " + label if label else PAGE_NAME_NOT_DEFINED]
        else:
            parts = _url_parts(label) if label else [PAGE_URL_NOT_DEFINED]
        level = root
        for part in parts[:-1]:
            level = level.setdefault(("dir", part), {})
        level[("leaf", parts[-1])] = (label, s)
    return _nodes(root, day, titles, "")


def _nodes(level: Mapping[tuple[str, str], Any], day: bool, titles: bool, path: str) -> list[Node]:
    out: list[Node] = []
    for (kind, part), content in level.items():
        if kind == "leaf":
            label, s = content
            url = s.values["url"]
            node = Node(part, _page_columns(s.values, s.sum_time_spent, day),
                        segment=(f"pageTitle=={_twice(label)}" if titles else f"pageUrl=={_twice(url)}"),
                        metadata={} if titles else {"url": url})
        else:
            children = _nodes(content, day, titles, f"{path}/{part}")
            sums = {k: sum(c.metadata["_values"][k] for c in children) for k in _SUMMED}
            spent = sum(c.metadata["_spent"] for c in children)
            first_url = next(c for c in _leaves(children)).metadata.get("url", "")
            node = Node(part, _page_columns(sums, spent, day, folder=True), children,
                        segment=f"pageUrl=^{_twice(_origin(first_url) + path + '/' + part)}")
            node.metadata["_values"], node.metadata["_spent"] = sums, spent
            out.append(node)
            continue
        node.metadata["_values"], node.metadata["_spent"] = s.values, s.sum_time_spent
        out.append(node)
    return sorted(out, key=_default_order)


def _leaves(nodes: list[Node]) -> Any:
    for n in nodes:
        if n.children:
            yield from _leaves(n.children)
        else:
            yield n


def _default_order(node: Node) -> tuple[Any, ...]:
    """Matomo's order of a stored report: most visits first (the archiver sorts by nb_visits before
    it truncates), ties by label in PHP's natural, case-insensitive order."""
    return (-node.columns.get("nb_visits", 0), natural_key(node.label))


def keyword_rows(stats: Mapping[tuple[str, str], PageStats]) -> list[Node]:
    """Actions.getSiteSearchKeywords: Matomo deletes the unique-visitor and entry columns of keywords."""
    out = []
    for (action, label), s in stats.items():
        if action != "search":
            continue
        v = s.values
        cols: dict[str, Any] = {"nb_visits": v["nb_visits"], "nb_hits": v["nb_hits"], "sum_time_spent": s.sum_time_spent}
        if v["exit_nb_visits"]:
            cols["exit_nb_visits"] = v["exit_nb_visits"]
        cols["nb_pages_per_search"] = php_round(v["nb_hits"] / v["nb_visits"], 1) if v["nb_visits"] else 0
        cols["avg_time_on_page"] = php_round(s.sum_time_spent / v["nb_hits"]) if v["nb_hits"] else 0
        cols["bounce_rate"] = "0%"  # entry columns deleted: Matomo's quotient of nothing
        cols["exit_rate"] = _percent(v["exit_nb_visits"], v["nb_visits"])
        out.append(Node(label, cols, segment=f"siteSearchKeyword=={_once(label)}"))
    return sorted(out, key=_default_order)


# --- downloads and outlinks: host, then the rest of the URL


# Matomo keeps a download or outlink URL only when it looks like one (UrlHelper::isLookLikeUrl:
# an optional scheme, then '//' and something; never javascript:, vbscript: or data:): a mailto:
# link is an action of its visit but in no downloads or outlinks row, nor in Actions.get's counts.
LOOKS_LIKE_URL = ("(match(url, '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//.') "
                  "AND NOT match(lower(url), '^(javascript|vbscript|data):'))")


def link_tree(client: Any, f: ReportFilter, action: str) -> dict[str, list[Node]]:
    sql = f"""
WITH hv AS ({_hits_sql(f, "url", f"action = '{action}' AND {LOOKS_LIKE_URL}")})
SELECT toDate({f.bucket('d')}) AS bucket, replaceRegexpOne(domain(hv.url), '^www\\\\.', '') AS host,
  substring(hv.url, position(hv.url, domain(hv.url)) + length(domain(hv.url))) AS rest,
  count() AS nb_hits, uniqExact(visit_id) AS nb_visits, uniqExact(visitor_id) AS nb_uniq_visitors,
  uniqExact(visitor_id, d) AS sum_daily_nb_uniq_visitors, min(hv.url) AS first_url
FROM hv GROUP BY bucket, host, rest"""
    day = f.periods.period == "day"
    kind = "downloadUrl" if action == "download" else "outlinkUrl"
    out: dict[str, list[Node]] = {}
    for period, rows in _by_label(f, _query(client, f, sql)).items():
        hosts: dict[str, list[Node]] = {}
        for host, rest, hits, visits, uniq, daily, url in rows:
            cols: dict[str, Any] = {"nb_visits": visits}
            if day:
                cols["nb_uniq_visitors"] = uniq
            cols["nb_hits"] = hits
            cols["sum_time_spent"] = 0  # time is credited to pages, never to a link
            if not day:
                cols["sum_daily_nb_uniq_visitors"] = daily
            hosts.setdefault(host or NOT_DEFINED, []).append(
                Node(rest or "/", cols, segment=f"{kind}=={_twice(url)}", metadata={"url": url}))
        tops = []
        for host, children in hosts.items():
            cols = {"nb_visits": sum(c.columns["nb_visits"] for c in children),
                    "nb_hits": sum(c.columns["nb_hits"] for c in children), "sum_time_spent": 0}
            if not day:
                cols["sum_daily_nb_uniq_visitors"] = sum(c.columns["sum_daily_nb_uniq_visitors"] for c in children)
            tops.append(Node(host, cols, sorted(children, key=_default_order)))
        out[period] = sorted(tops, key=_default_order)
    return out


# --- events


EVENT_DIMENSIONS = {"eventCategory": "event_category", "eventAction": "event_action", "eventName": "event_name"}
# Matomo's Events API: each report's dimension, its default secondary dimension and the allowed ones.
EVENT_REPORTS = {
    "getCategory": ("eventCategory", ("eventAction", "eventName")),
    "getAction": ("eventAction", ("eventName", "eventCategory")),
    "getName": ("eventName", ("eventAction", "eventCategory")),
}
# The subtable methods: (report, secondary dimension) read with idSubtable.
EVENT_SUBTABLES = {
    "getActionFromCategoryId": ("getCategory", "eventAction"),
    "getNameFromCategoryId": ("getCategory", "eventName"),
    "getCategoryFromActionId": ("getAction", "eventCategory"),
    "getNameFromActionId": ("getAction", "eventName"),
    "getActionFromNameId": ("getName", "eventAction"),
    "getCategoryFromNameId": ("getName", "eventCategory"),
}


def _event_label(dimension: str, value: str) -> str:
    if value:
        return value
    return EVENT_NAME_NOT_DEFINED if dimension == "eventName" else NOT_DEFINED


_EVENT_SUMS = ("nb_uniq_visitors", "nb_visits", "nb_events", "nb_events_with_value", "sum_event_value",
               "sum_daily_nb_uniq_visitors")


def _event_add(into: dict[str, Any], triple: Mapping[str, Any]) -> None:
    """Matomo's sumRowWithLabel with the Events aggregation ops: sums, min of the minimums and max
    of the maximums (an event without a value has none)."""
    for name in _EVENT_SUMS:
        into[name] = into.get(name, 0) + triple[name]
    for name, pick in (("min_event_value", min), ("max_event_value", max)):
        values = [v for v in (into.get(name), triple[name]) if v is not None]
        into[name] = pick(values) if values else None


def _event_columns(v: Mapping[str, Any], day: bool) -> dict[str, Any]:
    """A row's columns in Matomo's order (test_CustomEvents__Events.*_day.xml and _month.xml)."""
    out: dict[str, Any] = {}
    if day:
        out["nb_uniq_visitors"] = v["nb_uniq_visitors"]
    out.update(nb_visits=v["nb_visits"], nb_events=v["nb_events"], nb_events_with_value=v["nb_events_with_value"],
               sum_event_value=php_round(v["sum_event_value"], 2), min_event_value=v["min_event_value"],
               max_event_value=v["max_event_value"])
    if not day:
        out["sum_daily_nb_uniq_visitors"] = v["sum_daily_nb_uniq_visitors"]
    n = v["nb_events_with_value"]
    out["avg_event_value"] = php_round(v["sum_event_value"] / n, 2) if n else 0
    return out


def event_tree(client: Any, f: ReportFilter, report: str, secondary: str) -> dict[str, list[Node]]:
    """As Matomo's archiver (Events/RecordBuilders/EventReports.php): counts per (category, action,
    name), each summed into its top row and, when the secondary value is not empty, into that row's
    subtable; sums, minimums and maximums rounded to 2 decimals per triple first."""
    primary = EVENT_REPORTS[report][0]
    base = _hits_sql(f, "''", "action = 'event'", extra=", h.event_category AS event_category, "
                     "h.event_action AS event_action, h.event_name AS event_name, h.event_value AS event_value")
    sql = f"""
WITH hv AS ({base})
SELECT toDate({f.bucket('d')}) AS bucket, event_category, event_action, event_name,
  uniqExact(visitor_id), uniqExact(visit_id), count(), countIf(event_value IS NOT NULL),
  toFloat64(ifNull(sum(event_value), 0)), min(event_value), max(event_value), uniqExact(visitor_id, d)
FROM hv GROUP BY bucket, event_category, event_action, event_name"""
    day = f.periods.period == "day"
    out: dict[str, list[Node]] = {}
    for period, rows in _by_label(f, _query(client, f, sql)).items():
        tops: dict[str, dict[str, Any]] = {}
        subs: dict[str, dict[str, dict[str, Any]]] = {}
        for category, action, name, uniq, visits, events, with_value, total, low, high, daily in rows:
            values = {"eventCategory": category, "eventAction": action, "eventName": name}
            triple = {"nb_uniq_visitors": uniq, "nb_visits": visits, "nb_events": events,
                      "nb_events_with_value": with_value, "sum_event_value": php_round(total, 2),
                      "min_event_value": None if low is None else php_round(low, 2),
                      "max_event_value": None if high is None else php_round(high, 2),
                      "sum_daily_nb_uniq_visitors": daily}
            main, sub = values[primary], values[secondary]
            _event_add(tops.setdefault(main, {}), triple)
            if sub:  # Matomo: an empty secondary value has no subtable row
                _event_add(subs.setdefault(main, {}).setdefault(sub, {}), triple)
        nodes = []
        for main, v in tops.items():
            label = _event_label(primary, main)
            children = [Node(_event_label(secondary, sub), _event_columns(sv, day))
                        for sub, sv in subs.get(main, {}).items()]
            nodes.append(Node(label, _event_columns(v, day), sorted(children, key=_default_order),
                              segment=f"{primary}=={_once(main)}" if main else None))
        out[period] = sorted(nodes, key=_default_order)
    return out


# --- shaping: idsubdatatable, expanded, flat, idSubtable; then the generic filters


@dataclass(frozen=True)
class Shape:
    """How a hierarchical report is asked for, and how its rows flatten (Matomo's Flattener)."""

    expanded: bool = False
    flat: bool = False
    id_subtable: int | None = None
    separator: str = " - "  # between a parent's label and its child's in a flat label
    # Flat rows name each level's value in a metadata column (Matomo 5's Flattener): one name for
    # the Actions reports (the whole flat label), one per level for Events.
    dimensions: tuple[str, ...] = ()
    segments_when_flat: bool = False
    flat_label: Callable[[str], str] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], **how: Any) -> Shape:
        def flag(name: str) -> bool:
            return params.get(name, "").strip().lower() in ("1", "true")

        raw = params.get("idSubtable", "").strip()
        sub = None
        if raw:
            sub = as_int(raw)
            if sub is None or sub < 1:
                raise _error("Parameter 'idSubtable' must be a positive integer")
        return cls(flag("expanded"), flag("flat"), sub, **how)


def _row(node: Node, *, segment: bool = True) -> dict[str, Any]:
    out = {"label": node.label, **node.columns}
    out.update({k: v for k, v in node.metadata.items() if not k.startswith("_")})
    if segment and node.segment is not None:
        out["segment"] = node.segment
    return out


def _flatten(nodes: list[Node], shape: Shape, prefix: str = "", parents: tuple[str, ...] = ()) -> list[Node]:
    out = []
    for n in nodes:
        label = prefix + shape.separator + n.label if prefix else n.label
        if n.children:
            out.extend(_flatten(n.children, shape, label, (*parents, n.label)))
            continue
        label = shape.flat_label(label) if shape.flat_label else label
        metadata = {k: v for k, v in n.metadata.items() if not k.startswith("_")}
        if len(shape.dimensions) == 1:
            metadata[shape.dimensions[0]] = label
        else:
            metadata.update(zip(shape.dimensions, (*parents, n.label), strict=False))
        out.append(Node(label, n.columns, segment=n.segment if shape.segments_when_flat else None,
                        metadata=metadata))
    return out


def answer(client: Any, f: ReportFilter, tree: Mapping[str, list[Node]], shape: Shape) -> Any:
    """Each period's tree in the shape asked for: the subtable asked for, flattened if asked (the
    flat rows in Matomo's default order), then filter_pattern, then the other generic filters. A
    top row's idsubdatatable is its rank before any filter, so that idSubtable finds it again."""

    def select(nodes: list[Node]) -> list[Node]:
        nodes = list(nodes)
        if shape.id_subtable is not None:
            if shape.id_subtable > len(nodes) or not nodes[shape.id_subtable - 1].children:
                return []  # Matomo answers an unknown subtable of a period with an empty table
            nodes = nodes[shape.id_subtable - 1].children
        if shape.flat:
            return sorted(_flatten(nodes, shape), key=_default_order)
        for rank, node in enumerate(nodes, 1):
            node.metadata["_id"] = rank
        return nodes

    selected = keep_pattern(client, f, {p: select(nodes) for p, nodes in tree.items()})
    names = ("url", "segment", *shape.dimensions)
    return f.shape(selected, lambda nodes: Table(_shaped(f, nodes or [], shape), names))


def _shaped(f: ReportFilter, nodes: list[Node], shape: Shape) -> list[dict[str, Any]]:
    # Sort, offset and limit on whole rows (a row keeps its node whatever showColumns/hideColumns
    # cut), then the columns asked for; idsubdatatable and subtable are not columns and stay.
    rows = [_row(n) for n in nodes]
    node_of = {id(r): n for r, n in zip(rows, nodes, strict=True)}
    out = []
    for row in replace(f.filters, show_columns=(), hide_columns=()).rows(rows):
        node = node_of[id(row)]
        row = f.filters.columns(row)
        if node.children:
            if shape.expanded:
                row["subtable"] = [_row_deep(c) for c in node.children]
            else:
                row["idsubdatatable"] = node.metadata["_id"]
        out.append(row)
    return out


def _row_deep(node: Node) -> dict[str, Any]:
    row = _row(node)
    if node.children:
        row["subtable"] = [_row_deep(c) for c in node.children]
    return row


def keep_pattern(client: Any, f: ReportFilter, tree: dict[str, list[Node]]) -> dict[str, list[Node]]:
    """filter_pattern on the top rows' `filter_column`, matched by ClickHouse (RE2, as the other reports)."""
    if not f.filters.pattern:
        return tree
    column = f.filters.pattern_column
    out = {}
    for period, nodes in tree.items():
        values = [str(({"label": n.label, **n.columns, **n.metadata}).get(column, "")) for n in nodes]
        if not values:
            out[period] = nodes
            continue
        kept = client.query("SELECT arrayMap(x -> match(x, {pattern:String}), {values:Array(String)})",
                            parameters={"pattern": f.filters.regex, "values": values}).result_rows[0][0]
        out[period] = [n for n, k in zip(nodes, kept, strict=True) if k]
    return out


# --- the methods


# The dimension each Actions report's flat rows name (Matomo's Columns/*.php).
_PAGE_DIMENSIONS = {(False, None): "Actions_PageUrl", (True, None): "Actions_PageTitle",
                    (False, "entry"): "Actions_EntryPageUrl", (True, "entry"): "Actions_EntryPageTitle",
                    (False, "exit"): "Actions_ExitPageUrl", (True, "exit"): "Actions_ExitPageTitle"}


def _flat_url(label: str) -> str:
    """Matomo's flat page URL (API::getPageUrls, DataTable/Filter/Actions): '/' first, and a
    folder's own page ends in '/' rather than '/index' ('/' for the site's root)."""
    if label == PAGE_URL_NOT_DEFINED:
        return label
    label = label if label.startswith("/") else "/" + label
    return label[: -len("index")] if label.endswith("/index") else label


def _pages(client: Any, f: ReportFilter, params: Mapping[str, str], *, titles: bool, only: str | None = None) -> Any:
    shape = Shape.parse(params, separator="", segments_when_flat=True,
                        dimensions=(_PAGE_DIMENSIONS[(titles, only)],), flat_label=None if titles else _flat_url)
    stats = page_stats(client, f, "title" if titles else URL_LABEL)
    day = f.periods.period == "day"
    tree = {p: page_tree(s, day, titles=titles) for p, s in stats.items()}
    if only is not None:
        column = f"{only}_nb_visits"
        tree = {p: _prune(nodes, lambda n: column in n.columns) for p, nodes in tree.items()}
    return answer(client, f, tree, shape)


def _prune(nodes: list[Node], keep: Callable[[Node], bool]) -> list[Node]:
    """Matomo's filterNonEntryActions/filterNonExitActions: rows lacking the column go, folders
    whose subtable ends up empty too; what stays keeps its columns (nothing is summed again)."""
    out = []
    for n in nodes:
        if n.children:
            n.children = _prune(n.children, keep)
            if not n.children:
                continue
        if keep(n):
            out.append(n)
    return out


def _links(client: Any, f: ReportFilter, params: Mapping[str, str], action: str) -> Any:
    dimension = "Actions_DownloadUrl" if action == "download" else "Actions_ClickedUrl"
    shape = Shape.parse(params, separator="", segments_when_flat=True, dimensions=(dimension,))
    return answer(client, f, link_tree(client, f, action), shape)


def _keywords(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    stats = page_stats(client, f, URL_LABEL)
    return answer(client, f, {p: keyword_rows(s) for p, s in stats.items()}, Shape())


def _events(report: str) -> Callable[[Any, ReportFilter, Mapping[str, str]], Any]:
    def handler(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
        secondary = params.get("secondaryDimension", "").strip()
        allowed = EVENT_REPORTS[report][1]
        if secondary and secondary not in allowed:
            raise _error(f"Secondary dimension '{secondary}' is not valid for the API {report}. "
                         f"Use one of: {', '.join(allowed)}")
        secondary = secondary or allowed[0]
        dimensions = tuple(f"Events_{d[0].upper()}{d[1:]}" for d in (EVENT_REPORTS[report][0], secondary))
        shape = Shape.parse(params, dimensions=dimensions)
        return answer(client, f, event_tree(client, f, report, secondary), shape)

    return handler


def _event_subtable(method: str) -> Callable[[Any, ReportFilter, Mapping[str, str]], Any]:
    report, secondary = EVENT_SUBTABLES[method]

    def handler(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
        shape = Shape.parse(params)
        if shape.id_subtable is None:
            raise _error("Please specify a value for 'idSubtable'.")
        return answer(client, f, event_tree(client, f, report, secondary), Shape(id_subtable=shape.id_subtable))

    return handler


ACTIONS_GET = ("nb_pageviews", "nb_uniq_pageviews", "nb_downloads", "nb_uniq_downloads", "nb_outlinks",
               "nb_uniq_outlinks", "nb_searches", "nb_keywords")


def actions_get(client: Any, f: ReportFilter) -> dict[str, dict[str, int]]:
    """Actions.get: sums over the pages, downloads, outlinks and keywords tables, as Matomo's
    archiver takes them (unique = distinct visits per row, summed; keywords: per day, summed)."""
    sql = f"""
WITH hv AS ({_hits_sql(f, f"if(action = 'search', search_keyword, if(action = 'pageview', {URL_LABEL}, url))",
                      "action IN ('pageview', 'download', 'outlink', 'search')")})
SELECT toDate({f.bucket('d')}) AS bucket,
  countIf(action = 'pageview'), uniqExactIf((visit_id, label), action = 'pageview'),
  countIf(action = 'download' AND {LOOKS_LIKE_URL}),
  uniqExactIf((visit_id, label), action = 'download' AND {LOOKS_LIKE_URL}),
  countIf(action = 'outlink' AND {LOOKS_LIKE_URL}), uniqExactIf((visit_id, label), action = 'outlink' AND {LOOKS_LIKE_URL}),
  countIf(action = 'search'), uniqExactIf((label, d), action = 'search')
FROM hv GROUP BY bucket"""
    return {period: dict(zip(ACTIONS_GET, (int(v) for v in rows[0]), strict=True))
            for period, rows in _by_label(f, _query(client, f, sql)).items()}


def _actions_get(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    zeros = dict.fromkeys(ACTIONS_GET, 0)  # Matomo answers an empty period with zeros
    return f.shape(actions_get(client, f), lambda v: Simple(f.filters.columns(v or zeros)))


Handler = Callable[[Any, ReportFilter, Mapping[str, str], Mapping[int, str] | None], Any]

METHODS: dict[str, Handler] = {
    "Actions.get": lambda c, f, p, s: _actions_get(c, f, p),
    "Actions.getPageUrls": lambda c, f, p, s: _pages(c, f, p, titles=False),
    "Actions.getPageTitles": lambda c, f, p, s: _pages(c, f, p, titles=True),
    "Actions.getEntryPageUrls": lambda c, f, p, s: _pages(c, f, p, titles=False, only="entry"),
    "Actions.getExitPageUrls": lambda c, f, p, s: _pages(c, f, p, titles=False, only="exit"),
    "Actions.getEntryPageTitles": lambda c, f, p, s: _pages(c, f, p, titles=True, only="entry"),
    "Actions.getExitPageTitles": lambda c, f, p, s: _pages(c, f, p, titles=True, only="exit"),
    "Actions.getDownloads": lambda c, f, p, s: _links(c, f, p, "download"),
    "Actions.getOutlinks": lambda c, f, p, s: _links(c, f, p, "outlink"),
    "Actions.getSiteSearchKeywords": lambda c, f, p, s: _keywords(c, f, p),
    **{f"Events.{name}": (lambda h: lambda c, f, p, s: h(c, f, p))(_events(name)) for name in EVENT_REPORTS},
    **{f"Events.{name}": (lambda h: lambda c, f, p, s: h(c, f, p))(_event_subtable(name)) for name in EVENT_SUBTABLES},
}
