"""Matomo's own system-test fixtures (matomo-org/matomo, tests/PHPUnit/Fixtures/*.php), replayed as
the tracking requests their MatomoTracker sends: each fixture's forced times (`cdt`), visitor ids,
URLs, titles, referrers, user agents, events, links and site searches, in the order the PHP code
sends them. Only what DNMA stores is sent; custom variables, performance timings, goals and
ecommerce are left out (DNMA does not collect them). Times follow Matomo's Date::addHourTo:
`addHour(h)` adds round(h * 3600) seconds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Fixture::getTracker's defaults (defaultInit=true).
DEFAULT_UA = ("Mozilla/5.0 (Windows; U; Windows NT 5.1; en-GB; rv:1.9.2.6) Gecko/20100625 Firefox/3.6.6 "
              "(.NET CLR 3.5.30729)")
DEFAULT_IP = "156.5.3.2"


def ts(text: str) -> int:
    """'2010-01-03 11:22:33' (UTC, as Matomo's tests run) as a Unix time."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


def add_hours(t: int, hours: float) -> int:
    return t + round(hours * 3600)


@dataclass
class Tracker:
    """One MatomoTracker object: its own random visitor id (here derived from a name), its
    current URL and referrer, and the forced time of the next request."""

    site: int
    name: str
    time: int
    ua: str = DEFAULT_UA
    ip: str = DEFAULT_IP
    url: str = ""
    urlref: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def visitor_id(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:16]

    def _send(self, **params: Any) -> None:
        # MatomoTracker leaves out an empty url, referrer, title or event name.
        q: dict[str, Any] = {"idsite": self.site, "rec": 1, "apiv": 1, "_id": self.visitor_id,
                             "cdt": self.time, "cip": self.ip, "ua": self.ua,
                             "lang": "fr", "res": "1024x768", "h": 12, "m": 34, "s": 6}
        if self.url:
            q["url"] = self.url
        if self.urlref:
            q["urlref"] = self.urlref
        q.update({k: v for k, v in params.items() if v is not None and v != ""})
        self.requests.append(q)

    def page_view(self, title: str) -> None:
        self._send(action_name=title)

    def event(self, category: str, action: str, name: str | None = None, value: float | None = None) -> None:
        self._send(e_c=category, e_a=action, e_n=name, e_v=value)

    def action(self, url: str, kind: str) -> None:  # doTrackAction: 'link' or 'download'
        self._send(**{kind: url})

    def site_search(self, keyword: str, category: str = "", count: int | None = None) -> None:
        self._send(search=keyword, search_cat=category or None, search_count=count)


def three_visits_with_custom_events(site: int) -> list[dict[str, Any]]:
    """ThreeVisitsWithCustomEvents.php: two visitors on 2010-01-03 (the first starting with a page
    view), one on 2010-01-04, each playing music, rating it and watching a movie with long breaks."""
    start = ts("2010-01-03 11:22:33")
    out: list[dict[str, Any]] = []

    def at(vis: Tracker, base: int, minutes: float) -> None:  # moveTimeForward
        vis.time = add_hours(base, minutes / 60)

    def music_playing(vis: Tracker, base: int) -> None:
        for m, action in ((1, "play"), (2, "play25%"), (3, "play50%"), (4, "play75%"), (4.5, "playEnd")):
            at(vis, base, m)
            vis.event("Music", action, "La fiancée de l'eau")

    def music_ratings(vis: Tracker, base: int) -> None:
        at(vis, base, 5)
        vis.event("Music", "rating", "La fiancée de l'eau", 9)
        at(vis, base, 5.02)
        vis.event("Music", "rating", "La fiancée de l'eau", 10)

    def event_without_url(vis: Tracker, base: int) -> None:
        url, vis.url = vis.url, ""
        for m, value in ((1, None), (2, 23), (3, 0)):
            at(vis, base, m)
            vis.event("CategoryTriggersGoal here", "This is an event without a URL", None, value)
        vis.url = url

    def movie_watching(vis: Tracker, base: int) -> None:
        at(vis, base, 30)
        vis.url = "http://example.org/movies"
        vis.page_view("Movie Theater")
        mononoke, ponyo, spirited = ("Princess Mononoke (もののけ姫)", "Ponyo (崖の上のポニョ)",
                                     "Spirited Away (千と千尋の神隠し)")
        for m, action, name in ((31, "playTrailer", mononoke), (33, "playTrailer", ponyo),
                                (35, "playTrailer", spirited), (36, "clickBuyNow", spirited),
                                (38, "playStart", spirited), (60, "play25%", spirited), (150, "Search", None),
                                (222, "play50%", spirited), (244, "play75%", spirited),
                                (251, "Search", "Search query here"), (266, "playEnd", spirited)):
            at(vis, base, m)
            vis.event("Movie", action, name)
        vis.url = ""
        at(vis, base, 268)
        vis.event("Movie", "rating", spirited, 9.66)
        vis.url = "http://example.org/finishedMovie"
        append = ("Extremely long " * 10).rstrip() + " ---> SHOULD APPEAR IN TEST OUTPUT NOT TRUNCATED <---         "
        at(vis, base, 280)
        vis.event("event category " + append, "event action " + append, "event name " + append, 9.66)
        at(vis, base, 352)
        vis.event("Movie", "Search")
        at(vis, base, 453)
        vis.event("Movie", "Purchase")

    vis = Tracker(site, "custom-events-1", start)
    vis.url = "http://example.org/webradio"
    vis.page_view("Welcome!")
    music_playing(vis, start)
    music_ratings(vis, start)
    event_without_url(vis, start)
    movie_watching(vis, start)
    out += vis.requests

    second = add_hours(start, 0.5)
    vis2 = Tracker(site, "custom-events-2", second, ip="111.1.1.1", url="http://example.com/piwik/")
    music_playing(vis2, second)
    music_ratings(vis2, second)
    movie_watching(vis2, second)
    out += vis2.requests

    third = second + 86400
    vis3 = Tracker(site, "custom-events-3", third, ip="111.1.1.2", url="http://example.com/piwik/")
    music_playing(vis3, third)
    music_ratings(vis3, third)
    movie_watching(vis3, third)
    out += vis3.requests
    return out


GOAL_URL = "http://example.org/index.htm?pk_campaign=goal-matching-url-parameter"


def two_sites_two_visitors_different_days(site1: int, site2: int) -> list[dict[str, Any]]:
    """TwoSitesTwoVisitorsDifferentDays.php: on site 1, visitor A's two page views from 23:55 on
    2010-01-03 (the second with a blank URL and title), visitor B's page view at 12:22:33 and then,
    on each of the 8 days from 2010-01-05, a visit of 3 page views and two mailto outlinks; on site
    2, three page views at once on 2010-01-04."""
    start = ts("2010-01-03 11:22:33")
    span = ts("2010-01-03 23:55:00")
    a = Tracker(site1, "two-sites-A", span, urlref="http://referrer.com/page.htm?param=valuewith some spaces",
                url="http://example.org/index.htm#ignoredFragment")
    a.page_view("first page view")
    a.time = add_hours(span, 0.1)
    a.url = "  "
    a.page_view("  ")

    b = Tracker(site1, "two-sites-B", add_hours(start, 1), ip="100.52.156.83",
                ua="Opera/9.63 (Windows NT 5.1; U; en) Presto/2.1.1", url="http://example.org/products")
    b.page_view("first page view")
    for days in range(2, 10):
        base = add_hours(start, days * 24)
        b.time = base
        b.urlref = ("http" if days % 2 == 0 else "https") + "://referrer.com/Other_Page.htm"
        b.url = GOAL_URL if days in (2, 3, 4, 9) else "http://example.org/index.htm"
        b.page_view("second visitor/two days later/a new visit")
        b.time = add_hours(base, 0.1)
        b.url = "http://example.org/thankyou"
        b.page_view("second visitor/two days later/second page view😀💩😀💩")
        b.time = add_hours(base, 0.2)
        b.action("mailto:test@example.org", "link")
        b.time = add_hours(base, 0.25)
        b.action("mailto:test@example.org/strangelink", "link")
        b.page_view("Checkout / Purchasing...")

    c = Tracker(site2, "two-sites-site2", add_hours(start, 24),
                ua="Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0;)",
                urlref="http://only-homepage-referrer.com/", url="http://example2.com/home#notIgnoredFragment#")
    c.page_view("Website 2 page view")
    c.url = "this is invalid url"
    c.page_view("")
    c.url = "http://example2alias.org/home#notIgnoredFragment#"
    c.page_view("")
    return a.requests + b.requests + c.requests
