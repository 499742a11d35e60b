"""User-Agent → the device, OS and browser classes of TAGGING.md, plus the bot verdict.

device-detector is slow (≈65 ms per new UA, ≈1.4 s to load its regexes): warm it at startup and
keep an LRU cache per worker, so that it only runs on a cache miss.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, NamedTuple

log = logging.getLogger("dnma.collector")


class UAClasses(NamedTuple):
    device: str
    os: str
    browser: str
    browser_name: str  # device-detector's name, for the cookieless fingerprint
    browser_version: str
    is_bot: bool


UNKNOWN = UAClasses("autreappareil", "autreos", "autrenavigateur", "", "", False)

_DEVICES = {
    "desktop": "ordinateur",
    "smartphone": "smartphone",
    "phablet": "smartphone",
    "feature phone": "smartphone",
    "tablet": "tablette",
}
_OS_FAMILIES = {
    "Android": "android",
    "Windows": "windows",
    "iOS": "ios",
    "Mac": "macos",
    "Chrome OS": "chromeos",
    "GNU/Linux": "linux",
}
# Exact device-detector client names; checked before the name prefixes below.
_BROWSER_NAMES = {
    "chrome mobile": "chromemobile",
    "chrome mobile ios": "chromemobile",
    "chrome webview": "chromemobile",
    "chrome": "chrome",
    "safari": "safari",
    "mobile safari": "safari",
    "microsoft edge": "edge",
    "samsung browser": "samsungbrowser",
    "samsung browser lite": "samsungbrowser",
    "mi browser": "miuibrowser",
    "miui browser": "miuibrowser",
}
_BROWSER_PREFIXES = (
    ("firefox", "firefox"),
    ("opera", "opera"),
    ("huawei browser", "huaweibrowser"),
    ("edge", "edge"),
)

# Parsed once at startup to load the regexes every later parse needs (one per family of UA).
WARM_UP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; SM-G975F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
)


def classify_browser(name: str) -> str:
    low = name.lower()
    found = _BROWSER_NAMES.get(low)
    if found:
        return found
    for prefix, cls in _BROWSER_PREFIXES:
        if low.startswith(prefix):
            return cls
    return "autrenavigateur"


def parse(ua: str) -> UAClasses:
    """Uncached device-detector parse. Raises what device-detector raises on a UA it cannot read
    (UAClassifier.classify turns that into an unknown UA, counted)."""
    if not ua:
        return UNKNOWN
    from device_detector import DeviceDetector  # heavy: ≈1.4 s of regexes on first use

    d = DeviceDetector(ua, check_cache=False).parse()
    details = d.all_details
    if d.is_bot():
        return UAClasses("autreappareil", "autreos", "autrenavigateur", "", "", True)
    os_family = (details.get("os") or {}).get("family") or ""
    device = _DEVICES.get(str(d.device_type()), "autreappareil")
    name = d.client_name() or ""
    return UAClasses(
        device,
        _OS_FAMILIES.get(os_family, "autreos"),
        classify_browser(name) if name else "autrenavigateur",
        name,
        d.client_version() or "",
        False,
    )


class UAClassifier:
    """LRU cache of `parse` results; one per worker (the cache is not shared across processes)."""

    def __init__(self, max_entries: int, tally: Any = None) -> None:
        self.max_entries = max(1, max_entries)
        self.tally = tally  # a metrics.Tally: its ua_misses counts the parses, ua_errors the failed ones
        self._cache: OrderedDict[str, UAClasses] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def warm(self) -> None:
        for ua in WARM_UP_AGENTS:
            parse(ua)

    def classify(self, ua: str) -> UAClasses:
        cache = self._cache
        found = cache.get(ua)
        if found is not None:
            self.hits += 1
            cache.move_to_end(ua)
            return found
        self.misses += 1
        if self.tally is not None:
            self.tally.ua_misses += 1
        try:
            found = parse(ua)
        except Exception:  # noqa: BLE001 - any bug of device-detector: a hostile UA must never cost a hit
            found = self._failed()
        cache[ua] = found
        if len(cache) > self.max_entries:
            cache.popitem(last=False)
        return found

    def _failed(self) -> UAClasses:
        """An unreadable UA is an unknown one, counted (dnma_collector_ua_parse_errors); the first
        failure of a worker is logged with its traceback, the others only counted (no log flood)."""
        self.errors += 1
        if self.tally is not None:
            self.tally.ua_errors += 1
        if self.errors == 1:
            log.warning("ua_parse_failed", exc_info=True)
        return UNKNOWN
