"""The SQL that turns one day of dnma.hits into visits (VISITS.md rules), in two formulations:
prefix scans over one sorted array per visitor-day (production) and window functions (cross-check).

Both read the day as the query parameter `{day:Date}` and return the columns of `visits` in order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from aggregator.ddl import Renderer
from aggregator.migrations.m0003_visits import VISIT_COLUMN_NAMES
from aggregator.referentiel import ref_sql, year_sql
from dnma import clock
from dnma.vocab import COUNTED_ACTIONS

PARIS_ZONE_NAME = clock.PARIS.key  # the zone name, for SQL
VISIT_GAP_S = 1800  # 30 minutes: a gap of 1799 s continues the visit, 1800 s starts a new one
INVALID_FLAG = "invalid_uai"  # INDICATORS.md: hits flagged invalid are excluded from indicators

# Visit-relevant content of a hit: what a visit reads from it. Two hits of the same second equal
# on all of these are interchangeable for visits, so hashing them (not url, title...) is enough to
# make same-second ordering deterministic whatever the insert order.
CONTENT_COLUMNS: tuple[str, ...] = (
    "action", "new_visit", "campaign", "uai", "service", "type", "outil", "profil", "projet",
    "device", "os", "browser", "user_hash",
)

# String columns carried through the visitor-day arrays as codes: the rank of the value among the
# day's sorted distinct values (0 = ''). Ranks preserve string order: sorting codes sorts strings.
CODED: tuple[str, ...] = ("campaign", "uai", "profil", "device", "os", "browser", "projet", "service", "outil")
FIRST_VALUE: tuple[str, ...] = ("uai", "profil", "device", "os", "browser", "projet")  # first non-empty
VALUE_SETS: tuple[str, ...] = ("service", "outil")  # every value touched, sorted

# A hit travels as a tuple of unsigned integers ("words") holding bit fields: (field, lowest bit,
# width). The first word's numeric order is the visit order (time, pings last, content hash), so
# sorting the tuples by their first word sorts the hits: two hits with equal first words have the
# same content hash, hence equal visit-relevant content and equal other words; their order is moot.
# No string is copied per hit (that was the main cost).
LAYOUT: tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...] = (
    # kind: 1..5 = pageview, download, outlink, search, event (COUNTED_ACTIONS order); 0 = not an action
    ("UInt128", (("ts", 96, 32), ("ping", 95, 1), ("h", 31, 64), ("kind", 0, 3), ("new_visit", 3, 1),
                 ("natif", 4, 1), ("tiers", 5, 1))),
    ("UInt64", (("user_hash", 0, 64),)),
    ("UInt64", (("campaign", 0, 32), ("uai", 32, 32))),
    ("UInt64", (("profil", 0, 32), ("device", 32, 32))),
    ("UInt64", (("os", 0, 32), ("browser", 32, 32))),
    ("UInt64", (("projet", 0, 32), ("service", 32, 32))),
    ("UInt32", (("outil", 0, 32),)),
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
    """The tie-break hash of a hit: its visit-relevant content (never when it was received, so a
    late re-import sorts and identifies exactly as the original).

    A weighted sum of one hash per column rather than one cityHash64 of them all: on a
    LowCardinality column cityHash64 runs once per distinct value, not once per hit."""
    terms = [f"cityHash64({c}) * {(0x9E3779B97F4A7C15 * (2 * i + 1)) % (1 << 64) | 1}"
             for i, c in enumerate(CONTENT_COLUMNS)]
    return "(" + " + ".join(terms) + ")"


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
        if tz != PARIS_ZONE_NAME:
            out[int(site_id)] = tz
    return out


def local_day(timezones: dict[int, str], column: str = "ts") -> str:
    """The hit's day in its site's time zone; plain toDate(ts) (a sort-key prefix) when all are Paris."""
    tzs = checked_timezones(timezones)
    if not tzs:
        return f"toDate({column})"
    by_tz: dict[str, list[int]] = {}
    for site_id, tz in sorted(tzs.items()):
        by_tz.setdefault(tz, []).append(site_id)
    branches = ", ".join(
        f"site_id IN ({', '.join(map(str, ids))}), toDate({column}, '{tz}')" for tz, ids in sorted(by_tz.items())
    )
    return f"multiIf({branches}, toDate({column}))"


def whole_hour_offset(tz: str) -> bool:
    """Whether the zone's UTC offset is a whole number of hours at every instant of 2000-2040:
    then no hour straddles a local midnight and a local day is a sum of hours."""
    zone = ZoneInfo(tz)
    instants = (datetime(year, month, 1, tzinfo=UTC) for year in range(2000, 2041) for month in range(1, 13))
    return all(int(i.astimezone(zone).utcoffset().total_seconds()) % 3600 == 0  # type: ignore[union-attr]
               for i in instants)


def day_filter(timezones: dict[int, str]) -> str:
    """WHERE clause selecting the hits of `{day:Date}`, pruning on the Paris date of the sort key."""
    if not checked_timezones(timezones):
        return "toDate(ts) = {day:Date}"
    # Any IANA zone is within a day of Paris: read three Paris days, keep the local one.
    return f"toDate(ts) BETWEEN {{day:Date}} - 1 AND {{day:Date}} + 1 AND {local_day(timezones)} = {{day:Date}}"


def _counted() -> str:
    return "[" + ", ".join(f"'{a}'" for a in COUNTED_ACTIONS) + "]"


def _valid_hits(r: Renderer, timezones: dict[int, str], only: str = "") -> str:
    extra = f" AND {only}" if only else ""
    return f"FROM {r.local_name('hits')} WHERE {day_filter(timezones)} AND NOT has(flags, '{INVALID_FLAG}'){extra}"


def _where(field: str) -> tuple[int, int, int]:
    """(word number from 1, lowest bit, width) of a field of LAYOUT."""
    for i, (_, fields) in enumerate(LAYOUT):
        for name, low, width in fields:
            if name == field:
                return i + 1, low, width
    raise KeyError(field)


def _get(field: str, hit: str) -> str:
    """A field of a hit tuple `hit` (LAYOUT), as the smallest fitting UInt type."""
    word, low, width = _where(field)
    ch_type = "UInt8" if width <= 8 else "UInt32" if width <= 32 else "UInt64"
    value = f"{hit}.{word}"
    if low:
        value = f"bitShiftRight({value}, {low})"
    if low + width < int(LAYOUT[word - 1][0][4:]):
        value = f"bitAnd({value}, {(1 << width) - 1})"
    return f"to{ch_type}({value})"


def _hit_values() -> dict[str, str]:
    """Each LAYOUT field of a hits row (`dd`: the day's dictionary, see _dictionary)."""
    values = {
        "ts": "toUInt32(ts)",
        "ping": "action = 'ping'",
        "h": content_hash(),
        "kind": f"indexOf({_counted()}, action)",
        "new_visit": "new_visit != 0",
        "natif": "type = 'NATIF'",
        "tiers": "type = 'TIERS'",
        "user_hash": "user_hash",
    }
    for i, name in enumerate(CODED):
        v = f"dd.{i + 1}"
        values[name] = f"transform({name}, {v}, range(toUInt32(length({v}))), toUInt32(0))"
    return values


def _words() -> list[str]:
    """groupArray of each LAYOUT word of the rows, the fields shifted into place."""
    values = _hit_values()
    out = []
    for ch_type, fields in LAYOUT:
        parts = [f"bitShiftLeft(to{ch_type}({values[n]}), {low})" if low else f"to{ch_type}({values[n]})"
                 for n, low, _ in fields]
        word = parts[0]
        for part in parts[1:]:  # disjoint bit fields; bitOr takes two arguments
            word = f"bitOr({word}, {part})"
        out.append(f"groupArray({word})")
    return out


def _dictionary(r: Renderer, timezones: dict[int, str], only: str = "") -> str:
    """Scalar subquery `dd`: per coded column the day's sorted distinct values ('' first), then the
    referential attributes of each UAI of the day (one dictionary lookup per UAI, not per visit).

    One scan with a grouping set per column: grouping by a single LowCardinality column works on
    its dictionary positions, where groupUniqArray over the rows would hash every value of every
    hit (bench/README.md). `grouping(...)` has a 0 bit for the column a row groups."""
    n = len(CODED)
    values = ", ".join(
        f"arrayConcat([''], arraySort(groupArrayIf(toString({c}), _set = {((1 << n) - 1) ^ (1 << (n - 1 - i))} "
        f"AND {c} != ''))) AS v_{c}"
        for i, c in enumerate(CODED)
    )
    sets = ", ".join(f"({c})" for c in CODED)
    distinct = (f"SELECT {', '.join(CODED)}, grouping({', '.join(CODED)}) AS _set {_valid_hits(r, timezones, only)} "
                f"GROUP BY GROUPING SETS ({sets})")
    # The referential of the day's school year (else the loaded year nearest to it), so a day
    # rebuilt later keeps the labels of its own year.
    year = year_sql(r.database, "{day:Date}")
    referential = ", ".join(
        f"arrayMap(u -> toString({ref_sql(r.database, attr, year, 'u')}), v_uai)" for _, attr in REFERENTIAL
    )
    columns = ", ".join(f"v_{c}" for c in CODED)
    return f"(SELECT tuple({columns}, {referential}) FROM (SELECT {values} FROM ({distinct})))"


def array_select(r: Renderer, timezones: dict[int, str], only: str = "") -> str:
    """Visits of `{day:Date}`: one GROUP BY (site, day, visitor), then prefix scans over the sorted hits.
    `only`: a condition on hits keeping whole visitor-days (e.g. `site_id IN (...)`).

    Each hit travels as a tuple of integers (LAYOUT): no string is copied per hit, a visit decodes
    the codes it needs from the day's dictionary `dd`.

    Pings are kept only while a visit is live: within a run of hits separated by < 1800 s (a "gap
    segment"), the hits before the segment's first non-ping are dropped pings, the rest is kept.
    A kept non-ping starts a visit when it is the segment's first non-ping, has new_visit=1, or
    carries a non-empty campaign different from the last campaign seen since the previous forced
    start (that last campaign is the running visit's campaign).
    """
    g = VISIT_GAP_S
    n_coded = len(CODED)

    def decode(column: str, code: str) -> str:
        return f"dd.{CODED.index(column) + 1}[{code} + 1]"

    def first(column: str) -> str:
        return f"arrayFirst(c -> c != 0, arrayMap(x -> {_get(column, 'x')}, v))"

    first_values = ",\n  ".join(f"{decode(c, first(c))} AS {c}" for c in FIRST_VALUE)
    value_sets = ",\n  ".join(
        f"arrayMap(c -> {decode(c, 'c')}, arraySort(arrayDistinct(arrayFilter(c -> c != 0, "
        f"arrayMap(x -> {_get(c, 'x')}, v))))) AS {c}s"
        for c in VALUE_SETS
    )
    referential = ",\n  ".join(
        f"dd.{n_coded + i + 1}[uai_code + 1] AS {col}" for i, (col, _) in enumerate(REFERENTIAL)
    )
    columns = ", ".join(f"`{c}`" for c in VISIT_COLUMN_NAMES)
    return f"""
SELECT {columns} FROM (
WITH {_dictionary(r, timezones, only)} AS dd
SELECT
  cityHash64(site_id, visitor_id, start_ts, {_get('h', 'v[1]')}) AS visit_id,
  site_id,
  day,
  toUInt32({_get('ts', 'v[1]')}) AS start_ts,
  toDateTime(start_ts, '{PARIS_ZONE_NAME}') AS start,
  toDateTime({_get('ts', 'v[-1]')}, '{PARIS_ZONE_NAME}') AS `end`,
  toUInt32({_get('ts', 'v[-1]')} - start_ts + 1) AS duration,
  arrayMap(x -> {_get('kind', 'x')}, v) AS kinds,
  toUInt32(arrayCount(k -> k > 0, kinds)) AS actions,
  toUInt32(countEqual(kinds, {KIND['pageview']})) AS pageviews,
  toUInt32(countEqual(kinds, {KIND['event']})) AS events,
  toUInt32(countEqual(kinds, {KIND['download']})) AS downloads,
  toUInt32(countEqual(kinds, {KIND['outlink']})) AS outlinks,
  toUInt32(countEqual(kinds, {KIND['search']})) AS searches,
  toUInt32(length(v)) AS hits,
  toUInt8(actions <= 1) AS is_bounce,
  visitor_id,
  arrayFirst(u -> u != 0, arrayMap(x -> {_get('user_hash', 'x')}, v)) AS user_hash,
  arrayFirst(c -> c != 0, arrayMap(x -> {_get('uai', 'x')}, v)) AS uai_code,
  {first_values},
  {value_sets},
  toUInt8(arrayExists(x -> {_get('natif', 'x')} = 1, v)) AS type_natif,
  toUInt8(arrayExists(x -> {_get('tiers', 'x')} = 1, v)) AS type_tiers,
  {decode('campaign', _get('campaign', 'v[1]'))} AS campaign,
  {referential}
FROM
(
  SELECT site_id, day, visitor_id, visits
  FROM
  (
    SELECT site_id, day, visitor_id, hs,
      arrayMap(x -> {_get('ts', 'x')}, hs) AS t,
      arrayMap(x -> 1 - {_get('ping', 'x')}, hs) AS np,
      arrayMap(x -> {_get('campaign', 'x')}, hs) AS cp,
      arrayMap((d, i) -> i = 1 OR d >= {g}, arrayDifference(t), arrayEnumerate(t)) AS gap_break,
      arrayCumSum(np) AS nonpings,
      -- non-pings before the current gap segment, carried forward from each segment's first hit
      arrayFill((b, brk) -> brk, arrayMap((c, n) -> c - n, nonpings, np), gap_break) AS before_segment,
      arrayMap((c, b) -> c - b, nonpings, before_segment) AS nonpings_in_segment,
      arrayMap(c -> c > 0, nonpings_in_segment) AS kept,
      arrayMap((n, c, x) -> n = 1 AND (c = 1 OR {_get('new_visit', 'x')} = 1), np, nonpings_in_segment, hs)
        AS forced,
      -- last non-empty campaign since the forced start (a forced start sets it, even to ''; code 0 = '')
      arrayFill((c, f) -> c != 0 OR f, arrayMap((c, n) -> if(n = 1, c, 0), cp, np), forced) AS running_campaign,
      arrayMap((f, n, c, prev) -> f OR (n = 1 AND c != 0 AND c != prev),
        forced, np, cp, arrayPushFront(arrayPopBack(running_campaign), 0)) AS starts,
      arraySplit((x, s) -> s, arrayFilter((x, k) -> k, hs, kept), arrayFilter((s, k) -> k, starts, kept))
        AS visits
    FROM
    (
      SELECT site_id, {local_day(timezones)} AS day, visitor_id,
        arraySort(x -> x.1, arrayZip({', '.join(_words())})) AS hs
      {_valid_hits(r, timezones, only)}
      GROUP BY site_id, day, visitor_id
    )
  )
)
ARRAY JOIN visits AS v
WHERE length(v) > 0
)
"""


# The hit fields of the window-function cross-check, one row per hit.
HIT_TUPLE: tuple[tuple[str, str, str], ...] = (
    ("ts", "UInt32", "toUInt32(ts)"),
    ("ping", "UInt8", "action = 'ping'"),
    ("h", "UInt64", "{content_hash}"),
    ("new_visit", "UInt8", "new_visit"),
    ("campaign", "String", "campaign"),
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


def _hit_tuple() -> str:
    values = ", ".join(expr.format(content_hash=content_hash(), counted=_counted()) for _, _, expr in HIT_TUPLE)
    ch_type = ", ".join(f"{name} {t}" for name, t, _ in HIT_TUPLE)
    return f"CAST(({values}), 'Tuple({ch_type})')"


def _referential(r: Renderer) -> str:
    year = year_sql(r.database, "{day:Date}")
    return ",\n  ".join(f"{ref_sql(r.database, attr, year, 'uai')} AS {col}" for col, attr in REFERENTIAL)


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
  toDateTime(min(t), '{PARIS_ZONE_NAME}') AS start,
  toDateTime(max(t), '{PARIS_ZONE_NAME}') AS `end`,
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


def fingerprint_rollup_select(r: Renderer) -> str:
    """Rows of `hits_fingerprints` (migration m0005): per Paris hour and site, hits and summed hash."""
    return (
        f"SELECT toStartOfHour(ts) AS hour, site_id, count() AS hits, sum({fingerprint_hash()}) AS hash "
        f"FROM {r.local_name('hits')} GROUP BY hour, site_id"
    )


def site_days_select(r: Renderer, timezones: dict[int, str], paris_days: tuple[date, date] | None = None) -> str:
    """Per (site-local day, site): hit count and a summed hash, invalid hits included (they may
    turn valid). Compared with those stored at a day's last build, they tell which days are dirty
    (fingerprints_select sums them per day) and which of their sites changed, so that only those
    are rebuilt (aggregator.sessionizer).

    Read from the hourly `hits_fingerprints`, except for sites in a zone with a fractional offset,
    whose hits are scanned. `paris_days`: only the Paris days in this range (inclusive)."""
    tzs = checked_timezones(timezones)
    fractional = sorted(site for site, tz in tzs.items() if not whole_hour_offset(tz))
    whole = {site: tz for site, tz in tzs.items() if site not in fractional}

    def within(column: str) -> str:
        return "1" if paris_days is None else f"toDate({column}) BETWEEN '{paris_days[0]}' AND '{paris_days[1]}'"

    hourly = (
        f"SELECT {local_day(whole, 'hour')} AS day, site_id, sum(hits) AS hits, sum(hash) AS hash "
        f"FROM {r.local_name('hits_fingerprints')} WHERE {within('hour')}"
    )
    if not fractional:
        return hourly + " GROUP BY day, site_id"
    sites = ", ".join(map(str, fractional))
    scanned = (
        f"SELECT {local_day(tzs)} AS day, site_id, count() AS hits, sum({fingerprint_hash()}) AS hash "
        f"FROM {r.local_name('hits')} WHERE {within('ts')} AND site_id IN ({sites}) GROUP BY day, site_id"
    )
    return f"{hourly} AND site_id NOT IN ({sites}) GROUP BY day, site_id UNION ALL {scanned}"


def fingerprints_select(r: Renderer, timezones: dict[int, str], paris_days: tuple[date, date] | None = None) -> str:
    """Per site-local day: hit count and summed hash (site_days_select summed over the sites)."""
    return (f"SELECT day, sum(hits) AS hits, sum(hash) AS hash FROM ({site_days_select(r, timezones, paris_days)}) "
            "GROUP BY day")
