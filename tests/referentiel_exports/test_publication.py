"""The weekly open-data publication (aggregator/publication.py) and `dnma export`'s range rules, on
real chDB with the hand-made visits of refexp_data. Every instant is pinned in the test: nothing
here depends on the day it runs."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from refexp_data import ANNUAIRE_35, ANNUAIRE_94, COLLEGES, ECOLE_35, FIN, _visit, visits

from aggregator.exports import DATASETS
from aggregator.publication import (
    PublicationStopped,
    Schedule,
    decide,
    due_week,
    latest_publication,
    parse_schedule,
    publication_duty,
    publish_week,
    read_manifest,
    remove_old_weeks,
)
from dnma.settings import Settings

NAMES = [f"{name}.csv" for name in DATASETS]
MONDAY_6 = Schedule(0, datetime.strptime("06:00", "%H:%M").time())


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Settings]]:
    """Every migration (the duty reads the sessionizer's fingerprints), the referential, the visits."""
    from aggregator.migrate import migrate
    from aggregator.referentiel import load_files

    tmp = tmp_path_factory.mktemp("publication")
    settings = Settings(data_dir=tmp, clickhouse_dsn=f"chdb://{tmp / 'ch'}")
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    load_files(client, settings, [ANNUAIRE_35, ANNUAIRE_94, COLLEGES])
    rows = visits()
    names = list(rows[0])
    client.insert("dnma.visits", [[v[k] for k in names] for v in rows], column_names=names)
    yield client, settings
    client.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) - 1  # less the header


# --- the schedule, a pure decision -----------------------------------------------------------
@pytest.mark.parametrize(
    ("instant", "week"),
    [
        # Monday 2026-12-07, 06:00 Paris = 05:00Z (winter): before it the week before last is due
        ("2026-12-07T04:59:59Z", (2026, 48)),
        ("2026-12-07T05:00:00Z", (2026, 49)),
        ("2026-12-10T12:00:00Z", (2026, 49)),
        # the spring change (Sunday 2027-03-28 ends W12): Monday 06:00 is 04:00Z, summer time
        ("2027-03-29T03:59:00Z", (2027, 11)),
        ("2027-03-29T04:00:00Z", (2027, 12)),
        # the autumn change (Sunday 2026-10-25 ends W43): Monday 06:00 is 05:00Z again
        ("2026-10-26T04:30:00Z", (2026, 42)),
        ("2026-10-26T05:00:00Z", (2026, 43)),
        # 2026 has 53 ISO weeks: W53 runs 2026-12-28 .. 2027-01-03, published Monday 2027-01-04
        ("2027-01-01T10:00:00Z", (2026, 52)),
        ("2027-01-04T04:59:00Z", (2026, 52)),
        ("2027-01-04T05:00:00Z", (2026, 53)),
        ("2027-01-11T05:00:00Z", (2027, 1)),
    ],
)
def test_due_week(instant: str, week: tuple[int, int]) -> None:
    assert due_week(MONDAY_6, _z(instant)) == week


