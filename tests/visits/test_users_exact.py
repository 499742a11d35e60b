"""Exact distinct users in the visit rollups (migration m0019): the dense user index, its backfill
over visits stored before the migration, and the rollups' groupBitmap states merged over days,
weeks and territories equal uniqExact on dnma.visits (the exports' and the reporting API's count)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import clickhouse_connect

from aggregator.migrate import migrate
from aggregator.rollups import BY_TABLE, USER_KEY, VISIT_ROLLUPS
from aggregator.sessionizer import build_visits
from dnma.settings import Settings

from .conftest import Db, hit, paris

MON = date(2026, 3, 9)


def _hits(first_user: int, days: range) -> list[dict[str, object]]:
    """Users first_user..first_user+5 (uid hash for the even ones, a visitor id alone for the
    others), each on several days, at two UAIs of two départements."""
    out = []
    for d in days:
        for u in range(first_user, first_user + 6):
            if (u + d) % 3 == 0:
                continue  # not every user every day: the days' user sets differ
            uai = "0350001A" if (u + d) % 2 else "0940002B"
            out.append(hit(paris(2026, 3, 9 + d, 9, u, 0), visitor_id=1000 + u, user_hash=u * 7 if u % 2 == 0 else 0,
                           uai=uai, profil=["ELEVE", "PARENT"][u % 2], device=["smartphone", "ordinateur"][d % 2]))
    return out


def _assert_exact(db: Db) -> None:
    """Every tier, merged over the whole data and per (period, degre): uniqExact of the user keys."""
    exact = db.scalar(f"SELECT uniqExact({USER_KEY}) FROM dnma.visits")
    for rollup in VISIT_ROLLUPS:
        merged = db.scalar(f"SELECT {rollup.users_merge}(utilisateurs) FROM dnma.{rollup.table}")
        direct = exact if not rollup.by_service else db.scalar(
            f"SELECT uniqExact({USER_KEY}) FROM dnma.visits WHERE notEmpty(services)")
        assert merged == direct, rollup.table
    for uai in ("0350001A", "0940002B"):
        week = db.scalar("SELECT groupBitmapMerge(utilisateurs) FROM dnma.visits_weekly WHERE uai = {u:String}", u=uai)
        days = db.scalar("SELECT groupBitmapMerge(utilisateurs) FROM dnma.visits_daily WHERE uai = {u:String}", u=uai)
        assert week == days == db.scalar(
            f"SELECT uniqExact({USER_KEY}) FROM dnma.visits WHERE uai = {{u:String}}", u=uai) > 0
    # The index is dense and one per user: 1..n, no key twice.
    n, keys, low, high = db.client.query(
        "SELECT count(), uniqExact(user_key), min(user_idx), max(user_idx) FROM dnma.user_index").result_rows[0]
    assert n == keys == high and low == 1


def test_backfill_then_new_users_get_the_next_indexes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, hits_ttl_months=1200, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    try:
        migrate(client, settings, until=18)  # an install from before m0019, with visits stored
        db = Db(client, settings)
        db.insert(_hits(0, range(3)))
        for d in range(3):
            build_visits(client, db.r, {}, date(2026, 3, 9 + d), whole=True)
        assert db.scalar("SELECT count() FROM dnma.visits") > 10
        assert [m.number for m in migrate(client, settings)] == [19]
        assert db.scalar("SELECT max(user_idx) FROM dnma.user_index") == db.scalar(
            f"SELECT uniqExact({USER_KEY}) FROM dnma.visits")
        _assert_exact(db)
        # Later days: three known users and three new ones; known users keep their index.
        before = dict(client.query("SELECT user_key, user_idx FROM dnma.user_index").result_rows)
        db.insert(_hits(3, range(3, 5)))
        # And thousands of one-hit visitors over two days, half of them on both: beyond what an
        # estimate (uniqCombined(12), the coarse tiers' state before m0019) counts exactly.
        db.insert([hit(paris(2026, 3, 12 + i // 4000, 8, 0, 0) + timedelta(seconds=i % 4000), visitor_id=50_000 + i % 4000
                       + (i // 4000) * 2000, uai=["0350001A", "0940002B"][i % 2]) for i in range(8000)])
        db.rebuild()
        after = dict(client.query("SELECT user_key, user_idx FROM dnma.user_index").result_rows)
        assert {k: after[k] for k in before} == before and len(after) > len(before)
        assert sorted(set(after.values()) - set(before.values())) == list(range(len(before) + 1, len(after) + 1))
        _assert_exact(db)
        assert BY_TABLE["visits_national_daily"].users_merge == "groupBitmapMerge"
    finally:
        client.close()
