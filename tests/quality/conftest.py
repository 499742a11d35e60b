"""Fixtures of the quality-check tests: a migrated real chDB per test, two registered sites with
declared perimeters, a small synthetic referential, and helpers to insert hits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from aggregator.migrate import migrate
from dnma.clock import PARIS
from dnma.hits import HIT_COLUMNS
from dnma.settings import Settings
from dnma.sites import dump_sites, hash_token
from dnma.uai import check_letter

SITE_BZH, SITE_CRE = 1, 2
TOKENS = {SITE_BZH: "token-bzh", SITE_CRE: "token-cre"}


def make_uai(dep: int, n: int) -> str:
    seven = f"{dep:03d}{n:04d}"
    return seven + check_letter(seven)


# Referential: 30 schools (1D) and 10 collèges (2D) in Ille-et-Vilaine, 30 schools in Val-de-Marne.
REF_35_1D = [make_uai(35, 100 + i) for i in range(30)]
REF_35_2D = [make_uai(35, 500 + i) for i in range(10)]
REF_94_1D = [make_uai(94, 100 + i) for i in range(30)]
SITE_UAIS = {SITE_BZH: REF_35_1D + REF_35_2D, SITE_CRE: REF_94_1D}


def sites() -> list[dict[str, Any]]:
    return [
        {"id": SITE_BZH, "name": "ENT Bretagne", "main_url": "https://ent.bzh.example", "projet": "ENT_BZH",
         "token_sha256": hash_token(TOKENS[SITE_BZH]), "perimeter": {"degrees": ["1D", "2D"], "departements": ["035"]}},
        {"id": SITE_CRE, "name": "ENT Créteil 1D", "main_url": "https://ent.cre.example", "projet": "ENT_CRE",
         "token_sha256": hash_token(TOKENS[SITE_CRE]), "perimeter": {"degrees": ["1D"], "academies": ["Créteil"]}},
    ]


def load_referential(client: Any) -> None:
    rows = []
    for uai in REF_35_1D + REF_35_2D:
        rows.append([uai, "1D" if uai in REF_35_1D else "2D", "035", "Rennes", "53", "Bretagne", "Ille-et-Vilaine"])
    for uai in REF_94_1D:
        rows.append([uai, "1D", "094", "Créteil", "11", "Île-de-France", "Val-de-Marne"])
    client.insert("dnma.etablissements", rows,
                  column_names=["uai", "degre", "departement_code", "academie", "region_code", "region", "departement"])


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[tuple[Any, Settings]]:
    dump_sites(sites(), tmp_path / "sites.yaml")
    settings = Settings(
        data_dir=tmp_path, sites_file=tmp_path / "sites.yaml", clickhouse_dsn=f"chdb://{tmp_path / 'ch'}",
        super_user_token="super-token", collector_port=1,  # nothing listens on port 1: no collector to scrape
        hits_ttl_months=1200,  # fixed 2024 dates: the TTL must not drop them on insert
    )
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    load_referential(client)
    yield client, settings
    client.close()


_NAMES = [c[0] for c in HIT_COLUMNS]
_DEFAULTS = {c[0]: c[2] for c in HIT_COLUMNS}


def hit(site_id: int, ts: datetime, **values: Any) -> dict[str, Any]:
    row = dict(_DEFAULTS, site_id=site_id, ts=ts, received_at=values.pop("received_at", ts), action="pageview",
               service="notes", type="NATIF", profil="ELEVE", projet="ENT_BZH" if site_id == SITE_BZH else "ENT_CRE")
    row.update(values)
    return row


def insert_hits(client: Any, rows: list[dict[str, Any]]) -> None:
    client.insert("dnma.hits", [[r[c] for c in _NAMES] for r in rows], column_names=_NAMES)


def clean_hits(site_id: int, start: datetime, n: int, spacing_s: int = 60, **values: Any) -> list[dict[str, Any]]:
    """n well-formed page views, one every `spacing_s`, cycling over the site's establishments."""
    from datetime import timedelta

    uais = SITE_UAIS[site_id]
    return [
        hit(site_id, start + timedelta(seconds=i * spacing_s), uai=uais[i % len(uais)], visitor_id=1000 + i,
            pv_id=f"{site_id:02d}{i:06x}", url=f"https://ent.example/p/{i}", **values)
        for i in range(n)
    ]


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def current_alerts(client: Any, check: str | None = None) -> list[tuple[Any, ...]]:
    where = "WHERE `check` = {c:String}" if check else ""
    return client.query(
        f"SELECT `check`, scope_kind, scope_value, status, severity, observed, expected, message, "
        f"toUnixTimestamp(first_seen), toUnixTimestamp(last_seen) FROM dnma.quality_alerts_current {where} "
        "ORDER BY `check`, scope_kind, scope_value",
        parameters={"c": check} if check else {},
    ).result_rows
