"""Fixtures of the visits tests: a migrated chDB of its own per test (closed after: one engine
path per process), and helpers to insert hand-made hits and read visits back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from aggregator.migrate import migrate, renderer
from aggregator.migrations.m0003_visits import VISIT_COLUMN_NAMES
from aggregator.sessionizer import rebuild_days
from dnma.clock import PARIS
from dnma.hits import HIT_COLUMN_NAMES, HIT_DEFAULTS
from dnma.settings import Settings
from dnma.sites import dump_sites


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def hit(ts: datetime | int, **fields: Any) -> dict[str, Any]:
    """A complete hits row: site 1, visitor 42, a page view on `notes` from a pupil unless told."""
    row = dict(HIT_DEFAULTS)
    row.update(site_id=1, visitor_id=42, uai="0350001A", service="notes", profil="ELEVE", type="NATIF")
    row.update(fields)
    row["ts"] = ts
    row.setdefault("received_at", ts)
    if row["received_at"] == 0:
        row["received_at"] = ts
    return row


class Db:
    def __init__(self, client: Any, settings: Settings):
        self.client = client
        self.settings = settings
        self.r = renderer(settings)

    def insert(self, hits: list[dict[str, Any]]) -> None:
        rows = [[h[c] for c in HIT_COLUMN_NAMES] for h in hits]
        self.client.insert("dnma.hits", rows, column_names=list(HIT_COLUMN_NAMES))

    def rebuild(self, days: list[date] | None = None) -> dict[str, Any]:
        return rebuild_days(self.client, self.settings, days)

    def visits(self, where: str = "1") -> list[dict[str, Any]]:
        cols = ", ".join(f"`{c}`" for c in VISIT_COLUMN_NAMES if c not in ("start", "end"))
        sql = (
            f"SELECT {cols}, toUInt32(start) AS start, toUInt32(`end`) AS `end` FROM dnma.visits "
            f"WHERE {where} ORDER BY site_id, day, visitor_id, start"
        )
        return list(self.client.query(sql).named_results())

    def scalar(self, sql: str, **parameters: Any) -> Any:
        return self.client.query(sql, parameters=parameters).result_rows[0][0]


def open_db(tmp_path: Path, sites: list[dict[str, Any]] | None = None) -> Db:
    import clickhouse_connect

    # A long TTL: the hand-made hits use fixed dates that must not expire as years go by.
    settings = Settings(data_dir=tmp_path, hits_ttl_months=1200, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    if sites is not None:
        dump_sites(sites, settings.resolved_sites_file)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    return Db(client, settings)


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Db]:
    d = open_db(tmp_path)
    yield d
    d.client.close()
