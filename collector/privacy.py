"""Pseudonymisation: IP masking, the keyed uid hash, and the cookieless fingerprint whose salt
rotates every day (Paris date), so that nothing stored can lead back to an IP or a user id.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from datetime import datetime, timedelta

from dnma.clock import PARIS


def mask_ip(ip: str) -> str:
    """IPv4: last two bytes zeroed (/16); IPv6: keep the /48. Unparseable → empty."""
    if ip.count(".") == 3 and ":" not in ip:
        a, b, _ = ip.split(".", 2)  # the common case, without ipaddress (never stored anyway)
        return f"{a}.{b}.0.0"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if addr.version == 4:
        return str(ipaddress.ip_network(f"{addr}/16", strict=False).network_address)
    if addr.ipv4_mapped is not None:
        return mask_ip(str(addr.ipv4_mapped))
    return str(ipaddress.ip_network(f"{addr}/48", strict=False).network_address)


def _u64(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


class Pseudonymiser:
    """Keyed hashes with `uid_secret`. One per worker; holds today's salt, never an IP."""

    def __init__(self, secret: str) -> None:
        # An empty secret still hashes (tests, demos); settings docs say it is required in production.
        self._key = hashlib.sha256(b"dnma-uid:" + secret.encode()).digest()
        self._salt_root = hashlib.sha256(b"dnma-salt:" + secret.encode()).digest()
        self._salt = b""
        self._salt_until = 0.0
        self._uid_cache: dict[str, int] = {}

    def user_hash(self, uid: str) -> int:
        """HMAC-SHA256(secret, uid), first 8 bytes as an unsigned 64-bit integer (never 0)."""
        found = self._uid_cache.get(uid)
        if found is None:
            found = _u64(hmac.new(self._key, uid.encode("utf-8", "replace"), hashlib.sha256).digest()) or 1
            if len(self._uid_cache) > 10_000:  # only to spare the HMAC for an active user's hits
                self._uid_cache.clear()
            self._uid_cache[uid] = found
        return found

    def daily_salt(self, now: float | None = None) -> bytes:
        """A salt derived from the secret and the Paris date: yesterday's cannot be recomputed
        without the secret, and a cookieless visitor gets a new identity every day."""
        now = time.time() if now is None else now
        if now >= self._salt_until or now < self._salt_until - 86_400 * 2:
            day = datetime.fromtimestamp(now, PARIS).date()
            self._salt = hmac.new(self._salt_root, day.isoformat().encode(), hashlib.sha256).digest()
            midnight = datetime(day.year, day.month, day.day, tzinfo=PARIS) + timedelta(days=1)
            self._salt_until = midnight.timestamp()
        return self._salt

    def fingerprint(
        self,
        *,
        site_id: int,
        ip: str,
        os: str,
        browser: str,
        browser_version: str,
        plugins: str,
        lang: str,
        now: float | None = None,
    ) -> int:
        """The cookieless visitor id: a salted hash of what Matomo's config id uses."""
        material = "\x1f".join((str(site_id), ip, os, browser, browser_version, plugins, lang)).encode(
            "utf-8", "replace"
        )
        digest = hashlib.blake2b(material, digest_size=8, key=self.daily_salt(now)[:32]).digest()
        return _u64(digest) or 1
