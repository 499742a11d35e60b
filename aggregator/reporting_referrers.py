"""Matomo's Referrers reports (plugins/Referrers: getReferrerType, getAll, getWebsites,
getSearchEngines) over what DNMA collects: each visit's referrer is its first hit's (the tracker's
`urlref`, else the Referer header), classified as Matomo's tracker does, in this order:

- a campaign (the visit's `campaign`): Campaigns (6), named by the campaign, lower-cased;
- no referrer, or one on the host of the visit's first page: Direct Entry (1);
- a host of the search engines below: Search Engines (2), the keyword read from the engine's
  parameter, lower-cased ("Keyword not defined" when the engine sends none, as most do now);
- a host of the social networks below: Social Networks (7);
- any other host: Websites (3), named by the host, lower-cased (www. kept, as Matomo).

DNMA knows the main engines and networks only, not Matomo's whole list (its
searchengine-and-social-list): a referrer from another engine is a website here.
Columns are the visit metrics of aggregator/reporting_visits.py, in Matomo's order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

from aggregator.reporting_actions import INVALID_FLAG, Node, ReportFilter, Shape, ShapeError, answer
from aggregator.reporting_visits import METRIC_NAMES, METRICS_SQL, by_visits, metric_columns
from dnma.datatable import Table

DIRECT, SEARCH, WEBSITE, CAMPAIGN, SOCIAL = 1, 2, 3, 6, 7
TYPE_LABELS = {DIRECT: "Direct Entry", SEARCH: "Search Engines", WEBSITE: "Websites", CAMPAIGN: "Campaigns",
               SOCIAL: "Social Networks"}
TYPE_SEGMENTS = {DIRECT: "direct", SEARCH: "search", WEBSITE: "website", CAMPAIGN: "campaign", SOCIAL: "social"}
KEYWORD_NOT_DEFINED = "Keyword not defined"
LOGOS = "plugins/Morpheus/icons/dist"

# Matomo's name, the first URL of its definition (its `url` and logo), a host pattern (RE2), the
# keyword's parameter.
SEARCH_ENGINES: tuple[tuple[str, str, str, str], ...] = (
    ("Google", "google.com", r"(^|\.)google\.[a-z]{2,3}(\.[a-z]{2})?$", "q"),
    ("Bing", "bing.com", r"(^|\.)bing\.com$", "q"),
    ("Yahoo!", "search.yahoo.com", r"(^|\.)search\.yahoo\.com$", "p"),
    ("DuckDuckGo", "duckduckgo.com", r"(^|\.)duckduckgo\.com$", "q"),
    ("Qwant", "qwant.com", r"(^|\.)qwant\.com$", "q"),
    ("Ecosia", "ecosia.org", r"(^|\.)ecosia\.org$", "q"),
    ("Yandex", "yandex.com", r"(^|\.)yandex\.[a-z.]+$", "text"),
    ("Baidu", "baidu.com", r"(^|\.)baidu\.com$", "wd"),
    ("Lilo", "search.lilo.org", r"(^|\.)search\.lilo\.org$", "q"),
)
SOCIAL_NETWORKS: tuple[tuple[str, str], ...] = (
    ("Facebook", r"(^|\.)(facebook\.com|fb\.me)$"),
    ("Twitter", r"(^|\.)(twitter\.com|t\.co|x\.com)$"),
    ("LinkedIn", r"(^|\.)(linkedin\.com|lnkd\.in)$"),
    ("Instagram", r"(^|\.)instagram\.com$"),
    ("YouTube", r"(^|\.)(youtube\.com|youtu\.be)$"),
    ("Pinterest", r"(^|\.)pinterest\.[a-z.]+$"),
)
_ENGINE_URL = {name: url for name, url, _, _ in SEARCH_ENGINES}


def _parameters() -> dict[str, str]:
    out: dict[str, str] = {}
    for i, (name, _, pattern, key) in enumerate(SEARCH_ENGINES):
        out |= {f"se_name{i}": name, f"se_re{i}": pattern, f"se_key{i}": key}
    for i, (name, pattern) in enumerate(SOCIAL_NETWORKS):
        out |= {f"so_name{i}": name, f"so_re{i}": pattern}
    return out


def _classified(f: ReportFilter) -> str:
    """One row per visit of the request: its metrics' columns, referrer type, name and detail
    (the keyword of a search, the referring URL of a website or social network)."""
    engine = "multiIf(" + ", ".join(f"match(host, {{se_re{i}:String}}), {{se_name{i}:String}}"
                                    for i in range(len(SEARCH_ENGINES))) + ", '')"
    keyword = "multiIf(" + ", ".join(
        f"engine = {{se_name{i}:String}}, extractURLParameter(referrer, {{se_key{i}:String}})"
        for i in range(len(SEARCH_ENGINES))) + ", '')"
    social = "multiIf(" + ", ".join(f"match(host, {{so_re{i}:String}}), {{so_name{i}:String}}"
                                    for i in range(len(SOCIAL_NETWORKS))) + ", '')"
    return f"""
