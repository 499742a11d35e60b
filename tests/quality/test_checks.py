"""Each check on real chDB: real hits reproducing the fault open an alert with the right scope and
figures; re-running the same window updates without duplicating; clean traffic resolves it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from aggregator.checks.runner import run_checks
from tests.quality.conftest import (
    REF_35_1D,
    SITE_BZH,
    SITE_CRE,
    SITE_UAIS,
    clean_hits,
    current_alerts,
    hit,
    insert_hits,
    make_uai,
    paris,
)

NOW = paris(2024, 10, 15, 12, 0)  # a Tuesday in term time (Toussaint starts on the 19th)


def opened(transitions: list[Any], check: str) -> dict[tuple[str, str], Any]:
    return {(t.scope_kind, t.scope_value): t for t in transitions if t.check == check and t.change == "opened"}


def resolved(transitions: list[Any], check: str) -> set[tuple[str, str]]:
    return {(t.scope_kind, t.scope_value) for t in transitions if t.check == check and t.change == "resolved"}


def rows_of(client: Any, check: str) -> int:
    return int(client.query("SELECT count() FROM dnma.quality_alerts FINAL WHERE `check` = {c:String}",
                            parameters={"c": check}).result_rows[0][0])


def cycle(env: Any, check: str, faulty: list[dict[str, Any]], scope: tuple[str, str], observed: float) -> Any:
    """Fault -> opened with `observed`; same window again -> nothing new; a clean next day -> resolved."""
    client, settings = env
    insert_hits(client, clean_hits(SITE_BZH, NOW - timedelta(hours=20), 300) + faulty)
    first = run_checks(client, settings, only=[check], now=NOW)
    alert = opened(first, check)[scope]
    assert alert.observed == pytest.approx(observed, rel=1e-3)
    assert alert.message
    again = run_checks(client, settings, only=[check], now=NOW + timedelta(minutes=20))
    assert again == []
    assert rows_of(client, check) == 1
    row = [r for r in current_alerts(client, check) if (r[1], r[2]) == scope][0]
    # The second run moved last_seen on; first_seen stays the first run's.
    assert row[3] == "open" and (row[8], row[9]) == (NOW.timestamp(), (NOW + timedelta(minutes=20)).timestamp())
    later = NOW + timedelta(days=1)
    insert_hits(client, clean_hits(SITE_BZH, later - timedelta(hours=20), 300))
    assert scope in resolved(run_checks(client, settings, only=[check], now=later), check)
    assert [r[3] for r in current_alerts(client, check) if (r[1], r[2]) == scope] == ["resolved"]
    assert rows_of(client, check) == 1
    return alert


def test_invalid_uai(env: Any) -> None:
    bad = [hit(SITE_BZH, NOW - timedelta(hours=3, seconds=i * 7), uai="0350000X", flags=["invalid_uai"],
               visitor_id=i, url=f"/x{i}") for i in range(30)]
    alert = cycle(env, "invalid_uai", bad, ("site", "1"), 30 / 330)
    assert "0350000X" in alert.message


def test_unknown_uai(env: Any) -> None:
    unknown = [hit(SITE_BZH, NOW - timedelta(hours=2, seconds=i * 9), uai=make_uai(35, 9000 + i % 4), visitor_id=i,
                   url=f"/u{i}") for i in range(40)]
    cycle(env, "unknown_uai", unknown, ("site", "1"), 40 / 340)


def test_missing_properties(env: Any) -> None:
    missing = [hit(SITE_BZH, NOW - timedelta(hours=1, seconds=i * 11), uai=REF_35_1D[0], service="", visitor_id=i,
                   url=f"/m{i}") for i in range(50)]
    cycle(env, "missing_properties", missing, ("site", "1"), 50 / 350)


def test_vocabulary_lists_values_with_counts(env: Any) -> None:
    odd = [hit(SITE_BZH, NOW - timedelta(hours=1, seconds=i * 13), uai=REF_35_1D[1], service="notes_x", visitor_id=i,
               url=f"/v{i}") for i in range(12)]
    odd += [hit(SITE_BZH, NOW - timedelta(hours=2, seconds=i * 13), uai=REF_35_1D[1], profil="PROF", visitor_id=i,
                url=f"/w{i}") for i in range(3)]
    alert = cycle(env, "vocabulary", odd, ("site", "1"), 15)
    assert "SERVICE=notes_x (12)" in alert.message and "PROFIL=PROF (3)" in alert.message


def test_perimeter_degree_and_territory(env: Any) -> None:
    client, settings = env
    college_94 = make_uai(94, 700)
    client.insert("dnma.etablissements", [[college_94, "2D", "094", "Créteil", "11"]],
                  column_names=["uai", "degre", "departement_code", "academie", "region_code"])
    insert_hits(client, clean_hits(SITE_CRE, NOW - timedelta(hours=20), 300))
    wrong = [hit(SITE_CRE, NOW - timedelta(hours=2, seconds=i * 17), uai=REF_35_1D[i % 3], visitor_id=i, url=f"/t{i}")
             for i in range(20)]
    wrong += [hit(SITE_CRE, NOW - timedelta(hours=3, seconds=i * 17), uai=college_94, visitor_id=i, url=f"/d{i}")
              for i in range(10)]
    insert_hits(client, wrong)
    alerts = opened(run_checks(client, settings, only=["perimeter"], now=NOW), "perimeter")
    assert set(alerts) == {("site", "2")}  # site 1 (035, 1D+2D) sends nothing outside
    assert alerts[("site", "2")].observed == pytest.approx(30 / 330, rel=1e-3)
    details = json.loads(client.query("SELECT details FROM dnma.quality_alerts_current WHERE `check` = 'perimeter'").result_rows[0][0])
    assert details["motifs"] == {"territoire": 20, "degre": 10}
    later = NOW + timedelta(days=1)
    insert_hits(client, clean_hits(SITE_CRE, later - timedelta(hours=20), 300))
    assert resolved(run_checks(client, settings, only=["perimeter"], now=later), "perimeter") == {("site", "2")}


def test_coverage(env: Any) -> None:
    """Coverage reads visits (dnma/indicators.py's "active"), so the hits are sessionized first."""
    from aggregator.sessionizer import rebuild_days

    client, settings = env
    few = SITE_UAIS[SITE_BZH][:10]
    insert_hits(client, [hit(SITE_BZH, NOW - timedelta(days=3, minutes=i), uai=few[i % 10], visitor_id=i, url=f"/c{i}")
                         for i in range(200)])
    rebuild_days(client, settings, [(NOW - timedelta(days=3)).date()])
    alerts = opened(run_checks(client, settings, only=["coverage"], now=NOW), "coverage")
    assert alerts[("site", "1")].observed == pytest.approx(10 / 40)
    assert alerts[("site", "2")].observed == 0 and alerts[("site", "2")].severity == "critical"
    insert_hits(client, clean_hits(SITE_BZH, NOW, 100) + clean_hits(SITE_CRE, NOW, 100))
    rebuild_days(client, settings, [NOW.date()])
    later = NOW + timedelta(days=1)
    assert resolved(run_checks(client, settings, only=["coverage"], now=later), "coverage") == {("site", "1"), ("site", "2")}


def test_coverage_is_not_judged_in_summer(env: Any) -> None:
    client, settings = env
    assert run_checks(client, settings, only=["coverage"], now=paris(2024, 8, 20, 12)) == []


def test_lateness(env: Any) -> None:
    late = [hit(SITE_BZH, NOW - timedelta(hours=14, seconds=i), received_at=NOW - timedelta(hours=2), uai=REF_35_1D[2],
                visitor_id=i, url=f"/l{i}") for i in range(40)]
    cycle(env, "lateness", late, ("site", "1"), 40 / 340)


def test_clock_skew(env: Any) -> None:
    future = [hit(SITE_BZH, NOW + timedelta(hours=1, seconds=i), received_at=NOW - timedelta(hours=1), uai=REF_35_1D[2],
                  visitor_id=i, url=f"/f{i}") for i in range(40)]
    cycle(env, "clock_skew", future, ("site", "1"), 40 / 340)


def test_duplicates(env: Any) -> None:
    resent = clean_hits(SITE_BZH, NOW - timedelta(hours=20), 30)  # the same 30 page views, sent twice
    cycle(env, "duplicates", resent, ("site", "1"), 30 / 330)


def _school_hours(site_id: int, start: Any, days: int, per_hour: int = 10) -> list[dict[str, Any]]:
    rows = []
    uais = SITE_UAIS[site_id]
    for d in range(days):
        day = start + timedelta(days=d)
        for h in range(8, 20):
            for i in range(per_hour):
                t = day.replace(hour=h, minute=i * 60 // per_hour)
                rows.append(hit(site_id, t, uai=uais[(d + h + i) % len(uais)], visitor_id=d * 1000 + h * 10 + i,
                                url=f"/s/{d}/{h}/{i}"))
    return rows


def test_silence_learns_the_week_and_skips_holidays(env: Any) -> None:
    client, settings = env
    history = _school_hours(SITE_BZH, paris(2024, 9, 9), 36)  # 9 Sep -> 14 Oct, every day 08:00-20:00
    today = [hit(SITE_BZH, paris(2024, 10, 15, 8, m), uai=REF_35_1D[0], visitor_id=m, url=f"/today{m}") for m in range(0, 60, 6)]
    insert_hits(client, history + today)
    # 03:00: silent since 20:00 the day before, as every night: no alert.
    assert run_checks(client, settings, only=["silence"], now=paris(2024, 10, 15, 3)) == []
    alerts = opened(run_checks(client, settings, only=["silence"], now=paris(2024, 10, 15, 14)), "silence")
    assert set(alerts) == {("site", "1")}
    assert alerts[("site", "1")].observed == pytest.approx(14 * 60 - (8 * 60 + 54))  # minutes since 08:54
    insert_hits(client, [hit(SITE_BZH, paris(2024, 10, 15, 14, m), uai=REF_35_1D[0], visitor_id=m, url=f"/back{m}")
                         for m in range(0, 60, 5)])
    assert resolved(run_checks(client, settings, only=["silence"], now=paris(2024, 10, 15, 15, 10)), "silence") == {("site", "1")}
    # Toussaint (zone B from 19 Oct): the same silence on a holiday Tuesday does not fire.
    assert run_checks(client, settings, only=["silence"], now=paris(2024, 10, 22, 14)) == []


def test_volume_band_on_same_weekday(env: Any) -> None:
    client, settings = env
    day = paris(2024, 10, 15)
    rows = []
    for w in range(1, 7):
        rows += clean_hits(SITE_BZH, day - timedelta(weeks=w) + timedelta(hours=8), 500 + 7 * w, spacing_s=60)
    rows += clean_hits(SITE_BZH, day + timedelta(hours=8), 100, spacing_s=60)
    insert_hits(client, rows)
    alerts = opened(run_checks(client, settings, only=["volume"], now=paris(2024, 10, 16, 6)), "volume")
    assert set(alerts) == {("site", "1"), ("projet", "ENT_BZH"), ("academie", "Rennes")}
    assert alerts[("site", "1")].observed == 100 and alerts[("site", "1")].expected == pytest.approx(524.5)
    # Late hits complete the day: re-judging the same day resolves it.
    insert_hits(client, clean_hits(SITE_BZH, day + timedelta(hours=12), 420, spacing_s=30))
    assert resolved(run_checks(client, settings, only=["volume"], now=paris(2024, 10, 16, 7)), "volume") == set(alerts)


class _StopAfter:
    """A stop event that becomes set once `n` checks have started (the loader's SIGTERM mid-run)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_stopping_loader_ends_the_run_between_two_checks(env: Any) -> None:
    client, settings = env
    insert_hits(client, clean_hits(SITE_BZH, NOW - timedelta(hours=20), 50))
    run_checks(client, settings, now=NOW, stop=_StopAfter(2))  # type: ignore[arg-type]
    ran = client.query("SELECT count() FROM dnma.quality_check_runs WHERE ran_at = {t:DateTime}",
                       parameters={"t": NOW}).result_rows[0][0]
    assert ran == 2
    later = NOW + timedelta(minutes=20)
    run_checks(client, settings, now=later)
    assert client.query("SELECT count() FROM dnma.quality_check_runs WHERE ran_at = {t:DateTime}",
                        parameters={"t": later}).result_rows[0][0] > 2