def test_schedule_decisions() -> None:
    now = _z("2026-12-07T05:30:00Z")  # Monday 06:30 Paris: 2026-W49 (11-30 .. 12-06) is due
    today = date(2026, 12, 7)
    assert decide(MONDAY_6, now, set(), [], today, True).action == "publish"
    assert decide(MONDAY_6, now, {(2026, 49)}, [], today, True).action == "published"
    assert decide(None, now, set(), [], today, True).action == "disabled"
    held = decide(MONDAY_6, now, set(), [date(2026, 12, 6)], today, True)
    assert (held.action, held.week) == ("wait", (2026, 49)) and "2026-12-06" in held.reason
    # a day being rebuilt outside the week does not hold it back
    assert decide(MONDAY_6, now, set(), [date(2026, 12, 7), date(2026, 11, 29)], today, True).action == "publish"
    assert decide(MONDAY_6, now, set(), [], today, False).action == "wait"  # loader backlog
    # no data up to the week's end (installed since, or nothing ever built): not published empty
    assert decide(MONDAY_6, now, set(), [], today, True, date(2026, 12, 7)).action == "no_data"
    assert decide(MONDAY_6, now, set(), [], today, True, None).action == "no_data"
    assert decide(MONDAY_6, now, set(), [], today, True, date(2026, 12, 6)).action == "publish"
    # a site in Polynesia (UTC-10) is still on Sunday 12-06 at 06:30 Paris
    assert decide(MONDAY_6, now, set(), [], date(2026, 12, 6), True).action == "wait"
    # the year's last ISO week, then a DST week
    assert decide(MONDAY_6, _z("2027-01-04T05:00:00Z"), {(2026, 52)}, [], date(2027, 1, 4), True).week == (2026, 53)
    assert decide(MONDAY_6, _z("2027-03-29T03:59:00Z"), {(2027, 11)}, [], date(2027, 3, 29), True).action == "published"
    assert decide(MONDAY_6, _z("2027-03-29T04:00:00Z"), {(2027, 11)}, [], date(2027, 3, 29), True).action == "publish"
    # configurable: Tuesday 18:30 Paris publishes the previous week on Tuesday evening
    tuesday = parse_schedule("Tuesday 18:30")
    assert tuesday == Schedule(1, datetime.strptime("18:30", "%H:%M").time())
    assert due_week(tuesday, _z("2026-12-08T17:29:00Z")) == (2026, 48)
    assert due_week(tuesday, _z("2026-12-08T17:30:00Z")) == (2026, 49)
    assert parse_schedule("off") is None and parse_schedule("") is None
    with pytest.raises(ValueError):
        parse_schedule("someday 06:00")