SELECT *,
  multiIf(campaign != '', {CAMPAIGN}, host = '' OR host = lower(domain(url)), {DIRECT}, engine != '', {SEARCH},
          social != '', {SOCIAL}, {WEBSITE}) AS rtype,
  multiIf(rtype = {CAMPAIGN}, lowerUTF8(campaign), rtype = {SEARCH}, engine, rtype = {SOCIAL}, social,
          rtype = {WEBSITE}, host, '') AS rname,
  multiIf(rtype = {SEARCH}, lowerUTF8(toValidUTF8(decodeURLFormComponent({keyword}))),
          rtype IN ({WEBSITE}, {SOCIAL}), referrer, '')
    AS rdetail
FROM (
  SELECT *, lower(domain(referrer)) AS host, {engine} AS engine, {social} AS social
  FROM (
    SELECT v.visit_id AS visit_id, any(v.day) AS day, any(v.visitor_id) AS visitor_id, any(v.user_hash) AS user_hash,
      any(v.actions) AS actions, any(v.duration) AS duration, any(v.is_bounce) AS is_bounce,
      any(v.campaign) AS campaign, argMin(h.referrer, h.ts) AS referrer, argMin(h.url, h.ts) AS url
    FROM (
      SELECT site_id, visitor_id, {f.hit_day()} AS d, ts, referrer, url FROM {f.database}.hits
      WHERE site_id IN {{sites:Array(UInt32)}} AND {f.hits_where}
        AND NOT has(flags, '{INVALID_FLAG}')
    ) AS h
    INNER JOIN (
      SELECT site_id, visitor_id, day, visit_id, start, `end`, user_hash, actions, duration, is_bounce, campaign
      FROM {f.database}.visits
      WHERE site_id IN {{sites:Array(UInt32)}} AND day BETWEEN {{first:Date}} AND {{last:Date}}{f.visits_where}
    ) AS v ON h.site_id = v.site_id AND h.visitor_id = v.visitor_id AND h.d = v.day
    WHERE h.ts >= v.start AND h.ts <= v.`end`
    GROUP BY visit_id
  )
)"""


Groups = dict[str, dict[tuple[Any, ...], dict[str, int]]]


def groups(client: Any, f: ReportFilter, keys: tuple[str, ...]) -> Groups:
    """Each period's visit metrics by `keys` (of rtype, rname, rdetail)."""
    if f.beyond_storage:
        return {}
    from aggregator.rollups import inline_dates

    parameters = {**f.parameters, **_parameters()}
    by = ", ".join(keys)
    sql = f"SELECT {f.bucket('day')} AS bucket, {by}, {METRICS_SQL} FROM ({_classified(f)}) GROUP BY bucket, {by}"
    out: Groups = {}
    n = len(keys)
    for row in client.query(inline_dates(sql, parameters), parameters=parameters).result_rows:
        out.setdefault(f.label_of(row[0]), {})[tuple(row[1:1 + n])] = dict(
            zip(METRIC_NAMES, (int(v) for v in row[1 + n:]), strict=True))
    return out


def _node(f: ReportFilter, label: str, m: Mapping[str, int], metadata: dict[str, Any] | None = None) -> Node:
    return Node(label, metric_columns(f, m), metadata=dict(metadata or {}))


def _ordered(nodes: list[Node]) -> list[Node]:
    """Most visits first, ties by label (PHP's natural order), as Matomo's default sort."""
    rows = by_visits([{"label": n.label, "nb_visits": n.columns["nb_visits"], "_n": n} for n in nodes])
    return [r["_n"] for r in rows]


def _keyword_label(keyword: str) -> str:
    return keyword or KEYWORD_NOT_DEFINED


def _subrows(f: ReportFilter, rtype: int, by_name: Mapping[tuple[Any, ...], dict[str, int]]) -> list[Node]:
    """The rows under a referrer type, as getReferrerType's subtables and getAll's rows."""
    out = []
    for key, m in by_name.items():
        if key[0] != rtype:
            continue
        name = key[1]
        if rtype == SEARCH:  # keywords
            segment = f"referrerType==search;referrerKeyword=={quote_plus(name)}"
            out.append(_node(f, _keyword_label(name), m, {"segment": segment}))
        elif rtype == SOCIAL:
            out.append(_node(f, name, m, {"segment": f"referrerType==social;referrerName=={quote_plus(name)}"}))
        else:
            out.append(_node(f, name, m, {"segment": f"referrerName=={quote_plus(name)}"}))
    return _ordered(out)


def _with_metadata(value: Any, names: tuple[str, ...]) -> Any:
    """Tables of an answer (keyed or not) with `names` as Matomo row metadata (CSV's metadata_*)."""
    if isinstance(value, Table):
        value.metadata = frozenset(names)
        return value
    if isinstance(value, dict):
        for v in value.values():
            _with_metadata(v, names)
    return value


