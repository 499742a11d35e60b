"""The hits TTL, set after migrating from `hits_ttl_months`: a century keeps today's hits (no
DateTime wrap-around), a short one drops old hits, fresh and existing installs end up alike."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import clickhouse_connect
import pytest
from pydantic import ValidationError

from aggregator.migrate import migrate, renderer
from aggregator.retention import apply_retention, current_ttl
from aggregator.sessionizer import _ttl_cutoff
from dnma.settings import Settings

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture()
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    yield c
    c.close()


def _insert_hits(client, *timestamps: str) -> None:  # type: ignore[no-untyped-def]
    for n, ts in enumerate(timestamps):
        client.command("INSERT INTO dnma.hits (ts, received_at, site_id, visitor_id) "
                       f"SELECT toDateTime('{ts}', 'Europe/Paris'), now(), 1, {n + 1}")


def _kept(client) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """The hits and fingerprint hours left once every merge (TTL included) has run."""
    for table in ("hits", "hits_fingerprints"):
        client.command(f"OPTIMIZE TABLE dnma.{table} FINAL")
    hits = client.query("SELECT toString(ts) FROM dnma.hits ORDER BY ts").result_rows
    hours = client.query("SELECT toString(hour) FROM dnma.hits_fingerprints ORDER BY hour").result_rows
    return [r[0] for r in hits], [r[0] for r in hours]


def test_a_century_keeps_the_hits_of_2026(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`ts + INTERVAL 1200 MONTH` wraps past 2106 (2026 + 100 years read as 1990): every hit expired."""
    settings = Settings(data_dir=tmp_path, hits_ttl_months=1200)
    migrate(client, settings)
    assert apply_retention(client, renderer(settings), 1200) == ["hits", "hits_fingerprints"]
    _insert_hits(client, "2026-05-28 10:00:00", "2026-11-19 08:30:00")
    assert _kept(client) == (["2026-05-28 10:00:00", "2026-11-19 08:30:00"],
                             ["2026-05-28 10:00:00", "2026-11-19 08:00:00"])


def test_a_short_ttl_drops_old_hits_and_their_fingerprints(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, hits_ttl_months=2)
    migrate(client, settings)
    apply_retention(client, renderer(settings), 2)
    _insert_hits(client, "2020-01-15 10:00:00")
    client.command("INSERT INTO dnma.hits (ts, received_at, site_id, visitor_id) SELECT now(), now(), 1, 9")
    hits, hours = _kept(client)
    assert len(hits) == len(hours) == 1 and hits[0] > "2020-02" and hours[0] > "2020-02"


