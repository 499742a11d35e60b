"""The weekly open-data publication (INDICATORS.md's four datasets, issue 16 §3): one directory per
ISO week, `<exports_dir>/YYYY-Www/`, holding the four CSVs and a `manifest.json`.

- Revision 1's files sit in the week's directory, revision N's (N >= 2) in its `rN/`
  sub-directory; a file once written is never rewritten. The manifest lists every revision: when,
  why, each file's row count and SHA-256, the referential and code versions, and the inputs it was
  built from.
- A new revision is made only when the files' content differs from the latest revision's: data
  that arrived late for a published week revises it, an identical re-run adds nothing.
- Writes are atomic: a revision is written in a hidden temporary directory renamed into place,
  then the manifest is replaced (a crash in between leaves an unlisted `rN/`, redone next time).
- The loader publishes the previous week by itself (`publication_duty`, on its side-duty thread,
  on the `publication_schedule`), once the week is settled: every day of it over in every site's
  zone, none still dirty for the sessionizer (held back by its settling or not built yet), the
  spool's backlog loaded. It re-checks the last `publication_recheck_weeks` published weeks for late
  data and removes week directories older than `exports_keep_weeks`.

A revision records the referential its files read: its school year when the referential is kept
per school year (`etablissements_annees`), with its rows, sources and last load time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from aggregator.exports import DATASETS, code_version, referential_version, write_file
from dnma import clock
from dnma.settings import Settings
from dnma.spool import fsync_dir

log = logging.getLogger("dnma.publication")

Progress = Callable[[str], None]
MANIFEST = "manifest.json"
WEEK_DIR = re.compile(r"^(\d{4})-W(\d{2})$")
# The loader's spool counts as caught up when nothing is waiting, or when the oldest record of
# its last batch was received less than this long before it was inserted (steady traffic always
# leaves a few seconds' worth in the spool).
MAX_LOADER_LAG_S = 60.0
# A temporary directory older than this is a crashed publication's leftover.
STALE_TMP_S = 3600.0
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# One publication at a time per process (the loader's duty and a job of the admin channel).
_LOCK = threading.Lock()


# --- weeks and the schedule (pure) ------------------------------------------------------------
def week_days(iso_year: int, iso_week: int) -> tuple[date, date]:
    """Monday and Sunday of an ISO week (ValueError for a week the year does not have)."""
    monday = date.fromisocalendar(iso_year, iso_week, 1)
    return monday, monday + timedelta(days=6)


def week_name(iso_year: int, iso_week: int) -> str:
    return f"{iso_year}-W{iso_week:02d}"


def parse_week(text: str) -> tuple[int, int]:
    """'2026-W53' -> (2026, 53); ValueError for anything else, or a week the year lacks."""
    m = WEEK_DIR.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not an ISO week like 2026-W49")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        week_days(year, week)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO week: {year} has no week {week}") from None
    return year, week


@dataclass(frozen=True)
class Schedule:
    weekday: int  # 0 = Monday
    at: time  # Europe/Paris wall-clock time


def parse_schedule(text: str) -> Schedule | None:
    """`publication_schedule` ('monday 06:00', 'tue 18:30'; Europe/Paris) -> Schedule; '' or 'off':
    None (disabled). ValueError for anything else."""
    text = text.strip().lower()
    if text in ("", "off"):
        return None
    m = re.fullmatch(r"([a-z]{3,9})\s+(\d{1,2}):(\d{2})", text)
    days = [i for i, name in enumerate(WEEKDAYS) if m and name.startswith(m.group(1))]
    if not m or not days or int(m.group(2)) > 23 or int(m.group(3)) > 59:
        raise ValueError(f"publication_schedule {text!r}: expected a weekday and a Paris time, like 'monday 06:00', or 'off'")
    return Schedule(days[0], time(int(m.group(2)), int(m.group(3))))


def publication_instant(schedule: Schedule, iso_year: int, iso_week: int) -> datetime:
    """When a week is due: its scheduled weekday and time of the following week, in Paris (an hour
    the spring change skips counts as the one after it)."""
    _, sunday = week_days(iso_year, iso_week)
    day = sunday + timedelta(days=1 + schedule.weekday)
    return datetime.combine(day, schedule.at, tzinfo=clock.PARIS)


def due_week(schedule: Schedule, now: datetime) -> tuple[int, int]:
    """The latest ISO week whose publication instant has passed at `now`."""
    year, week, _ = now.astimezone(clock.PARIS).date().isocalendar()
    for back in range(1, 3):  # the previous week, or before its instant the one before it
        monday = date.fromisocalendar(year, week, 1) - timedelta(weeks=back)
        y, w, _ = monday.isocalendar()
        if publication_instant(schedule, y, w) <= now:
            return y, w
    raise AssertionError("unreachable: a week's instant is at most 13 days after its Monday")


@dataclass(frozen=True)
class Decision:
    action: str  # "disabled", "published" (nothing to do), "wait" or "publish"
    week: tuple[int, int] | None
    reason: str


def decide(schedule: Schedule | None, now: datetime, published: set[tuple[int, int]],
           unsettled_days: list[date], first_live: date, loader_caught_up: bool,
           first_data_day: date | None = date.min) -> Decision:
    """What the loader does about the weekly publication at `now`: the week due (`due_week`) is
    published once; it waits while a day of it is under way for some site (`first_live`: the
    earliest day still under way, sessionizer.live_from), still dirty for the sessionizer
    (`unsettled_days`: held back by its settling or not built yet) or while the loader lags. A
    week before the first day with data (`first_data_day`, None: no data at all; a stack
    installed since) is not published: its empty files would say nobody visited."""
    if schedule is None:
        return Decision("disabled", None, "publication_schedule is off")
    week = due_week(schedule, now)
    if week in published:
        return Decision("published", week, f"{week_name(*week)} is published")
    monday, sunday = week_days(*week)
    if first_data_day is None or first_data_day > sunday:
        return Decision("no_data", week, f"no data up to {sunday}")
    if first_live <= sunday:
        return Decision("wait", week, f"{sunday} is not over for every site")
    held = [d for d in unsettled_days if monday <= d <= sunday]
    if held:
        return Decision("wait", week, "days not settled: " + ", ".join(d.isoformat() for d in held))
    if not loader_caught_up:
        return Decision("wait", week, "the loader has a backlog")
    return Decision("publish", week, "due")


def week_inputs(client: Any, settings: Settings, iso_year: int, iso_week: int) -> str:
    """A digest of what the week's files are built from: its days' builds by the sessionizer
    (visits_fingerprints) and the referential. Unchanged: the files would be the same."""
    monday, sunday = week_days(iso_year, iso_week)
    rows = client.query(
        f"SELECT day, hits, hash, toString(built_at) FROM {settings.clickhouse_database}.visits_fingerprints FINAL "
        "WHERE day BETWEEN {a:Date} AND {b:Date} ORDER BY day", parameters={"a": monday, "b": sunday}).result_rows
    doc = {"days": [[d.isoformat(), int(n), int(h), b] for d, n, h, b in rows],
           "referential": referential_version(client, settings, monday)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# --- the files -----------------------------------------------------------------------------
def exports_dir(settings: Settings) -> Path:
    return settings.exports_dir or settings.data_dir / "exports"


def read_manifest(week_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((week_dir / MANIFEST).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)


def revision_dir(week_dir: Path, revision: int) -> Path:
    return week_dir if revision == 1 else week_dir / f"r{revision}"


@dataclass(frozen=True)
class Published:
    week: str
    directory: Path  # the week's directory
    revision: int  # the latest revision (the one just written when `created`)
    created: bool  # False: the data matched the latest revision, nothing written


class PublicationStopped(Exception):
    """`stop` was set between two datasets: nothing was written."""


def publish_week(client: Any, settings: Settings, iso_year: int, iso_week: int,
                 progress: Progress | None = None, reason: str = "manual",
                 stop: threading.Event | None = None) -> Published:
    """Export the week's four datasets into `<exports_dir>/YYYY-Www/`: revision 1 the first time,
    a new revision when the content differs from the latest one, nothing when it is the same.
    `progress` gets one line per step; `stop` set between two datasets abandons the publication
    (PublicationStopped, nothing written). Callable while the loader runs only from inside it (it
    is chDB's one owner): the loader's duty, or a job of its admin channel."""
    say = progress or (lambda _line: None)
    name = week_name(iso_year, iso_week)
    monday, sunday = week_days(iso_year, iso_week)
    root = exports_dir(settings)
    with _LOCK:
        root.mkdir(parents=True, exist_ok=True)
        week_dir = root / name
        manifest = read_manifest(week_dir)
        revisions = manifest["revisions"] if manifest else []
        revision = len(revisions) + 1
        if manifest is None and week_dir.exists():
            raise RuntimeError(f"{week_dir} exists without a manifest: move it away to publish {name}")
        inputs = week_inputs(client, settings, iso_year, iso_week)
        tmp = (root if manifest is None else week_dir) / f".tmp-{name}-r{revision}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            files: dict[str, dict[str, Any]] = {}
            for dataset in DATASETS.values():
                if stop is not None and stop.is_set():
                    raise PublicationStopped(name)
                say(f"{name}: exporting {dataset.name}")
                rows, digest = write_file(client, dataset, monday, sunday, tmp / f"{dataset.name}.csv",
                                          settings.clickhouse_database)
                files[f"{dataset.name}.csv"] = {"rows": rows, "sha256": digest}
            latest = revisions[-1]["files"] if revisions else None
            if files == latest:
                shutil.rmtree(tmp)
                manifest = dict(manifest or {})
                manifest["last_check"] = {"at": _now_iso(), "inputs": inputs, "revision_unchanged": revision - 1}
                _write_manifest(week_dir, manifest)
                say(f"{name}: unchanged since revision {revision - 1}")
                return Published(name, week_dir, revision - 1, False)
            entry = {
                "revision": revision,
                "published_at": _now_iso(),
                "reason": reason,
                "directory": "." if revision == 1 else f"r{revision}",
                "files": files,
                "referential": referential_version(client, settings, monday),
                "code_version": code_version(),
                "inputs": inputs,
            }
            new_manifest = {
                "week": name,
                "period": {"from": monday.isoformat(), "to": sunday.isoformat()},
                "partial": False,
                "latest_revision": revision,
                "revisions": [*revisions, entry],
                "last_check": {"at": entry["published_at"], "inputs": inputs, "revision_unchanged": None},
            }
            if revision == 1:
                _write_manifest(tmp, new_manifest)
                fsync_dir(tmp)
                os.rename(tmp, week_dir)  # the week appears whole, manifest included
                fsync_dir(root)
            else:
                target = revision_dir(week_dir, revision)
                shutil.rmtree(target, ignore_errors=True)  # an unlisted leftover of a crash
                fsync_dir(tmp)
                os.rename(tmp, target)
                _write_manifest(week_dir, new_manifest)
                fsync_dir(week_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    say(f"{name}: revision {revision} published in {revision_dir(week_dir, revision)}")
    log.info("week published", extra={"week": name, "revision": revision, "reason": reason})
    return Published(name, week_dir, revision, True)


def _now_iso() -> str:
    return clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")


def published_weeks(settings: Settings) -> dict[tuple[int, int], Path]:
    """Week directories holding a manifest, by (ISO year, week)."""
    out: dict[tuple[int, int], Path] = {}
    root = exports_dir(settings)
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        m = WEEK_DIR.match(entry.name)
        if m and (entry / MANIFEST).is_file():
            out[(int(m.group(1)), int(m.group(2)))] = entry
    return out


def latest_publication(settings: Settings) -> dict[str, Any] | None:
    """The latest published week and its latest revision (for `dnma status`), None when none is."""
    weeks = published_weeks(settings)
    if not weeks:
        return None
    week_dir = weeks[max(weeks)]
    manifest = read_manifest(week_dir) or {}
    latest = (manifest.get("revisions") or [{}])[-1]
    return {"week": week_dir.name, "directory": str(week_dir), "revision": latest.get("revision"),
            "published_at": latest.get("published_at"), "last_check": manifest.get("last_check", {}).get("at")}


def remove_old_weeks(settings: Settings, today: date) -> list[str]:
    """Delete week directories whose Monday is more than `exports_keep_weeks` weeks before the
    current week's, and stale temporary directories; returns the weeks removed."""
    root = exports_dir(settings)
    if not root.is_dir():
        return []
    oldest = today - timedelta(days=today.weekday()) - timedelta(weeks=settings.exports_keep_weeks)
    removed = []
    with _LOCK:
        for entry in sorted(root.iterdir()):
            m = WEEK_DIR.match(entry.name)
            if m and entry.is_dir():
                try:
                    monday, _ = week_days(int(m.group(1)), int(m.group(2)))
                except ValueError:
                    continue
                if monday < oldest:
                    shutil.rmtree(entry)
                    removed.append(entry.name)
            elif entry.name.startswith(".tmp-") and _time.time() - entry.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(entry, ignore_errors=True)
    return removed


# --- the loader's duty ---------------------------------------------------------------------
def unsettled_days(client: Any, settings: Settings, monday: date, sunday: date) -> list[date]:
    """Days of [monday, sunday] whose hits changed since the sessionizer last built them (held back
    by its settling while they change, or not built yet)."""
    from aggregator.migrate import renderer
    from aggregator.sessionizer import site_timezones, stored_fingerprints
    from aggregator.visits_query import fingerprints_select

    r = renderer(settings)
    window = (monday - timedelta(days=1), sunday + timedelta(days=1))
    current = {row[0]: (int(row[1]), int(row[2]))
               for row in client.query(fingerprints_select(r, site_timezones(settings), window)).result_rows}
    stored = stored_fingerprints(client, r)
    return sorted(d for d, fp in current.items() if monday <= d <= sunday and fp != stored.get(d))


def loader_caught_up(settings: Settings) -> bool:
    """The loader's status file says the spool is loaded (no backlog, or one younger than
    MAX_LOADER_LAG_S) and the loader is running, not retrying."""
    from dnma import spool

    try:
        status = json.loads((settings.data_dir / "loader_status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    if status.get("state", "running") != "running":
        return False
    if spool.backlog_bytes(settings.resolved_spool_dir) == 0:
        return True
    return float(status.get("lag_seconds", 0.0)) <= MAX_LOADER_LAG_S


def first_data_day(client: Any, settings: Settings) -> date | None:
    """The first day the sessionizer built (None: none yet)."""
    rows = client.query(f"SELECT min(day), count() FROM {settings.clickhouse_database}.visits_fingerprints").result_rows
    return rows[0][0] if rows and rows[0][1] else None


def publication_duty(client: Any, settings: Settings, progress: Progress | None = None,
                     caught_up: Callable[[Settings], bool] = loader_caught_up,
                     now: datetime | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """One look of the loader: publish the week due when it is settled, revise the recently
    published weeks whose inputs changed, remove old weeks. Returns what it did. `now`: DNMA's
    clock by default; `stop` set: ends between two datasets, what was under way left for next time."""
    from aggregator.sessionizer import live_from, site_timezones

    now = now or clock.now()
    schedule = parse_schedule(settings.publication_schedule)
    published = published_weeks(settings)
    result: dict[str, Any] = {"published": [], "revised": [], "removed": [], "waiting": None}
    try:
        if schedule is not None:
            week = due_week(schedule, now)
            monday, sunday = week_days(*week)
            pending = week not in published
            decision = decide(schedule, now, set(published),
                              unsettled_days(client, settings, monday, sunday) if pending else [],
                              live_from(site_timezones(settings), now), caught_up(settings) if pending else True,
                              first_data_day(client, settings) if pending else date.min)
            if decision.action == "publish":
                publish_week(client, settings, *week, progress, reason="scheduled", stop=stop)
                result["published"].append(week_name(*week))
            elif decision.action == "wait":
                result["waiting"] = f"{week_name(*week)}: {decision.reason}"
            # Late data: the published weeks of the last publication_recheck_weeks, once settled again.
            for back in range(settings.publication_recheck_weeks):
                y, w, _ = (monday - timedelta(weeks=back)).isocalendar()
                if (y, w) not in published:
                    continue
                manifest = read_manifest(published[(y, w)]) or {}
                if manifest.get("last_check", {}).get("inputs") == week_inputs(client, settings, y, w):
                    continue
                first, last = week_days(y, w)
                if unsettled_days(client, settings, first, last) or not caught_up(settings):
                    continue
                if publish_week(client, settings, y, w, progress, reason="late data", stop=stop).created:
                    result["revised"].append(week_name(y, w))
    except PublicationStopped as exc:
        result["stopped"] = str(exc)
        return result
    result["removed"] = remove_old_weeks(settings, now.astimezone(clock.PARIS).date())
    return result


# --- the admin channel's job and the command -------------------------------------------------


def publish_job(ctx: Any, week: str | None = None) -> int:
    """The `export.weekly` job (aggregator/jobs.py): publish `week` ('2026-W49') now, or the week
    the schedule has due, whether the loader's duty has published it yet or not. A week not over
    yet is refused (its files would be labelled whole); an identical re-run adds no revision."""
    try:
        year, number = parse_week(week) if week else due_week(
            parse_schedule(ctx.settings.publication_schedule) or Schedule(0, time(6)), clock.now(clock.PARIS))
    except ValueError as exc:
        ctx.err(f"dnma publish: {exc}")
        return 2
    _, sunday = week_days(year, number)
    if sunday >= clock.now(clock.PARIS).date():
        ctx.err(f"dnma publish: {week_name(year, number)} is not over yet (it ends on {sunday.isoformat()}): "
                "a week is published once its Sunday has passed")
        return 2
    try:
        done = publish_week(ctx.client(), ctx.settings, year, number, progress=ctx.err, reason="manual", stop=ctx.stop)
    except PublicationStopped:
        ctx.err(f"dnma publish: {week_name(year, number)}: stopped before it was written (the loader is stopping)")
        return 1
    ctx.out(f"{done.week} revision {done.revision} {'published' if done.created else 'unchanged'}: "
            f"{revision_dir(done.directory, done.revision)}\n")
    return 0


def add_arguments(p: Any) -> None:
    p.add_argument("week", nargs="?", help="ISO week, e.g. 2026-W49 (default: the week the schedule has due)")


def run(args: Any) -> int:
    from aggregator.jobs import run_command

    # In the live loader (chDB's one owner) when it runs, else on the storage opened here.
    return run_command("export.weekly", {"week": args.week} if args.week else {})