def referrer_type(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    shape = Shape.parse(params)
    by_type = groups(client, f, ("rtype",))
    # A subtable: keywords (rtype, rdetail), websites, socials and campaigns (rtype, rname).
    needs_sub = shape.expanded or shape.id_subtable is not None
    keywords = groups(client, f, ("rtype", "rdetail")) if needs_sub else {}
    names = groups(client, f, ("rtype", "rname")) if needs_sub else {}

    def sub(period: str, rtype: int) -> list[Node]:
        source = keywords if rtype == SEARCH else names
        return _subrows(f, rtype, source.get(period, {}))

    if shape.id_subtable in (SEARCH, WEBSITE, SOCIAL, CAMPAIGN):
        # Matomo reads idSubtable as a referrer type and answers that type's report, without subtables.
        tree = {p: sub(p, shape.id_subtable) for p in by_type}
        return _with_metadata(answer(client, f, tree, Shape()), ("segment",))
    tree = {}
    for period, found in by_type.items():
        nodes = []
        for (rtype,), m in found.items():
            node = _node(f, TYPE_LABELS[rtype], m, {"segment": f"referrerType=={TYPE_SEGMENTS[rtype]}",
                                                   "referrer_type": rtype})
            if needs_sub and rtype != DIRECT:
                node.children = sub(period, rtype)
            nodes.append(node)
        tree[period] = _ordered(nodes)
    out = answer(client, f, tree, Shape(expanded=shape.expanded))
    # Matomo's subtable id of a type's row is the type itself (SetGetReferrerTypeSubtables).
    for rows in (out.values() if isinstance(out, dict) else [out]):
        for row in rows:
            rtype = next((t for t, label in TYPE_LABELS.items() if label == row.get("label")), DIRECT)
            if not shape.expanded and rtype != DIRECT:
                row["idsubdatatable"] = rtype
    return _with_metadata(out, ("segment", "referrer_type"))


def all_referrers(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    """Every type's rows together (Matomo's mergeSubtables), `referer_type` beside; direct entries
    have none. One site and one period only, as Matomo."""
    if f.periods.keyed:
        raise ShapeError("Referrers.getAll with multiple sites or dates is not supported (yet).")
    keywords = groups(client, f, ("rtype", "rdetail"))
    names = groups(client, f, ("rtype", "rname"))
    period = f.periods.spans[0].label
    nodes = []
    for rtype in (SEARCH, WEBSITE, SOCIAL, CAMPAIGN):
        source = keywords if rtype == SEARCH else names
        for n in _subrows(f, rtype, source.get(period, {})):
            n.metadata["referer_type"] = rtype
            nodes.append(n)
    tree = {period: _ordered(nodes)} if nodes else {}
    return _with_metadata(answer(client, f, tree, Shape()), ("segment", "referer_type"))


def websites(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    shape = Shape.parse(params)
    hosts = groups(client, f, ("rtype", "rname"))
    urls = groups(client, f, ("rtype", "rname", "rdetail"))
    tree = {}
    for period, found in hosts.items():
        nodes = []
        for (rtype, host), m in found.items():
            if rtype != WEBSITE:
                continue
            node = _node(f, host, m, {"segment": f"referrerName=={quote_plus(host)}"})
            node.children = _ordered([_node(f, url, um) for (t, h, url), um in urls.get(period, {}).items()
                                      if t == WEBSITE and h == host])
            nodes.append(node)
        tree[period] = _ordered(nodes)
    return _with_metadata(answer(client, f, {p: n for p, n in tree.items() if n}, shape), ("segment",))


def search_engines(client: Any, f: ReportFilter, params: Mapping[str, str]) -> Any:
    shape = Shape.parse(params)
    engines = groups(client, f, ("rtype", "rname"))
    words = groups(client, f, ("rtype", "rname", "rdetail"))
    tree = {}
    for period, found in engines.items():
        nodes = []
        for (rtype, name), m in found.items():
            if rtype != SEARCH:
                continue
            url = _ENGINE_URL.get(name, "")
            node = _node(f, name, m, {"segment": f"referrerType==search;referrerName=={quote_plus(name)}",
                                      "url": f"http://{url}", "logo": f"{LOGOS}/searchEngines/{url}.png"})
            node.children = _ordered([_node(f, _keyword_label(kw), km)
                                      for (t, e, kw), km in words.get(period, {}).items()
                                      if t == SEARCH and e == name])
            nodes.append(node)
        tree[period] = _ordered(nodes)
    return _with_metadata(answer(client, f, {p: n for p, n in tree.items() if n}, shape), ("segment", "url", "logo"))


Handler = Callable[[Any, ReportFilter, Mapping[str, str], Mapping[int, str] | None], Any]

METHODS: dict[str, Handler] = {
    "Referrers.getReferrerType": lambda c, f, p, s: referrer_type(c, f, p),
    "Referrers.getAll": lambda c, f, p, s: all_referrers(c, f, p),
    "Referrers.getWebsites": lambda c, f, p, s: websites(c, f, p),
    "Referrers.getSearchEngines": lambda c, f, p, s: search_engines(c, f, p),
}
