"""Rollups equal the same figures computed straight from visits and hits; the CLI runs a pass."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.rollups import BY_TABLE, VISIT_ROLLUPS, inline_dates, rollup_for

from .conftest import Db, hit, open_db, paris
from .test_rules import _random_hits

USERS = "if(user_hash != 0, user_hash, visitor_id)"


def _mixed_hits() -> list[dict[str, object]]:
    hits = _random_hits(5, 3000)  # 9-11 March 2026 (Mon-Wed)
    for i, h in enumerate(hits):
        h.update(profil=["ELEVE", "PARENT", "ENSEIGNANT"][i % 3], device=["smartphone", "ordinateur"][i % 2],
                 user_hash=[0, 11, 12][i % 3], uai=["0350001A", "0350002B"][i % 2])
    # the Sunday before and the next Monday: two more ISO weeks
    hits += [hit(paris(2026, 3, 8, 12, 0, 0), visitor_id=50), hit(paris(2026, 3, 16, 9, 0, 0), visitor_id=51)]
    hits += [hit(paris(2026, 3, 10, 8, 0, 0), visitor_id=52, flags=["invalid_uai"])]
    return hits


def test_visit_rollups_equal_direct_queries(db: Db) -> None:
    db.insert(_mixed_hits())
    db.rebuild()
    measures = f"count(), uniqExact({USERS}), sum(duration), sum(pageviews), sum(actions), sum(is_bounce)"
    for rollup in VISIT_ROLLUPS:  # every tier, whether built from visits or merged from a finer one
        merged = (f"sum(visites), {rollup.users_merge}(utilisateurs), sum(duree), sum(pages_vues), sum(actions), "
                  "sum(rebonds)")
        if rollup.source:  # states merge only within one function
            assert BY_TABLE[rollup.source].users == rollup.users
        key = ", ".join(rollup.dims)
        expr = "day" if rollup.period == "day" else "toMonday(day)"
        array_join = "ARRAY JOIN services AS service" if rollup.by_service else ""
        direct = db.client.query(
            f"SELECT {expr} AS p, {key}, {measures} FROM dnma.visits {array_join} GROUP BY p, {key} ORDER BY p, {key}"
        ).result_rows
        rolled = db.client.query(
            f"SELECT {rollup.period} AS p, {key}, {merged} FROM dnma.{rollup.table} GROUP BY p, {key} "
            f"ORDER BY p, {key}"
        ).result_rows
        assert direct == rolled and len(direct) >= 8, rollup.table
        # by service: a visit counts once in each service it touched, whatever the tier
        if rollup.by_service:
            direct = db.client.query(
                f"SELECT {expr} AS p, service, {measures} FROM dnma.visits ARRAY JOIN services AS service "
                f"GROUP BY p, service ORDER BY p, service"
            ).result_rows
            rolled = db.client.query(
                f"SELECT {rollup.period} AS p, service, {merged} FROM dnma.{rollup.table} "
                f"GROUP BY p, service ORDER BY p, service"
            ).result_rows
            assert direct == rolled, rollup.table
    assert [r[0].isoformat() for r in db.client.query(
        "SELECT DISTINCT debutsemaine FROM dnma.visits_weekly ORDER BY 1").result_rows] == [
        "2026-03-02", "2026-03-09", "2026-03-16"]
    # a month merges daily states: distinct users over the month, not a sum of days
    for table in ("visits_daily", "visits_national_daily"):
        merge = BY_TABLE[table].users_merge
        month = db.scalar(f"SELECT {merge}(utilisateurs) FROM dnma.{table} WHERE toYYYYMM(day) = 202603")
        assert month == db.scalar(f"SELECT uniqExact({USERS}) FROM dnma.visits WHERE toYYYYMM(day) = 202603")
        assert month < db.scalar(f"SELECT sum(u) FROM (SELECT {merge}(utilisateurs) u FROM dnma.{table} "
                                 "GROUP BY day)")


def test_inline_dates_writes_literals_and_their_offsets() -> None:
    sql = "toDate(ts) BETWEEN {day:Date} - 1 AND {day:Date}+1 AND x = {day:Date} AND y = {n:UInt8} AND w >= {week:Date} + 6"
    out = inline_dates(sql, {"day": date(2026, 3, 1), "week": date(2026, 12, 28)})
    assert out == ("toDate(ts) BETWEEN '2026-02-28' AND '2026-03-02' AND x = '2026-03-01' AND y = {n:UInt8} "
                   "AND w >= '2027-01-03'")
    with pytest.raises(TypeError):
        inline_dates("day = {day:Date}", {"day": datetime(2026, 3, 1, 12)})
    with pytest.raises(KeyError):
        inline_dates("day = {day:Date}", {})


def test_rollup_for_picks_the_coarsest_tier() -> None:
    assert rollup_for({"profil", "device"}) == "visits_national_daily"
    assert rollup_for({"degre"}) == "visits_national_daily"  # never a services rollup without service
    assert rollup_for({"departement", "device"}) == "visits_territoires_daily"
    assert rollup_for({"service"}) == "visits_services_national_daily"
    assert rollup_for({"service", "projet"}) == "visits_services_daily"
    assert rollup_for({"uai"}) == "visits_daily"
    assert rollup_for({"uai", "profil"}, "debutsemaine") == "visits_weekly"
    with pytest.raises(ValueError):
        rollup_for({"uai", "service"})  # one establishment's services: read dnma.visits


def test_weekly_rollup_follows_a_late_day(db: Db) -> None:
    db.insert(_mixed_hits())
    db.rebuild()
    before = db.scalar("SELECT sum(visites) FROM dnma.visits_weekly WHERE debutsemaine = '2026-03-09'")
    db.insert([hit(paris(2026, 3, 12, 9, 0, 0) + timedelta(hours=i), visitor_id=900 + i) for i in range(3)])
    assert db.rebuild()["days"] == ["2026-03-12"]
    assert db.scalar("SELECT sum(visites) FROM dnma.visits_weekly WHERE debutsemaine = '2026-03-09'") == before + 3
    assert db.scalar("SELECT count() FROM dnma.visits WHERE toMonday(day) = '2026-03-09'") == before + 3


def test_hit_rollups_equal_direct_queries(db: Db) -> None:
    db.insert(_mixed_hits())
    dims = "site_id, projet, uai, profil, service, device, action"
    direct = db.client.query(
        f"SELECT toDate(ts) AS day, {dims}, count(), uniq({USERS}) FROM dnma.hits "
        f"WHERE NOT has(flags, 'invalid_uai') GROUP BY day, {dims} ORDER BY day, {dims}"
    ).result_rows
    rolled = db.client.query(
        f"SELECT day, {dims}, sum(hits), uniqMerge(utilisateurs) FROM dnma.hits_daily "
        f"GROUP BY day, {dims} ORDER BY day, {dims}"
    ).result_rows
    assert direct == rolled and len(direct) > 10
    hourly = db.client.query(
        "SELECT sum(hits), uniqMerge(utilisateurs) FROM dnma.hits_hourly WHERE hour >= '2026-03-10 08:00:00' "
        "AND hour < '2026-03-10 09:00:00'").result_rows[0]
    assert hourly == db.client.query(
        f"SELECT count(), uniq({USERS}) FROM dnma.hits WHERE NOT has(flags, 'invalid_uai') AND "
        "toStartOfHour(ts) = toDateTime('2026-03-10 08:00:00', 'Europe/Paris')").result_rows[0]


def test_cli_aggregate_once_and_days(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    db.insert([hit(paris(2026, 3, 10, 10, 0, 0)), hit(paris(2026, 3, 11, 10, 0, 0))])
    db.client.close()  # one process owns a chDB directory at a time
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNMA_")}
    env.update(DNMA_DATA_DIR=str(tmp_path), DNMA_CLICKHOUSE_DSN=db.settings.resolved_dsn, DNMA_HITS_TTL_MONTHS="1200")
    run = [sys.executable, "-m", "cli", "aggregate"]
    once = subprocess.run([*run, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert once.returncode == 0, once.stderr
    assert '"days": ["2026-03-10", "2026-03-11"]' in once.stdout
    again = subprocess.run([*run, "--days", "2026-03-11"], env=env, capture_output=True, text=True, timeout=120)
    assert '"days": ["2026-03-11"]' in again.stdout and '"visits": 1' in again.stdout
