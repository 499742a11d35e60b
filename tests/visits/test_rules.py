"""Each visit rule on hand-made hits inserted straight into dnma.hits, rebuilt by the sessionizer."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import pytest

from aggregator.rollups import VISIT_ROLLUPS

from .conftest import Db, hit, open_db, paris

T0 = paris(2026, 3, 10, 10, 0, 0)  # a Tuesday


def at(seconds: int, **fields: object) -> dict[str, object]:
    return hit(T0 + timedelta(seconds=seconds), **fields)


def test_midnight_in_paris_splits_the_visit_and_sets_the_day(db: Db) -> None:
    # 23:50 then 00:05 Paris (22:50 / 23:05 UTC: the same UTC day, two Paris days)
    db.insert([hit(paris(2026, 1, 14, 23, 50, 0)), hit(paris(2026, 1, 15, 0, 5, 0))])
    db.rebuild()
    visits = db.visits()
    assert [v["day"] for v in visits] == [date(2026, 1, 14), date(2026, 1, 15)]
    assert all(v["actions"] == 1 and v["is_bounce"] == 1 for v in visits)


def test_gap_of_1799_s_continues_and_1800_s_starts(db: Db) -> None:
    db.insert([at(0), at(1799), at(1799 + 1800)])
    db.rebuild()
    visits = db.visits()
    assert [(v["actions"], v["duration"]) for v in visits] == [(2, 1800), (1, 1)]


def test_ping_extends_the_visit_and_resets_the_timer(db: Db) -> None:
    db.insert([at(0), at(1700, action="ping"), at(3400, action="ping"), at(5000)])
    db.rebuild()
    [visit] = db.visits()
    assert (visit["actions"], visit["hits"], visit["duration"]) == (2, 4, 5001)


def test_late_ping_is_dropped_and_ping_never_starts_a_visit(db: Db) -> None:
    db.insert([
        at(0, action="ping"),  # nothing live yet: dropped
        at(100),
        at(100 + 1800, action="ping"),  # too late: dropped
        at(100 + 1900, action="ping"),  # still nothing live: dropped
        hit(T0, visitor_id=7, action="ping"), hit(T0 + timedelta(seconds=60), visitor_id=7, action="ping"),
    ])
    db.rebuild()
    visits = db.visits()
    assert [(v["visitor_id"], v["start"], v["duration"], v["hits"]) for v in visits] == [
        (42, int(T0.timestamp()) + 100, 1, 1)
    ]


def test_new_visit_forces_a_new_visit(db: Db) -> None:
    db.insert([at(0), at(10, new_visit=1), at(20), at(25, action="ping", new_visit=1)])
    db.rebuild()
    assert [v["hits"] for v in db.visits()] == [1, 3]


def test_campaign_change_starts_a_visit_and_empty_campaign_continues(db: Db) -> None:
    db.insert([
        at(0), at(10, campaign="rentree"), at(20), at(30, campaign="rentree"), at(40, campaign="noel"),
        hit(T0, visitor_id=8, campaign="noel"), hit(T0 + timedelta(seconds=5), visitor_id=8),
    ])
    db.rebuild()
    assert [(v["visitor_id"], v["campaign"], v["actions"]) for v in db.visits()] == [
        (8, "noel", 2), (42, "", 1), (42, "rentree", 3), (42, "noel", 1)
    ]


def test_uid_defines_the_visitor_and_the_users(db: Db) -> None:
    # Two devices of one logged-in user share the uid-derived visitor id; a cookie visitor differs.
    db.insert([
        at(0, visitor_id=1001, user_hash=0), at(30, visitor_id=5, user_hash=77, device="smartphone"),
        at(60, visitor_id=5, user_hash=77, device="ordinateur"), at(90, visitor_id=1002),
    ])
    db.rebuild()
    visits = db.visits()
    assert sorted((v["visitor_id"], v["user_hash"], v["device"]) for v in visits) == [
        (5, 77, "smartphone"), (1001, 0, ""), (1002, 0, "")
    ]
    users = db.scalar("SELECT groupBitmapMerge(utilisateurs) FROM dnma.visits_daily")  # exact (m0019)
    assert users == 3


def test_matomo_calibration_example(db: Db) -> None:
    # TRACKING.md: one visitor, two visits on one day, 8 actions -> 2 visits, 1 unique visitor,
    # 8 actions, max 7, 1 bounce (50 %).
    db.insert([at(i * 60) for i in range(7)] + [at(6 * 60 + 3600, action="download")])
    db.rebuild()
    row = db.client.query(
        "SELECT count(), uniqExact(visitor_id), sum(actions), max(actions), sum(is_bounce) FROM dnma.visits"
    ).result_rows[0]
    assert row == (2, 1, 8, 7, 1)


def test_invalid_uai_hits_are_excluded_other_flags_count(db: Db) -> None:
    db.insert([
        at(0, flags=["invalid_uai"], uai="BAD"), at(10, flags=["missing_service"], service=""),
        at(20, flags=["unknown_profil"]), hit(T0, visitor_id=9, flags=["invalid_uai"]),
    ])
    db.rebuild()
    [visit] = db.visits()
    assert (visit["visitor_id"], visit["actions"], visit["uai"], visit["start"]) == (
        42, 2, "0350001A", int(T0.timestamp()) + 10
    )


def test_attributes_come_from_the_first_hit_carrying_them_and_services_accumulate(db: Db) -> None:
    db.insert([
        at(0, uai="", profil="", service="accueil", type="NATIF"),
        at(1, uai="0350002B", profil="", service="notes", outil="PRONOTE", type="TIERS", projet="ENT_X"),
        at(2, uai="0350003C", profil="PARENT", service="accueil", device="tablette", os="ios"),
        at(3, action="content", service="absences"),
    ])
    db.rebuild()
    [v] = db.visits()
    assert (v["uai"], v["profil"], v["device"], v["os"], v["projet"]) == (
        "0350002B", "PARENT", "tablette", "ios", "ENT_X"
    )
    assert v["services"] == ["absences", "accueil", "notes"] and v["outils"] == ["PRONOTE"]
    assert (v["type_natif"], v["type_tiers"], v["actions"], v["hits"]) == (1, 1, 3, 4)


def test_referential_attributes_are_filled_from_the_dictionary(db: Db) -> None:
    db.client.command(
        "INSERT INTO dnma.etablissements (uai, degre, academie, departement, region, libelle_nature, secteur)"
        " VALUES ('0350002B', '2D', 'Rennes', 'Ille-et-Vilaine', 'Bretagne', 'COLLEGE', 'PU')"
    )
    db.client.command("SYSTEM RELOAD DICTIONARY dnma.etablissements_dict")
    db.insert([at(0, uai="0350002B"), hit(T0, visitor_id=3, uai="9999999Z")])
    db.rebuild()
    got = {v["uai"]: (v["degre"], v["academie"], v["departement"], v["region"], v["nature"], v["secteur"])
           for v in db.visits()}
    assert got == {
        "0350002B": ("2D", "Rennes", "Ille-et-Vilaine", "Bretagne", "COLLEGE", "PU"),
        "9999999Z": ("", "", "", "", "", ""),
    }


def test_referential_attributes_come_from_the_school_year_of_the_day(db: Db) -> None:
    """The referential is kept per school year (m0011): a day's visits take the labels of its own
    year (1 August starts one), or of the loaded year nearest to it when that year is missing."""
    for annee, academie in ((2024, "Rennes-2024"), (2026, "Rennes-2026")):
        db.client.command(f"INSERT INTO dnma.etablissements_annees (annee, uai, academie) "
                          f"VALUES ({annee}, '0350002B', '{academie}')")
    db.client.command("SYSTEM RELOAD DICTIONARY dnma.etablissements_annees_dict")
    # 2025-2026 is not loaded: 2024 and 2026 are as near, the earlier wins. (Days of 2026 only:
    # the hits' TTL runs on the host's clock.)
    days = {paris(2026, 1, 15, 10, 0, 0): "Rennes-2024", paris(2026, 7, 31, 10, 0, 0): "Rennes-2024",
            paris(2026, 8, 1, 9, 0, 0): "Rennes-2026"}
    db.insert([hit(t, visitor_id=n, uai="0350002B") for n, t in enumerate(days)])
    db.rebuild()
    assert {v["day"]: v["academie"] for v in db.visits()} == {t.date(): a for t, a in days.items()}


def test_site_time_zone_sets_the_day(tmp_path: Path) -> None:
    sites = [{"id": 1, "name": "a", "main_url": "https://a"},
             {"id": 2, "name": "b", "main_url": "https://b", "timezone": "America/Cayenne"}]
    db = open_db(tmp_path, sites)
    try:
        # 02:00 Paris on the 15th is 22:00 on the 14th in Cayenne (UTC-3)
        db.insert([hit(paris(2026, 1, 15, 2, 0, 0), site_id=1), hit(paris(2026, 1, 15, 2, 0, 0), site_id=2)])
        assert db.rebuild()["days"] == ["2026-01-14", "2026-01-15"]
        assert [(v["site_id"], v["day"]) for v in db.visits()] == [(1, date(2026, 1, 15)), (2, date(2026, 1, 14))]
    finally:
        db.client.close()


def _random_hits(seed: int, n: int) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(hit(
            paris(2026, 3, 9, 0, 0, 0) + timedelta(seconds=rnd.randrange(0, 3 * 86400, 7)),
            visitor_id=rnd.randrange(1, 6),
            action=rnd.choice(["pageview", "pageview", "ping", "event", "download", "content"]),
            new_visit=int(rnd.random() < 0.05),
            campaign=rnd.choice(["", "", "", "a", "b"]),
            service=rnd.choice(["notes", "absences", ""]),
        ))
    return out


def test_shuffled_and_late_import_give_identical_visits(db: Db) -> None:
    hits = _random_hits(1, 3000)
    db.insert(hits)
    db.rebuild()
    reference = db.visits()
    assert len(reference) > 10
    for table in ("hits", "hits_fingerprints", "visits", "visits_fingerprints"):
        db.client.command(f"TRUNCATE TABLE dnma.{table}")
    shuffled = hits[:]
    random.Random(2).shuffle(shuffled)
    early, late = shuffled[:2000], shuffled[2000:]
    db.insert(early)
    db.rebuild()
    later = T0 + timedelta(days=30)
    for i in range(0, len(late), 250):  # the late import, in batches, received much later
        db.insert([dict(h, received_at=later) for h in late[i:i + 250]])
    assert db.rebuild()["days"]  # something was dirty
    assert db.visits() == reference


def test_rebuild_is_idempotent_and_incremental(db: Db) -> None:
    db.insert(_random_hits(3, 2000))
    first = db.rebuild()
    assert first["days"] == ["2026-03-09", "2026-03-10", "2026-03-11"]
    before = db.visits()
    assert db.rebuild()["days"] == []  # nothing dirty
    again = db.rebuild([date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)])
    assert again["visits"] == first["visits"] and db.visits() == before
    # a late import touching one old day rebuilds exactly that day
    db.insert([hit(paris(2026, 3, 10, 23, 59, 0), visitor_id=999)])
    result = db.rebuild()
    assert result["days"] == ["2026-03-10"]
    assert result["rollup_partitions"] == {v.table: 1 for v in VISIT_ROLLUPS}
    after = db.visits()
    assert len(after) == len(before) + 1
    assert [v for v in after if v["visitor_id"] != 999] == before


def test_a_day_whose_hits_vanished_is_emptied_when_rebuilt_explicitly(db: Db) -> None:
    db.insert([at(0), hit(T0 + timedelta(days=1))])
    db.rebuild()
    db.client.command("ALTER TABLE dnma.hits DELETE WHERE toDate(ts) = '2026-03-10' SETTINGS mutations_sync = 1")
    assert db.rebuild()["days"] == []  # vanished hits (TTL) do not make a day dirty
    db.rebuild([date(2026, 3, 10)])
    assert [v["day"] for v in db.visits()] == [date(2026, 3, 11)]
    assert db.scalar("SELECT count() FROM dnma.visits_daily WHERE day = '2026-03-10'") == 0


def test_day_fingerprints_from_the_hourly_table_equal_a_scan_of_the_hits(tmp_path: Path) -> None:
    """Paris, a whole-hour zone (Cayenne) and a fractional one (Marquesas, -9:30, scanned), across
    the October DST change, loaded in two inserts: the hourly sums equal a direct scan per local day."""
    from aggregator.visits_query import fingerprint_hash, fingerprints_select, local_day, whole_hour_offset

    zones = {2: "America/Cayenne", 3: "Pacific/Marquesas"}
    assert whole_hour_offset("Europe/Paris") and whole_hour_offset(zones[2]) and not whole_hour_offset(zones[3])
    sites = [{"id": 1, "name": "a", "main_url": "https://a"}] + [
        {"id": s, "name": f"s{s}", "main_url": f"https://s{s}", "timezone": tz} for s, tz in zones.items()]
    db = open_db(tmp_path, sites)
    try:
        rng = random.Random(5)
        start = paris(2026, 10, 23, 0, 0, 0)
        hits = [hit(start + timedelta(seconds=rng.randrange(5 * 86400)), site_id=rng.choice([1, 2, 3]),
                    visitor_id=rng.randrange(50), action=rng.choice(["pageview", "ping", "event"]))
                for _ in range(4000)]
        db.insert(hits[:2500])
        db.insert(hits[2500:])
        scan = db.client.query(
            f"SELECT {local_day(zones)} AS day, count(), sum({fingerprint_hash()}) FROM dnma.hits GROUP BY day "
            "ORDER BY day").result_rows
        hourly = db.client.query(f"SELECT * FROM ({fingerprints_select(db.r, zones)}) ORDER BY day").result_rows
        assert len(scan) >= 5 and hourly == scan
        window = (date(2026, 10, 24), date(2026, 10, 26))
        in_window = db.client.query(
            f"SELECT * FROM ({fingerprints_select(db.r, zones, window)}) ORDER BY day").result_rows
        # A day inside the Paris window is whole (the sessionizer pads its windows by a day)
        assert [r for r in in_window if r[0] == date(2026, 10, 25)] == [r for r in scan if r[0] == date(2026, 10, 25)]
    finally:
        db.client.close()


def test_a_dirty_day_is_rebuilt_for_its_changed_sites_only(tmp_path: Path) -> None:
    """Late hits on one site and a hit deleted by hand on another (a zone with a fractional offset,
    whose fingerprints are scanned from the hits): the day is rebuilt for those two sites only,
    the other sites' visits are copied as they were, and the result equals a whole rebuild."""
    zones = {2: "America/Cayenne", 3: "Pacific/Marquesas"}
    sites = [{"id": s, "name": f"s{s}", "main_url": f"https://s{s}", "timezone": zones.get(s, "Europe/Paris")}
             for s in range(1, 7)]
    db = open_db(tmp_path, sites)
    try:
        rng = random.Random(11)
        start = paris(2026, 3, 10, 0, 0, 0)
        hits = [hit(start + timedelta(seconds=rng.randrange(0, 2 * 86400, 5)), site_id=site,
                    visitor_id=rng.randrange(60), action=rng.choice(["pageview", "pageview", "ping", "event"]),
                    service=rng.choice(["notes", "absences"]))
                for site in range(1, 7) for _ in range(600)]
        db.insert(hits)
        first = db.rebuild()
        assert first["days"] and first["partial_days"] == []  # nothing recorded yet: whole days
        assert db.rebuild()["days"] == []
        untouched = db.visits("site_id NOT IN (1, 3)")

        db.insert([hit(paris(2026, 3, 10, 14, 5, s), site_id=1, visitor_id=v) for s, v in ((1, 3), (9, 4), (30, 5))]
                  + [hit(paris(2026, 3, 10, 14, 20, 0), site_id=1, visitor_id=999, service="absences")])
        victim = db.client.query("SELECT visitor_id, toUInt32(ts) FROM dnma.hits WHERE site_id = 3 "
                                 "AND action = 'pageview' ORDER BY ts LIMIT 1 OFFSET 100").result_rows[0]
        db.client.command(f"ALTER TABLE dnma.hits DELETE WHERE site_id = 3 AND visitor_id = {victim[0]} "
                          f"AND toUInt32(ts) = {victim[1]} SETTINGS mutations_sync = 1")
        partial = db.rebuild()
        assert partial["days"] and partial["partial_days"] == partial["days"]
        after = db.visits()
        assert any(v["visitor_id"] == 999 for v in after)
        assert db.visits("site_id NOT IN (1, 3)") == untouched
        assert db.rebuild()["days"] == []
        whole = db.rebuild([date.fromisoformat(d) for d in partial["days"]])
        assert whole["partial_days"] == []
        assert db.visits() == after
        assert db.scalar("SELECT sum(visites) FROM dnma.visits_daily") == len(after)
    finally:
        db.client.close()


