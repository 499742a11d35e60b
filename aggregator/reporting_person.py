"""The reporting API's per-person and campaign reports: UserId.getUsers, Live.getLastVisitsDetails,
Referrers.getCampaigns. Following a person and measuring campaigns sit badly with the CNIL consent
exemption DNMA relies on, so the collector's reporting routes answer them (and the userId segment)
to the super user only, on sites that turn them on (`per_person_reports: true` in the sites YAML);
these queries assume that check was made.

Ids are pseudonymous only: a user is the hex of the uid's hash (`user_hash`, what hits keep of the
uid), a visitor the hex of its daily-salted visitor id. `visits` holds no IP and no raw uid, and
nothing here reads `hits`' other columns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aggregator.reporting_actions import ReportFilter, Shape, answer
from aggregator.reporting_referrers import CAMPAIGN, _subrows, _with_metadata, groups
from aggregator.rollups import inline_dates
from dnma.datatable import Table

# Live.getLastVisitsDetails answers at most this many visits (filter_limit's default page otherwise).
LIVE_MAX = 1000


def _rows(client: Any, f: ReportFilter, sql: str) -> list[tuple[Any, ...]]:
    if f.beyond_storage:
        return []
    parameters = f.parameters
    return list(client.query(inline_dates(sql, parameters), parameters=parameters).result_rows)


def matching(client: Any, f: ReportFilter, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """filter_pattern on the rows' `filter_column`, matched by ClickHouse (RE2, as the other reports;
    a column a row lacks is the empty string)."""
    if not f.filters.pattern or not rows:
        return rows
    values = [str(r.get(f.filters.pattern_column, "")) for r in rows]
    kept = client.query("SELECT arrayMap(x -> match(x, {pattern:String}), {values:Array(String)})",
                        parameters={"pattern": f.filters.regex, "values": values}).result_rows[0][0]
    return [r for r, k in zip(rows, kept, strict=True) if k]


def users(client: Any, f: ReportFilter) -> Any:
    """UserId.getUsers: one row per pseudonymous user id and period, most visits first."""
    sql = f"""
SELECT {f.bucket('day')} AS bucket, lower(hex(user_hash)) AS label, count() AS nb_visits,
  sum(actions) AS nb_actions, sum(duration) AS sum_visit_length, max(actions) AS max_actions,
  countIf(is_bounce = 1) AS bounce_count, lower(hex(argMax(visitor_id, start))) AS idvisitor,
  toUnixTimestamp(max(`end`)) AS last_visit_time
FROM {f.database}.visits
WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}} AND user_hash != 0
  {f.visits_where}
GROUP BY bucket, label
ORDER BY bucket, nb_visits DESC, label"""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(client, f, sql):
        label, visits, actions, length, most, bounces, visitor, last = row[1:]
        by_label.setdefault(f.label_of(row[0]), []).append({
            "label": label, "nb_visits": int(visits), "nb_actions": int(actions), "nb_visits_converted": 0,
            "sum_visit_length": int(length), "max_actions": int(most), "bounce_count": int(bounces),
            "idvisitor": visitor, "last_visit_time": int(last)})
    return f.shape(by_label, lambda rows: Table(f.filters.rows(matching(client, f, rows or [])), ("idvisitor",)))


def last_visits(client: Any, f: ReportFilter) -> Any:
    """Live.getLastVisitsDetails: the period's visits, latest first (one list whatever the period,
    as Matomo's Visits Log). filter_limit (default 100, at most 1000) and filter_offset page it."""
    limit = LIVE_MAX if f.filters.limit is None else min(f.filters.limit, LIVE_MAX)
    offset = min(f.filters.offset, 100_000)
    sql = f"""
SELECT site_id, visit_id, lower(hex(visitor_id)), if(user_hash = 0, '', lower(hex(user_hash))),
  day, toUnixTimestamp(start), toUnixTimestamp(`end`), duration, actions, pageviews, events, downloads,
  outlinks, searches, device, os, browser, uai, profil, projet
FROM {f.database}.visits
WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}
ORDER BY start DESC, visit_id DESC
LIMIT {int(limit)} OFFSET {int(offset)}"""
    out = []
    for (site, visit, visitor, user, day, first, last, duration, actions, pageviews, events, downloads,
         outlinks, searches, device, os, browser, uai, profil, projet) in _rows(client, f, sql):
        out.append({
            "idSite": int(site), "idVisit": str(visit), "visitorId": visitor, "userId": user or None,
            "serverDate": day.isoformat(), "firstActionTimestamp": int(first), "lastActionTimestamp": int(last),
            "visitDuration": int(duration), "actions": int(actions), "pageviews": int(pageviews),
            "events": int(events), "downloads": int(downloads), "outlinks": int(outlinks),
            "searches": int(searches), "deviceType": device, "operatingSystem": os, "browser": browser,
            "uai": uai, "profil": profil, "projet": projet,
        })
    return Table([f.filters.columns(r) for r in matching(client, f, out)])


def campaigns(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    """Referrers.getCampaigns: the visits' campaigns (lower-cased names), most visits first."""
    names = groups(client, f, ("rtype", "rname"))
    tree = {period: rows for period, found in names.items() if (rows := _subrows(f, CAMPAIGN, found))}
    return _with_metadata(answer(client, f, tree, Shape.parse(params)), ("segment",))


Handler = Callable[[Any, ReportFilter, Mapping[str, str], Mapping[int, str] | None], Any]

METHODS: dict[str, Handler] = {
    "UserId.getUsers": lambda c, f, p, s: users(c, f),
    "Live.getLastVisitsDetails": lambda c, f, p, s: last_visits(c, f),
    "Referrers.getCampaigns": lambda c, f, p, s: campaigns(c, f, p),
}
PER_PERSON_METHODS = frozenset(METHODS)