# --- publishing -----------------------------------------------------------------------------
def test_publish_week_writes_files_and_manifest(db: tuple[Any, Settings], tmp_path: Path) -> None:
    from aggregator.exports import write

    client, base = db
    settings = base.model_copy(update={"exports_dir": tmp_path / "exports"})
    lines: list[str] = []
    result = publish_week(client, settings, 2024, 2, lines.append)
    week_dir = tmp_path / "exports" / "2024-W02"
    assert (result.week, result.directory, result.revision, result.created) == ("2024-W02", week_dir, 1, True)
    assert sorted(p.name for p in week_dir.iterdir()) == sorted([*NAMES, "manifest.json"])
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["2024-W02"]  # no temporary left
    assert len(lines) >= 5
    manifest = json.loads((week_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["period"] == {"from": "2024-01-08", "to": "2024-01-14"} and manifest["partial"] is False
    assert manifest["latest_revision"] == 1 and len(manifest["revisions"]) == 1
    rev = manifest["revisions"][0]
    assert rev["directory"] == "." and rev["referential"]["rows"] > 9000 and rev["code_version"]
    for name in NAMES:
        path = week_dir / name
        assert rev["files"][name] == {"rows": _rows(path), "sha256": _sha(path)}
    # week 2024-W02 holds école 35 and the Corsican collège (the other UAIs visit in W03)
    assert rev["files"]["fr-en-dnma-par-uai-profils.csv"]["rows"] == 2
    import io

    buf = io.StringIO()
    write(client, DATASETS["fr-en-dnma-par-uai-services"], date(2024, 1, 8), date(2024, 1, 14), buf)
    assert (week_dir / "fr-en-dnma-par-uai-services.csv").read_text(encoding="utf-8") == buf.getvalue()
    # a stopping loader abandons a publication between two datasets: nothing written
    stop = threading.Event()
    stop.set()
    with pytest.raises(PublicationStopped):
        publish_week(client, settings, 2024, 1, stop=stop)
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["2024-W02"]
    # the same data again: no new revision, the files untouched
    stamps = {name: (week_dir / name).stat().st_mtime_ns for name in NAMES}
    again = publish_week(client, settings, 2024, 2)
    assert (again.revision, again.created) == (1, False)
    assert not (week_dir / "r2").exists() and len(read_manifest(week_dir)["revisions"]) == 1  # type: ignore[index]
    assert {name: (week_dir / name).stat().st_mtime_ns for name in NAMES} == stamps


def test_duty_waits_publishes_and_revises(db: tuple[Any, Settings], tmp_path: Path) -> None:
    """The loader's duty at Monday 2024-01-22 06:30 Paris: 2024-W03 (01-15 .. 01-21) is due."""
    client, base = db
    settings = base.model_copy(update={"exports_dir": tmp_path / "exports", "exports_keep_weeks": 10_000})
    now = _z("2024-01-22T05:30:00Z")
    week_dir = tmp_path / "exports" / "2024-W03"

    def fingerprint(day: str, hits: int, built: bool) -> None:
        """Hits for `day` in the sessionizer's input; `built`: as if it had built the day since."""
        client.command(f"INSERT INTO dnma.hits_fingerprints VALUES ('{day} 12:00:00', 1, {hits}, {hits * 7})")
        if built:
            total = client.query(f"SELECT sum(hits), sum(hash) FROM dnma.hits_fingerprints WHERE toDate(hour) = '{day}'")
            n, h = total.result_rows[0]
            client.command(f"INSERT INTO dnma.visits_fingerprints (day, hits, hash, built_at) "
                           f"VALUES ('{day}', {n}, {h}, now64(6))")

    fingerprint("2024-01-20", 5, built=False)  # the Saturday not built yet
    # nothing ever built (a stack installed since): the week is not published empty
    result = publication_duty(client, settings, caught_up=lambda _s: True, now=now)
    assert result == {"published": [], "revised": [], "removed": [], "waiting": None}
    fingerprint("2024-01-15", 2, built=True)
    # the Saturday still to build: the week waits
    result = publication_duty(client, settings, caught_up=lambda _s: True, now=now)
    assert result["published"] == [] and "2024-01-20" in result["waiting"]
    assert not week_dir.exists()
    fingerprint("2024-01-20", 0, built=True)  # built
    result = publication_duty(client, settings, caught_up=lambda _s: False, now=now)
    assert result["published"] == [] and "backlog" in result["waiting"]
    result = publication_duty(client, settings, caught_up=lambda _s: True, now=now)
    assert result["published"] == ["2024-W03"]
    first = {name: (week_dir / name).read_bytes() for name in NAMES}
    assert publication_duty(client, settings, caught_up=lambda _s: True, now=now)["published"] == []

    # a late visit for Wednesday 01-17: while the day is not rebuilt, nothing moves
    late = _visit(9001, date(2024, 1, 17), ECOLE_35, profil="PARENT", duration=77, user_hash=9001)
    client.insert("dnma.visits", [list(late.values())], column_names=list(late))
    fingerprint("2024-01-17", 3, built=False)
    result = publication_duty(client, settings, caught_up=lambda _s: True, now=now)
    assert result["revised"] == [] and not (week_dir / "r2").exists()
    fingerprint("2024-01-17", 0, built=True)
    result = publication_duty(client, settings, caught_up=lambda _s: True, now=now)
    assert result["revised"] == ["2024-W03"]
    manifest = read_manifest(week_dir)
    assert manifest is not None and manifest["latest_revision"] == 2
    r1, r2 = manifest["revisions"]
    assert (r1["revision"], r1["directory"], r2["revision"], r2["directory"]) == (1, ".", 2, "r2")
    assert r2["reason"] == "late data"
    latest = latest_publication(settings)
    assert latest is not None and (latest["week"], latest["revision"]) == ("2024-W03", 2)
    assert {name: (week_dir / name).read_bytes() for name in NAMES} == first  # revision 1 untouched
    for rev, directory in ((r1, week_dir), (r2, week_dir / "r2")):
        for name in NAMES:
            assert rev["files"][name] == {"rows": _rows(directory / name), "sha256": _sha(directory / name)}
    assert r1["files"]["fr-en-dnma-par-uai-profils.csv"] != r2["files"]["fr-en-dnma-par-uai-profils.csv"]
    # nothing new: no revision 3
    assert publication_duty(client, settings, caught_up=lambda _s: True, now=now)["revised"] == []
    assert not (week_dir / "r3").exists()
    client.command("DELETE FROM dnma.visits WHERE visit_id = 9001")


def test_retention_removes_old_weeks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, exports_keep_weeks=2)
    root = tmp_path / "exports"
    for name in ("2026-W50", "2026-W51", "2026-W52", "2026-W53", "2027-W01", "notes"):
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text("{}", encoding="utf-8")
    old_tmp = root / ".tmp-2026-W52-r1-1"
    old_tmp.mkdir()
    os.utime(old_tmp, (0, 0))
    # Monday 2027-01-11 (W02): two weeks kept before it, W53 and W01
    removed = remove_old_weeks(settings, date(2027, 1, 11))
    assert removed == ["2026-W50", "2026-W51", "2026-W52"]
    assert sorted(p.name for p in root.iterdir()) == ["2026-W53", "2027-W01", "notes"]


# --- dnma export's range rules ---------------------------------------------------------------
def test_cli_refuses_cut_or_reversed_weeks(db: tuple[Any, Settings], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import dnma.settings
    from cli.main import main

    _, settings = db
    monkeypatch.setattr(dnma.settings, "get_settings", lambda: settings)
    out = tmp_path / "s.csv"
    base = ["export", "fr-en-dnma-par-uai-services", "-o", str(out)]
    refused = {
        ("2024-01-14", "2024-01-08"): "is after",  # reversed
        ("2024-01-09", "2024-01-14"): "not whole ISO weeks",  # starts on a Tuesday
        ("2024-01-08", "2024-01-13"): "not whole ISO weeks",  # ends on a Saturday
        ("2099-01-05", "2099-01-11"): "not over",  # whole but still to come
    }
    for (debut, fin), why in refused.items():
        assert main([*base, "--from", debut, "--to", fin]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert main([*base, "--from", "2024-01-14", "--to", "2024-01-08", "--partial"]) == 2  # reversed: never
    assert main(["export", "fr-en-dnma-par-uai-services", "--from", "2024-01-09", "--to", "2024-01-14",
                 "--partial"]) == 2  # partial to stdout: nowhere to say it
    assert list(tmp_path.iterdir()) == []
    capsys.readouterr()

    assert main([*base, "--from", "2024-01-09", "--to", "2024-01-14", "--partial"]) == 0
    partial = tmp_path / "s.partial-2024-01-09_2024-01-14.csv"
    manifest = json.loads((tmp_path / (partial.name + ".manifest.json")).read_text(encoding="utf-8"))
    assert manifest["partial"] is True and manifest["period"] == {"from": "2024-01-09", "to": "2024-01-14"}
    assert manifest["files"] == {partial.name: {"rows": _rows(partial), "sha256": _sha(partial)}}
    assert not out.exists()

    assert main([*base, "--from", "2024-01-08", "--to", FIN.isoformat()]) == 0
    manifest = json.loads((tmp_path / "s.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["partial"] is False and manifest["files"]["s.csv"]["sha256"] == _sha(out)


def test_cli_publishes_a_week_by_hand(db: tuple[Any, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`dnma publish 2024-W02` (the job export.weekly, here with no loader running): the week's
    files; again: unchanged, no revision; a week not over or not a week: one line, exit 2."""
    import dnma.settings
    from cli.main import main

    _, settings = db
    settings = settings.model_copy(update={"exports_dir": tmp_path / "exports"})
    monkeypatch.setattr(dnma.settings, "get_settings", lambda: settings)
    assert main(["publish", "2024-W02"]) == 0
    assert capsys.readouterr().out.startswith("2024-W02 revision 1 published")
    week = tmp_path / "exports" / "2024-W02"
    assert sorted(p.name for p in week.iterdir()) == sorted([*NAMES, "manifest.json"])
    assert sum(_rows(week / name) for name in NAMES) > 0
    assert main(["publish", "2024-W02"]) == 0
    assert capsys.readouterr().out.startswith("2024-W02 revision 1 unchanged")
    assert read_manifest(week)["latest_revision"] == 1  # type: ignore[index]
    for bad, why in {"2099-W02": "not over yet", "2024-02": "is not an ISO week", "2026-W54": "is not an ISO week"}.items():
        assert main(["publish", bad]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["2024-W02"]