def test_a_stopping_pass_builds_no_further_day_and_leaves_the_rest_dirty(db: Db) -> None:
    import threading

    from aggregator.sessionizer import rebuild_days

    db.insert(_random_hits(4, 600))
    stop = threading.Event()
    stop.set()
    assert rebuild_days(db.client, db.settings, None, stop)["days"] == []
    assert db.visits() == []
    assert db.rebuild()["days"] == ["2026-03-09", "2026-03-10", "2026-03-11"]  # still dirty: built now


@pytest.mark.parametrize("chunk_days", [1, 16])
def test_a_stop_during_the_visits_phase_still_gives_the_built_days_their_rollups(  # type: ignore[no-untyped-def]
        db: Db, monkeypatch, chunk_days: int) -> None:
    """rebuild_days builds the visits of a chunk of days, then the rollups of those built: a stop
    in a visits phase must not leave a day with new visits, old rollups and a fingerprint saying
    'built'. Chunks of one day: the stop falls between chunks."""
    import threading

    from aggregator import sessionizer

    monkeypatch.setattr(sessionizer, "CHUNK_DAYS", chunk_days)
    db.insert(_random_hits(4, 600))
    stop = threading.Event()
    real = sessionizer.build_visits

    def build_then_stop(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return real(*args, **kwargs)
        finally:
            stop.set()  # the day in hand (one per worker) completes, no further one starts

    monkeypatch.setattr(sessionizer, "build_visits", build_then_stop)
    first = sessionizer.rebuild_days(db.client, db.settings, None, stop)
    monkeypatch.setattr(sessionizer, "build_visits", real)
    everything = ["2026-03-09", "2026-03-10", "2026-03-11"]
    assert first["days"] and first["days"] == everything[:len(first["days"])] and first["days"] != everything
    for day in first["days"]:
        visits = db.scalar("SELECT count() FROM dnma.visits WHERE day = {d:Date}", d=date.fromisoformat(day))
        assert visits > 0
        for rollup in VISIT_ROLLUPS:
            if rollup.period == "day" and not rollup.by_service:
                assert db.scalar(f"SELECT sum(visites) FROM dnma.{rollup.table} WHERE day = {{d:Date}}",
                                 d=date.fromisoformat(day)) == visits, rollup.table
    week = db.scalar("SELECT sum(visites) FROM dnma.visits_weekly")
    assert week == db.scalar("SELECT count() FROM dnma.visits")
    assert db.rebuild()["days"] == everything[len(first["days"]):]  # the built ones are clean


def test_days_built_in_chunks_give_the_same_visits_and_rollups(db: Db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from aggregator import sessionizer

    db.insert(_random_hits(4, 600))
    whole = db.rebuild()
    visits = db.visits()
    rollups = {t.table: db.scalar(f"SELECT sum(visites) FROM dnma.{t.table}") for t in VISIT_ROLLUPS}
    for t in VISIT_ROLLUPS:  # a chunk whose rollups were skipped would leave its days empty
        db.client.command(f"TRUNCATE TABLE dnma.{t.table}")
    monkeypatch.setattr(sessionizer, "CHUNK_DAYS", 1)
    chunked = db.rebuild([date.fromisoformat(d) for d in whole["days"]])
    assert chunked["days"] == whole["days"] and chunked["visits_per_day"] == whole["visits_per_day"]
    assert db.visits() == visits
    assert {t.table: db.scalar(f"SELECT sum(visites) FROM dnma.{t.table}") for t in VISIT_ROLLUPS} == rollups
    assert db.rebuild()["days"] == []
