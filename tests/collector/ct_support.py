"""Helpers of the collector tests: the test sites, a started collector and what it spooled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from harness import DEMO_TOKEN, SUPER_TOKEN, Stack, demo_sites

from dnma.hits import HIT_DEFAULTS
from dnma.quarantine import is_kind_block
from dnma.sites import hash_token
from dnma.spool import iter_records

SITE3_TOKEN = "site3-token"


def collector_sites() -> list[dict[str, Any]]:
    """The harness's demo sites plus one with its own slot mapping and nothing fixed."""
    return [
        *demo_sites(),
        {
            "id": 3,
            "name": "ENT mapping perso",
            "main_url": "https://ent3.example",
            "token_sha256": hash_token(SITE3_TOKEN),
            "dimensions": {1: "uai", 3: "service", 4: "profil", 5: "type", 6: "projet", 7: "outil"},
            "created": "2024-09-02 08:30:00",  # SitesManager's ts_created
        },
    ]


class Collector:
    """A running collector and what it wrote."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.url = stack.collector_url
        self.http = httpx.Client(base_url=self.url, timeout=10)

    @property
    def spool_dir(self) -> Path:
        return self.stack.data_dir / "spool"

    def rows(self) -> list[dict[str, Any]]:
        """Spooled rows, every column present: a record holds only the columns its hit sets (a
        missing one is the column's default, as ClickHouse reads it)."""
        return [HIT_DEFAULTS | orjson.loads(r) for r in iter_records(self.spool_dir) if not is_kind_block(r)]

    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantine records spooled (refused requests kept: dnma/quarantine.py)."""
        return [orjson.loads(r) for r in iter_records(self.spool_dir) if is_kind_block(r)]

    def rows_with(self, marker: str) -> list[dict[str, Any]]:
        """Spooled rows whose url, title or event name carries `marker` (one per test)."""
        return [
            r for r in self.rows() if marker in r["url"] or marker in r["title"] or marker in r["event_name"]
        ]

    def raw_spool(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.spool_dir.iterdir()) if p.is_file())

    def healthy(self) -> bool:
        return self.http.get("/healthz").status_code == 200


def start(root: Path, **config: Any) -> Stack:
    stack = Stack(root, sites=collector_sites(), trust_x_forwarded_for=True, **config)
    stack.start_collector()
    return stack


def page(marker: str, path: str = "p") -> str:
    return f"https://ent.demo.example/{path}/{marker}"


__all__ = ["Collector", "DEMO_TOKEN", "SUPER_TOKEN", "SITE3_TOKEN", "page", "start"]