def test_fresh_and_existing_installs_converge_and_alter_only_once(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An install migrated before the TTL left the migrations has `ts + INTERVAL n MONTH`; a fresh
    one has no TTL. After the loader's start step both have the same table, and a second start
    alters nothing."""
    fresh = Settings(data_dir=tmp_path, clickhouse_database="fresh")
    old = Settings(data_dir=tmp_path, clickhouse_database="old")
    for settings in (fresh, old):
        migrate(client, settings)
    assert current_ttl(client, renderer(fresh), "hits") == ""
    client.command("ALTER TABLE old.hits MODIFY TTL ts + INTERVAL 13 MONTH")  # as m0001 shipped it
    client.command("ALTER TABLE old.hits_fingerprints MODIFY TTL hour + INTERVAL 13 MONTH")
    for settings in (fresh, old):
        assert apply_retention(client, renderer(settings), 13) == ["hits", "hits_fingerprints"]
        assert apply_retention(client, renderer(settings), 13) == []
    for table in ("hits", "hits_fingerprints"):
        created = [str(client.command(f"SHOW CREATE TABLE {db}.{table}")).replace(f"{db}.", "DB.") for db in ("fresh", "old")]
        assert created[0] == created[1]
        assert "TTL toDate32(" in created[0] and "toIntervalMonth(13)" in created[0]
    assert apply_retention(client, renderer(fresh), 1200) == ["hits", "hits_fingerprints"]


def test_a_ttl_out_of_range_is_refused(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # By the settings, when a process starts (one line, before anything runs)...
    for months in (0, -3, 1201):
        with pytest.raises(ValidationError, match="hits_ttl_months"):
            Settings(data_dir=tmp_path, hits_ttl_months=months)
    # ...and by apply_retention itself, whoever calls it.
    settings = Settings(data_dir=tmp_path)
    migrate(client, settings)
    with pytest.raises(ValueError, match="at least 1"):
        apply_retention(client, renderer(settings), 0)


@pytest.mark.parametrize(("months", "today", "cutoff"), [
    (13, date(2026, 3, 31), date(2025, 3, 2)),  # day clamped to 28, then the margin
    (1200, date(2026, 11, 19), date(1926, 11, 21)),  # a century back, still a date
    (1200, date(2026, 1, 5), date(1926, 1, 7)),
    (10**6, date(2026, 11, 19), date.min),  # longer than the calendar: nothing expires
])
def test_the_sessionizer_cutoff_counts_months_back(months: int, today: date, cutoff: date) -> None:
    # model_construct: the cut-off stays defined beyond what the settings accept (1,200 months).
    assert _ttl_cutoff(Settings.model_construct(hits_ttl_months=months), today) == cutoff


def test_dnma_migrate_sets_the_ttl(tmp_path: Path) -> None:
    """`dnma migrate` (its command function, in a process of its own like the command's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env |= {"DNMA_DATA_DIR": str(tmp_path), "DNMA_CONFIG": str(tmp_path / "absent.toml"), "DNMA_HITS_TTL_MONTHS": "1200"}
    run = [sys.executable, "-c", "import argparse, sys; from aggregator.migrate import run; "
           "sys.exit(run(argparse.Namespace(print=False, record_digests=False)))"]
    first = subprocess.run(run, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "TTLs set on: ['hits', 'hits_fingerprints', 'visits', 'visits_fingerprints', 'quality_alerts']" in first
    again = subprocess.run(run, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "none (up to date)" in again and "none (already set)" in again


def test_every_growing_table_gets_its_retention_and_aggregates_outlive_hits(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Default settings: hits 13 months, visits 37, rollups for ever, alerts 13. Rows dated relative
    to ClickHouse's now() (the clock TTLs use), so any day of the year gives the same answer."""
    settings = Settings(data_dir=tmp_path)
    migrate(client, settings)
    r = renderer(settings)
    altered = apply_retention(client, r, settings)
    assert set(altered) == {"hits", "hits_fingerprints", "visits", "visits_fingerprints", "quality_alerts"}
    assert current_ttl(client, r, "visits") == "toDate32(day) + toIntervalMonth(37)"
    assert current_ttl(client, r, "visits_weekly") == current_ttl(client, r, "hits_daily") == ""
    assert apply_retention(client, r, settings) == []  # a second start alters nothing

    for months in (20, 40):
        client.command("INSERT INTO dnma.hits (ts, received_at, site_id, visitor_id) "
                       f"SELECT now() - INTERVAL {months} MONTH, now(), 1, {months}")
        client.command("INSERT INTO dnma.visits (site_id, uai, visitor_id, visit_id, day, start) "
                       f"SELECT 1, '0350001A', {months}, {months}, toDate(now() - INTERVAL {months} MONTH), "
                       f"now() - INTERVAL {months} MONTH")
    for table in ("hits", "hits_fingerprints", "hits_daily", "visits"):
        client.command(f"OPTIMIZE TABLE dnma.{table} FINAL")
    left = {t: client.command(f"SELECT count() FROM dnma.{t}") for t in ("hits", "hits_fingerprints", "hits_daily")}
    assert left == {"hits": 0, "hits_fingerprints": 0, "hits_daily": 2}  # the rollups outlive the raw hits
    assert client.query("SELECT visitor_id FROM dnma.visits").result_rows == [(20,)]  # 37 months: 20 kept, 40 gone


def test_retention_never_shorter_than_what_it_is_rebuilt_from(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, hits_ttl_months=24, visits_ttl_months=6, rollups_ttl_months=3,
                        quality_alerts_ttl_months=0)
    migrate(client, settings)
    r = renderer(settings)
    apply_retention(client, r, settings)
    for table in ("visits", "visits_fingerprints", "visits_daily", "hits_hourly"):
        assert current_ttl(client, r, table).endswith("toIntervalMonth(24)"), table
    assert current_ttl(client, r, "visits_weekly") == "toDate32(debutsemaine) + toIntervalMonth(24)"
    assert current_ttl(client, r, "quality_alerts") == ""
    # Back to "for ever": the TTL is removed, not left behind.
    again = settings.model_copy(update={"rollups_ttl_months": 0})
    assert "visits_weekly" in apply_retention(client, r, again)
    assert current_ttl(client, r, "visits_weekly") == ""


def test_an_expired_alert_goes_with_all_its_versions(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An alert opened then resolved 14 months ago (two versions, two parts) is deleted whole: its
    older 'open' version does not come back; an alert seen this month stays."""
    settings = Settings(data_dir=tmp_path)
    migrate(client, settings)
    apply_retention(client, renderer(settings), settings)
    columns = "check, scope_kind, scope_value, window, status, last_seen, version"
    for status, version in (("open", 1), ("resolved", 2)):
        client.command(f"INSERT INTO dnma.quality_alerts ({columns}) "
                       f"SELECT 'volume', 'site', '1', '1d', '{status}', now() - INTERVAL 14 MONTH, {version}")
    client.command(f"INSERT INTO dnma.quality_alerts ({columns}) SELECT 'volume', 'site', '2', '1d', 'open', now(), 1")
    client.command("OPTIMIZE TABLE dnma.quality_alerts FINAL")
    assert client.query("SELECT scope_value, status FROM dnma.quality_alerts_current").result_rows == [("2", "open")]
