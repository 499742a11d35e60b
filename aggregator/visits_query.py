"""The SQL that turns one day of dnma.hits into visits (VISITS.md rules), in two formulations:
prefix scans over one sorted array per visitor-day (production) and window functions (cross-check).

Both read the day as the query parameter `{day:Date}` and return the columns of `visits` in order.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aggregator.ddl import Renderer
from aggregator.migrations.m0003_visits import VISIT_COLUMN_NAMES
from dnma.hits import HIT_COLUMNS
from dnma.vocab import COUNTED_ACTIONS

PARIS = "Europe/Paris"
VISIT_GAP_S = 1800  # 30 minutes: a gap of 1799 s continues the visit, 1800 s starts a new one
INVALID_FLAG = "invalid_uai"  # INDICATORS.md: hits flagged invalid are excluded from indicators

# The hit fields a visit needs, in sort order: time, pings last, then the content hash so that
# hits of the same second always sort the same way whatever order they were inserted in.
HIT_TUPLE: tuple[tuple[str, str, str], ...] = (
    ("ts", "UInt32", "toUInt32(ts)"),
    ("ping", "UInt8", "action = 'ping'"),
    ("h", "UInt64", "{content_hash}"),
    ("new_visit", "UInt8", "new_visit"),
    ("campaign", "String", "campaign"),
    # 1..5 = pageview, download, outlink, search, event (COUNTED_ACTIONS order); 0 = not an action
    ("kind", "UInt8", "indexOf({counted}, action)"),
    ("uai", "String", "uai"),
    ("profil", "String", "profil"),
    ("device", "String", "device"),
    ("os", "String", "os"),
    ("browser", "String", "browser"),
    ("projet", "String", "projet"),
    ("service", "String", "service"),
    ("outil", "String", "outil"),
    ("type", "String", "type"),
    ("user_hash", "UInt64", "user_hash"),
)
KIND = {action: i + 1 for i, action in enumerate(COUNTED_ACTIONS)}

# From the referential when the visit is built: (visits column, dictionary attribute).
REFERENTIAL: tuple[tuple[str, str], ...] = (
    ("degre", "degre"),
    ("academie", "academie"),
    ("departement", "departement"),
    ("region", "region"),
    ("nature", "libelle_nature"),
    ("secteur", "secteur"),
)


def content_hash() -> str:
    """A hash of everything a hit says, except when it was received (a late re-import of the
    same hit must sort and identify exactly as the original)."""
    parts = []
    for name, ch_type, _ in HIT_COLUMNS:
        if name == "received_at":
            continue
        if ch_type.startswith("Nullable"):
            # cityHash64 of a NULL is NULL: hash presence and value separately.
            parts.append(f"isNull(`{name}`), ifNull(`{name}`, 0)")
        else:
            parts.append(f"`{name}`")
    return f"cityHash64({', '.join(parts)})"


def fingerprint_hash() -> str:
    """Cheap per-hit hash summed per day to detect change: the key columns, no long strings."""
    return "cityHash64(site_id, visitor_id, ts, action, new_visit, campaign, uai, service, profil, flags)"


def checked_timezones(timezones: dict[int, str]) -> dict[int, str]:
    """Site -> IANA time zone for sites not in Europe/Paris; names are checked before they reach SQL."""
    out = {}
    for site_id, tz in timezones.items():
        ZoneInfo(tz)  # raises on an unknown name
        if "'" in tz or "\\" in tz:
            raise ValueError(f"bad time zone {tz!r}")
        if tz != PARIS:
            out[int(site_id)] = tz
    return out


def local_day(timezones: dict[int, str]) -> str:
    """The hit's day in its site's time zone; plain toDate(ts) (a sort-key prefix) when all are Paris."""
    tzs = checked_timezones(timezones)
    if not tzs:
        return "toDate(ts)"
    by_tz: dict[str, list[int]] = {}
    for site_id, tz in sorted(tzs.items()):
        by_tz.setdefault(tz, []).append(site_id)
    branches = ", ".join(
        f"site_id IN ({', '.join(map(str, ids))}), toDate(ts, '{tz}')" for tz, ids in sorted(by_tz.items())
    )
    return f"multiIf({branches}, toDate(ts))"


def day_filter(timezones: dict[int, str]) -> str:
    """WHERE clause selecting the hits of `{day:Date}`, pruning on the Paris date of the sort key."""
    if not checked_timezones(timezones):
        return "toDate(ts) = {day:Date}"
    # Any IANA zone is within a day of Paris: read three Paris days, keep the local one.
    return f"toDate(ts) BETWEEN {{day:Date}} - 1 AND {{day:Date}} + 1 AND {local_day(timezones)} = {{day:Date}}"


def _hit_tuple() -> str:
    counted = "[" + ", ".join(f"'{a}'" for a in COUNTED_ACTIONS) + "]"
    values = ", ".join(expr.format(content_hash=content_hash(), counted=counted) for _, _, expr in HIT_TUPLE)
    ch_type = ", ".join(f"{name} {t}" for name, t, _ in HIT_TUPLE)
    return f"CAST(({values}), 'Tuple({ch_type})')"


def _referential(r: Renderer) -> str:
    dictionary = f"{r.database}.etablissements_dict"
    return ",\n  ".join(
        f"dictGetOrDefault('{dictionary}', '{attr}', tuple(uai), '') AS {col}" for col, attr in REFERENTIAL
    )


def _valid_hits(r: Renderer, timezones: dict[int, str]) -> str:
    return f"FROM {r.local_name('hits')} WHERE {day_filter(timezones)} AND NOT has(flags, '{INVALID_FLAG}')"


def array_select(r: Renderer, timezones: dict[int, str]) -> str:
    """Visits of `{day:Date}`: one GROUP BY (site, day, visitor), then prefix scans over the sorted hits.

    Pings are kept only while a visit is live: within a run of hits separated by < 1800 s (a "gap
    segment"), the hits before the segment's first non-ping are dropped pings, the rest is kept.
    A kept non-ping starts a visit when it is the segment's first non-ping, has new_visit=1, or
    carries a non-empty campaign different from the last campaign seen since the previous forced
    start (that last campaign is the running visit's campaign).
    """
    g = VISIT_GAP_S
    return f"""
SELECT
  cityHash64(site_id, visitor_id, v[1].ts, v[1].h) AS visit_id,
  site_id,
  day,
  toDateTime(v[1].ts, '{PARIS}') AS start,
  toDateTime(v[-1].ts, '{PARIS}') AS `end`,
  toUInt32(v[-1].ts - v[1].ts + 1) AS duration,
  toUInt32(arrayCount(k -> k > 0, v.kind)) AS actions,
  toUInt32(countEqual(v.kind, {KIND['pageview']})) AS pageviews,
  toUInt32(countEqual(v.kind, {KIND['event']})) AS events,
  toUInt32(countEqual(v.kind, {KIND['download']})) AS downloads,
  toUInt32(countEqual(v.kind, {KIND['outlink']})) AS outlinks,
  toUInt32(countEqual(v.kind, {KIND['search']})) AS searches,
  toUInt32(length(v)) AS hits,
  toUInt8(actions <= 1) AS is_bounce,
  visitor_id,
  arrayFirst(u -> u != 0, v.user_hash) AS user_hash,
  arrayFirst(x -> x != '', v.uai) AS uai,
  arrayFirst(x -> x != '', v.profil) AS profil,
  arrayFirst(x -> x != '', v.device) AS device,
  arrayFirst(x -> x != '', v.os) AS os,
  arrayFirst(x -> x != '', v.browser) AS browser,
  arraySort(arrayDistinct(arrayFilter(x -> x != '', v.service))) AS services,
  arraySort(arrayDistinct(arrayFilter(x -> x != '', v.outil))) AS outils,
  toUInt8(has(v.type, 'NATIF')) AS type_natif,
  toUInt8(has(v.type, 'TIERS')) AS type_tiers,
  arrayFirst(x -> x != '', v.projet) AS projet,
  v[1].campaign AS campaign,
  {_referential(r)}
FROM
(
  SELECT site_id, day, visitor_id, visits
  FROM
  (
    SELECT site_id, day, visitor_id, hs,
      hs.ts AS t,
      arrayMap(p -> 1 - p, hs.ping) AS np,
      arrayMap((d, i) -> i = 1 OR d >= {g}, arrayDifference(t), arrayEnumerate(t)) AS gap_break,
      arrayCumSum(np) AS nonpings,
      -- non-pings before the current gap segment, carried forward from each segment's first hit
      arrayFill((b, brk) -> brk, arrayMap((c, n) -> c - n, nonpings, np), gap_break) AS before_segment,
      arrayMap((c, b) -> c - b, nonpings, before_segment) AS nonpings_in_segment,
      arrayMap(c -> c > 0, nonpings_in_segment) AS kept,
      arrayMap((n, c, nv) -> n = 1 AND (c = 1 OR nv = 1), np, nonpings_in_segment, hs.new_visit) AS forced,
      -- last non-empty campaign since the forced start (a forced start sets it, even to '')
      arrayFill((cp, f) -> cp != '' OR f, arrayMap((cp, n) -> if(n = 1, cp, ''), hs.campaign, np), forced)
        AS running_campaign,
      arrayMap((f, n, cp, prev) -> f OR (n = 1 AND cp != '' AND cp != prev),
        forced, np, hs.campaign, arrayPushFront(arrayPopBack(running_campaign), '')) AS starts,
      arraySplit((x, s) -> s, arrayFilter((x, k) -> k, hs, kept), arrayFilter((s, k) -> k, starts, kept))
        AS visits
    FROM
    (
      SELECT site_id, {local_day(timezones)} AS day, visitor_id, arraySort(groupArray({_hit_tuple()})) AS hs
      {_valid_hits(r, timezones)}
      GROUP BY site_id, day, visitor_id
    )
  )
)
ARRAY JOIN visits AS v
WHERE length(v) > 0
"""


def window_select(r: Renderer, timezones: dict[int, str]) -> str:
    """The same visits with window functions over hit rows: readable, about twice the CPU."""
    g = VISIT_GAP_S
    vd = "site_id, day, visitor_id"
    order = "ORDER BY t, ping, h"
    running = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    fields = ", ".join(f"hit.{i + 1} AS {name}" for i, (name, _, _) in enumerate(HIT_TUPLE) if name != "ts")
    return f"""
SELECT
  cityHash64(site_id, visitor_id, min(t), argMin(h, (t, ping, h))) AS visit_id,
  site_id,
  day,
  toDateTime(min(t), '{PARIS}') AS start,
  toDateTime(max(t), '{PARIS}') AS `end`,
  toUInt32(max(t) - min(t) + 1) AS duration,
  toUInt32(countIf(kind > 0)) AS actions,
  toUInt32(countIf(kind = {KIND['pageview']})) AS pageviews,
  toUInt32(countIf(kind = {KIND['event']})) AS events,
  toUInt32(countIf(kind = {KIND['download']})) AS downloads,
  toUInt32(countIf(kind = {KIND['outlink']})) AS outlinks,
  toUInt32(countIf(kind = {KIND['search']})) AS searches,
  toUInt32(count()) AS hits,
  toUInt8(actions <= 1) AS is_bounce,
  visitor_id,
  argMinIf(user_hash, (t, ping, h), user_hash != 0) AS user_hash,
  argMinIf(uai, (t, ping, h), uai != '') AS uai,
  argMinIf(profil, (t, ping, h), profil != '') AS profil,
  argMinIf(device, (t, ping, h), device != '') AS device,
  argMinIf(os, (t, ping, h), os != '') AS os,
  argMinIf(browser, (t, ping, h), browser != '') AS browser,
  arraySort(groupUniqArrayIf(service, service != '')) AS services,
  arraySort(groupUniqArrayIf(outil, outil != '')) AS outils,
  toUInt8(countIf(type = 'NATIF') > 0) AS type_natif,
  toUInt8(countIf(type = 'TIERS') > 0) AS type_tiers,
  argMinIf(projet, (t, ping, h), projet != '') AS projet,
  argMin(campaign, (t, ping, h)) AS campaign,
  {_referential(r)}
FROM
(
  SELECT *, sum(start) OVER (PARTITION BY {vd} {order} {running}) AS visit_number
  FROM
  (
    SELECT *,
      forced OR (ping = 0 AND campaign != '' AND campaign != ifNull(anyLast(
        if(ping = 0 AND campaign != '', campaign, NULL)) OVER (PARTITION BY {vd}, block {order}
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), '')) AS start
    FROM
    (
      SELECT *, sum(forced) OVER (PARTITION BY {vd} {order} {running}) AS block
      FROM
      (
        SELECT *, in_segment > 0 AS kept, ping = 0 AND (in_segment = 1 OR new_visit = 1) AS forced
        FROM
        (
          SELECT *, sum(1 - ping) OVER (PARTITION BY {vd}, segment {order} {running}) AS in_segment
          FROM
          (
            SELECT *, sum(gap_break) OVER (PARTITION BY {vd} {order} {running}) AS segment
            FROM
            (
              SELECT *,
                row_number() OVER w = 1 OR t - lagInFrame(t, 1, 0) OVER w >= {g} AS gap_break
              FROM
              (
                SELECT site_id, {local_day(timezones)} AS day, visitor_id, toUInt32(ts) AS t, {fields}
                FROM (SELECT site_id, ts, visitor_id, {_hit_tuple()} AS hit {_valid_hits(r, timezones)})
              )
              WINDOW w AS (PARTITION BY {vd} {order} {running})
            )
          )
        )
      )
    )
  )
  WHERE kept
)
GROUP BY site_id, day, visitor_id, visit_number
"""


def insert_visits(r: Renderer, target: str, timezones: dict[int, str], *, windowed: bool = False) -> str:
    select = window_select(r, timezones) if windowed else array_select(r, timezones)
    columns = ", ".join(f"`{c}`" for c in VISIT_COLUMN_NAMES)
    return f"INSERT INTO {r.local_name(target)} ({columns}) SELECT {columns} FROM ({select})"


def fingerprints_select(r: Renderer, timezones: dict[int, str], where: str = "1") -> str:
    """Per site-local day: hit count and a summed hash, invalid hits included (they may turn valid)."""
    return (
        f"SELECT {local_day(timezones)} AS day, count() AS hits, sum({fingerprint_hash()}) AS hash "
        f"FROM {r.local_name('hits')} WHERE {where} GROUP BY day"
    )
