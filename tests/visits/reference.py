"""The visit rules of VISITS.md in plain Python, hit by hit: the oracle the SQL is compared with.

Input hits are dicts with `ts` in unix seconds and their content hash `h` (from ClickHouse); the
reference finds each hit's local day itself, with zoneinfo, not with the production SQL.
"""

from __future__ import annotations

from datetime import date, datetime
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

GAP_S = 1800
COUNTED = ("pageview", "download", "outlink", "search", "event")
DEFAULT_TZ = "Europe/Paris"


def local_day(site_id: int, ts: int, timezones: dict[int, str]) -> date:
    """The calendar day of unix second `ts` where the site is (Paris unless the site says otherwise)."""
    return datetime.fromtimestamp(ts, ZoneInfo(timezones.get(site_id, DEFAULT_TZ))).date()


def _order(hit: dict[str, Any]) -> tuple[int, int, int]:
    return (hit["ts"], hit["action"] == "ping", hit["h"])


def _visit(hits: list[dict[str, Any]]) -> dict[str, Any]:
    def first(key: str, empty: Any = "") -> Any:
        return next((h[key] for h in hits if h[key] != empty), empty)

    actions = [h["action"] for h in hits if h["action"] in COUNTED]
    return {
        "site_id": hits[0]["site_id"],
        "day": hits[0]["day"],
        "visitor_id": hits[0]["visitor_id"],
        "start": hits[0]["ts"],
        "end": hits[-1]["ts"],
        "duration": hits[-1]["ts"] - hits[0]["ts"] + 1,
        "actions": len(actions),
        "pageviews": actions.count("pageview"),
        "events": actions.count("event"),
        "downloads": actions.count("download"),
        "outlinks": actions.count("outlink"),
        "searches": actions.count("search"),
        "hits": len(hits),
        "is_bounce": int(len(actions) <= 1),
        "user_hash": first("user_hash", 0),
        "uai": first("uai"),
        "profil": first("profil"),
        "device": first("device"),
        "os": first("os"),
        "browser": first("browser"),
        "services": sorted({h["service"] for h in hits if h["service"]}),
        "outils": sorted({h["outil"] for h in hits if h["outil"]}),
        "type_natif": int(any(h["type"] == "NATIF" for h in hits)),
        "type_tiers": int(any(h["type"] == "TIERS" for h in hits)),
        "projet": first("projet"),
        "campaign": hits[0]["campaign"],
    }


def sessionize(hits: list[dict[str, Any]], timezones: dict[int, str]) -> list[dict[str, Any]]:
    """Visits of the hits, sorted by (site, day, visitor, start); `timezones` by site id."""
    valid = [h | {"day": local_day(h["site_id"], h["ts"], timezones)} for h in hits if "invalid_uai" not in h["flags"]]
    key = lambda h: (h["site_id"], h["day"], h["visitor_id"])  # noqa: E731
    visits = []
    for _, group in groupby(sorted(valid, key=lambda h: (key(h), _order(h))), key=key):
        current: list[dict[str, Any]] = []
        campaign = ""
        for hit in group:
            live = bool(current) and hit["ts"] - current[-1]["ts"] < GAP_S
            if hit["action"] == "ping":
                if live:
                    current.append(hit)  # extends the visit and resets the timer
                continue  # a ping never starts a visit
            new_campaign = hit["campaign"] != "" and hit["campaign"] != campaign
            if not live or hit["new_visit"] == 1 or new_campaign:
                if current:
                    visits.append(_visit(current))
                current, campaign = [], hit["campaign"]
            current.append(hit)
        if current:
            visits.append(_visit(current))
    return sorted(visits, key=lambda v: (v["site_id"], v["day"], v["visitor_id"], v["start"]))
