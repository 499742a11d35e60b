"""Commands on a live stack: the loader, chDB's one owner, runs their jobs through its admin channel
(aggregator/admin.py, aggregator/jobs.py), with the same results as with the loader stopped; loading
goes on while a job runs; bad requests get clear answers; a command that reaches neither the loader
nor chDB says so in one line. Real loader subprocesses, real chDB, the real `python -m cli`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest

from dnma import clock
from dnma.spool import SpoolWriter
from tests.spool_loader.sl_support import (
    REPO,
    free_port,
    loader_env,
    log_events,
    log_tail,
    run_loader_once,
    start_loader,
    status,
    stop,
    wait_until,
)

# The commands run as if on Wednesday 2026-12-09, the hits are in the ISO week before (whole, over).
NOW = "2026-12-09T10:00:00Z"
WEEK = ("2026-11-30", "2026-12-06")
ANNUAIRE = REPO / "deploy/referentiel/annuaire-education-35-2023.csv"
PARIS = clock.PARIS


def _overrides() -> dict[str, Any]:
    # Side duties off: the only writes are the commands'; both data directories see the same ones.
    return {"now": clock.as_offset(NOW), "ch_http_port": free_port(), "quality_checks_interval_s": 0,
            "publication_schedule": "off"}


def _small_annuaire(tmp: Path) -> tuple[Path, list[str]]:
    lines = ANNUAIRE.read_text(encoding="utf-8-sig").splitlines()[:21]
    path = tmp / "annuaire-35-small.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, [line.split(";", 1)[0] for line in lines[1:]]


def _record(n: int, uai: str, day: int) -> bytes:
    ts = int(datetime(2026, 12, day, 9 + n % 8, n % 60, tzinfo=PARIS).timestamp())
    return orjson.dumps({"ts": ts, "received_at": ts, "site_id": 1, "url": f"https://t/{n}", "visitor_id": 1 + n % 37,
                         "uai": uai, "profil": ("ELEVE", "ENSEIGNANT", "PARENT")[n % 3], "device": "desktop"})


def _write(spool_dir: Path, records: list[bytes], per_append: int = 200, pause_s: float = 0.0) -> None:
    async def go() -> None:
        w = SpoolWriter(spool_dir, max_bytes=10**10, segment_bytes=256 * 1024, commit_interval_ms=2)
        await w.start()
        for start in range(0, len(records), per_append):
            await w.append(records[start:start + per_append])  # returns once durable: acknowledged
            if pause_s:
                await asyncio.sleep(pause_s)
        await w.close()

    asyncio.run(go())


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _live(data_dir: Path, overrides: dict[str, Any]) -> subprocess.Popen[bytes]:
    proc = start_loader(data_dir, **overrides)
    wait_until(lambda: (data_dir / "admin.sock").exists() or proc.poll() is not None, 120, "admin socket")
    assert proc.poll() is None, log_tail(data_dir)
    return proc


def _same(out: str) -> str:
    """A command's output less its timings (an aggregate pass reports its seconds)."""
    if out.startswith("{"):
        doc = json.loads(out)
        return json.dumps({k: v for k, v in doc.items() if not k.endswith("seconds")}, sort_keys=True)
    return out


def test_commands_on_a_live_stack_give_the_results_of_a_stopped_one(tmp_path: Path) -> None:
    small, uais = _small_annuaire(tmp_path)
    records = [_record(n, uais[n % 5] if n % 10 else "0359999Z", 1 + n % 2) for n in range(600)]
    outputs: dict[str, list[str]] = {}
    csv: dict[str, bytes] = {}
    for mode in ("stopped", "live"):
        data_dir = tmp_path / mode
        data_dir.mkdir()
        _write(data_dir / "spool", records)
        overrides = _overrides()
        env = loader_env(data_dir, **overrides)
        proc = None
        if mode == "stopped":
            run_loader_once(data_dir, **overrides)
        else:
            proc = _live(data_dir, overrides)
            wait_until(lambda: status(data_dir).get("rows") == len(records), 60, "records loaded")  # noqa: B023
        try:
            out = tmp_path / f"{mode}.csv"
            commands = [
                ["referentiel", "load", str(small)],
                ["aggregate", "--once"],
                ["checks", "run", "--check", "unknown_uai", "--check", "missing_properties", "--now", "2026-12-09T11:00"],
                ["export", "fr-en-dnma-par-uai-profils", "--from", WEEK[0], "--to", WEEK[1], "-o", str(out)],
                ["migrate"],
            ]
            outputs[mode] = []
            for command in commands:
                done = _cli(env, *command)
                assert done.returncode == 0, (mode, command, done.stdout, done.stderr, log_tail(data_dir))
                assert "Traceback" not in done.stderr
                outputs[mode].append(_same(done.stdout))
            csv[mode] = out.read_bytes()
            if proc is not None:
                # Each ran in the loader, as a job: none of them opened chDB beside it.
                ran = [e["job"] for e in log_events(data_dir, "admin_job_ended") if e["exit"] == 0]
                assert ran == ["referentiel.load", "aggregate", "checks.run", "export", "migrate"]
                assert log_events(data_dir, "loading_paused")[-1]["job"] == "migrate"
        finally:
            if proc is not None:
                assert stop(proc) == 0
    assert outputs["live"] == outputs["stopped"]
    assert csv["live"] == csv["stopped"]
    lines = csv["live"].decode().splitlines()
    # One week, five UAIs of the annuaire with their labels, one unknown UAI without.
    rows = {line.split(";")[1]: line.split(";") for line in lines[1:]}
    assert len(lines) == 1 + 6 and all(rows[uai][2] for uai in uais[:5]) and rows["0359999Z"][2] == "", lines[:3]
    assert json.loads(outputs["live"][1])["days"] == ["2026-12-01", "2026-12-02"] and outputs["live"][2].endswith("transition(s)\n")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("live")
    overrides = _overrides()
    proc = _live(data_dir, overrides)
    yield data_dir, loader_env(data_dir, **overrides), proc
    assert stop(proc) == 0


def _write_until(spool_dir: Path, done: threading.Event, first: int, written: list[int]) -> None:
    """Append 20 records every 20 ms until `done`; `written` gets how many were acknowledged."""
    async def go() -> None:
        w = SpoolWriter(spool_dir, max_bytes=10**10, segment_bytes=256 * 1024, commit_interval_ms=2)
        await w.start()
        n = first
        while not done.is_set() or n == first:
            await w.append([_record(n + k, "0350122T", 7) for k in range(20)])
            n += 20
            written[0] = n - first
            await asyncio.sleep(0.02)
        await w.close()

    asyncio.run(go())


def test_hits_are_stored_while_a_long_job_runs(live: Any) -> None:
    data_dir, env, proc = live
    days = 5
    _write(data_dir / "spool", [_record(n, "0350122T", 1 + n % days) for n in range(2000)])
    wait_until(lambda: status(data_dir).get("rows") == 2000, 60, "first records loaded")
    acknowledged = 2000
    # Rebuilding every day's visits and rollups: a job of a few seconds; records are acknowledged
    # into the spool from its start to its end.
    def aggregate_starts() -> int:
        return sum(e["job"] == "aggregate" for e in log_events(data_dir, "admin_job_started"))

    before = aggregate_starts()
    job = subprocess.Popen([sys.executable, "-m", "cli", "aggregate", "--days",
                            ",".join(f"2026-12-0{d}" for d in range(1, days + 1))],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: aggregate_starts() > before, 60, "job started")
    over, written = threading.Event(), [0]
    writer = threading.Thread(target=_write_until, args=(data_dir / "spool", over, 10_000, written))
    writer.start()
    # Another write job meanwhile is answered busy (unless the rebuild already ended).
    second = _ask(data_dir / "admin.sock", b'{"job": "checks.run", "args": {"checks": ["clock_jumps"]}}\n')
    if "error" in second[0]:
        assert second[0] == {"error": "another write job is running; try again when it ends", "exit": 75}
    else:
        assert any(e["job"] == "aggregate" for e in log_events(data_dir, "admin_job_ended")), second
    out, err = job.communicate(timeout=120)
    over.set()
    writer.join()
    acknowledged += written[0]
    assert job.returncode == 0, (err, log_tail(data_dir))
    started = log_events(data_dir, "admin_job_started")[-1]["time"]
    ended = log_events(data_dir, "admin_job_ended")[-1]["time"]
    during = [e for e in log_events(data_dir, "batch_loaded") if started < e["time"] < ended]
    assert during, f"no batch loaded while the job ran ({started}..{ended})"
    # `dnma migrate` meanwhile: loading pauses while it migrates, records acknowledged then wait in the spool.
    more = [_record(20_000 + n, "0350122T", 8) for n in range(1000)]
    writer = threading.Thread(target=_write, args=(data_dir / "spool", more, 50, 0.02))
    writer.start()
    migrated = _cli(env, "migrate")
    writer.join()
    acknowledged += len(more)
    assert migrated.returncode == 0, (migrated.stderr, log_tail(data_dir))
    paused = log_events(data_dir, "loading_paused")[-1]["time"]
    resumed = log_events(data_dir, "loading_resumed")[-1]["time"]
    assert not [e for e in log_events(data_dir, "batch_loaded") if paused < e["time"] < resumed]
    wait_until(lambda: status(data_dir).get("rows") == acknowledged, 60, "all records loaded")
    assert proc.poll() is None
    # Stored == acknowledged, read through the loader's read-only endpoint (it owns chDB).
    reader = clickhouse_connect.get_client(host="127.0.0.1", port=int(env["DNMA_CH_HTTP_PORT"]), username="dnma_reader",
                                           password=env["DNMA_CH_HTTP_PASSWORD"])
    assert reader.query("SELECT count(), uniqExact(url) FROM dnma.hits").result_rows[0] == (acknowledged, acknowledged)


def _ask(path: Path, payload: bytes, *, pause_s: float = 0.0) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(path))
        if pause_s:
            s.sendall(payload[:5])
            time.sleep(pause_s)
            payload = payload[5:]
        try:
            s.sendall(payload)
        except OSError:
            pass  # the loader refused and closed before all of it was sent
        return [orjson.loads(line) for line in s.makefile("rb")]


def test_bad_requests_get_clear_answers_and_loading_goes_on(live: Any) -> None:
    data_dir, env, proc = live
    sock = data_dir / "admin.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    jobs_before = len(log_events(data_dir, "admin_job_started"))
    cases = {
        "unknown job": (b'{"job": "sql", "args": {"q": "DROP TABLE dnma.hits"}}\n', "unknown job 'sql'"),
        "bad type": (b'{"job": "aggregate", "args": {"days": "2026-12-01"}}\n', "expected a list"),
        "bad date": (b'{"job": "aggregate", "args": {"days": ["yesterday"]}}\n', "argument days"),
        "unknown arg": (b'{"job": "migrate", "args": {"until": 3}}\n', "unknown argument(s) until"),
        "relative path": (b'{"job": "referentiel.load", "args": {"files": ["a.csv"]}}\n', "absolute path"),
        "not json": (b"DROP TABLE dnma.hits\n", "not JSON"),
        "too large": (b'{"job": "migrate", "args": {"x": "' + b"x" * 70_000 + b'"}}\n', "larger than 65536"),
    }
    for what, (payload, expected) in cases.items():
        frames = _ask(sock, payload)
        assert len(frames) == 1 and expected in frames[0]["error"] and frames[0]["exit"] == 2, (what, frames)
    slow = _ask(sock, b'{"job": "migrate"}\n', pause_s=6)
    assert "no complete request within 5 s" in slow[0]["error"], slow
    counts = status(data_dir)
    # Each refusal counted by its reason; none of them started a job.
    refused = {"refused_bad_request": 6, "refused_too_large": 1, "refused_slow": 1}
    wait_until(lambda: {k: status(data_dir).get("admin", {}).get(k) for k in refused} == refused, 10,
               f"refusals counted: {refused}")
    assert len(log_events(data_dir, "admin_job_started")) == jobs_before
    # The loader still loads.
    rows = counts.get("rows", 0)
    _write(data_dir / "spool", [_record(50_000 + n, "0350122T", 2) for n in range(100)])
    wait_until(lambda: status(data_dir).get("rows") == rows + 100, 60, "records loaded after the bad requests")
    assert proc.poll() is None
    if os.getuid() == 0:
        _other_user_is_refused(sock)


_OTHER_USER = """
import json, os, socket, sys
os.chdir(os.path.dirname(sys.argv[1]))  # as root: the parents are 0700
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
s.connect(os.path.basename(sys.argv[1]))
s.sendall(b'{"job": "migrate"}\\n')
print(s.makefile("rb").readline().decode())
"""


def _other_user_is_refused(sock: Path) -> None:
    """Another user: refused by the modes, and, were they loosened, by the peer uid check."""
    for mode, expected in ((0o600, "PermissionError"), (0o666, "serves the user running the loader only")):
        sock.chmod(mode)
        sock.parent.chmod(0o700 if mode == 0o600 else 0o711)
        try:
            other = subprocess.run([sys.executable, "-c", _OTHER_USER, str(sock)], capture_output=True, text=True,
                                   timeout=30)
        finally:
            sock.chmod(0o600)
            sock.parent.chmod(0o700)
        assert expected in other.stdout + other.stderr, (mode, other.stdout, other.stderr)


_HOLD = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])  # held while this process lives
client.command("SELECT 1")
print("held", flush=True)
time.sleep(120)
"""


def test_neither_loader_nor_chdb_reachable_is_one_line(tmp_path: Path) -> None:
    env = loader_env(tmp_path, **_overrides())
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "clickhouse")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # A socket file nobody listens on (a loader that died), then none at all.
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(tmp_path / "admin.sock"))
        stale.close()
        for command in (["migrate"], ["aggregate", "--once"], ["checks", "ack", "silence", "site", "1"],
                        ["export", "fr-en-dnma-par-uai-profils", "--from", WEEK[0], "--to", WEEK[1], "-o",
                         str(tmp_path / "x.csv")]):
            done = _cli(env, *command)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, (command, done.stderr)
            assert "is held by another process and no loader answers" in lines[0]
            (tmp_path / "admin.sock").unlink(missing_ok=True)
    finally:
        holder.kill()
        holder.wait()


def test_an_alert_is_acknowledged_on_the_live_stack(live: Any) -> None:
    data_dir, env, proc = live
    # A clock jump the loader saw an instant ago: the clock_jumps check opens an alert.
    (data_dir / "clock_jumps.jsonl").write_text(json.dumps({"at": clock.time(), "host_at": time.time(), "jump_s": -3600,
                                                            "process": "loader", "pid": 1}) + "\n")
    opened = _cli(env, "checks", "run", "--check", "clock_jumps")
    assert opened.returncode == 0 and "opened    clock_jumps        pipeline:horloge" in opened.stdout, opened
    nothing = _cli(env, "checks", "ack", "clock_jumps", "pipeline", "other")
    assert nothing.returncode == 1 and nothing.stderr.strip() == (
        "dnma checks ack: no open alert clock_jumps pipeline:other (see `dnma checks list`)"), nothing
    acked = _cli(env, "checks", "ack", "clock_jumps", "pipeline", "horloge", "--by", "ops-rennes", "--note", "NTP")
    assert acked.returncode == 0 and "acknowledged 1 open alert(s)" in acked.stdout, acked
    listed = _cli(env, "checks", "list")
    assert listed.returncode == 0, listed
    line = next(x for x in listed.stdout.splitlines() if "clock_jumps pipeline:horloge" in x)
    assert "(acknowledged by ops-rennes at " in line, listed.stdout


def test_conformance_report_reads_through_the_live_loader(live: Any, tmp_path: Path) -> None:
    """`dnma conformance` while the loader owns chDB: it reads through the read-only endpoint (no job,
    no second opening of chDB) and reports exactly the site's hits of the day."""
    from dnma.sites import dump_sites

    data_dir, env, proc = live
    records = [_record(n, ("0350122T", "")[n % 4 == 0], 6) for n in range(300)]  # a quarter without UAI
    # 6 December: a day no other test of this module writes (the stack is the module's)
    _write(data_dir / "spool", records)
    reader = clickhouse_connect.get_client(host="127.0.0.1", port=int(env["DNMA_CH_HTTP_PORT"]), username="dnma_reader",
                                           password=env["DNMA_CH_HTTP_PASSWORD"])
    day = "toDate(ts) = '2026-12-06' AND site_id = 1"
    wait_until(lambda: reader.query(f"SELECT count() FROM dnma.hits WHERE {day}").result_rows[0][0] == 300, 60,
               "records loaded")
    dump_sites([{"id": 1, "name": "ENT test", "main_url": "https://t.example"}], tmp_path / "sites.yaml")
    jobs = len(log_events(data_dir, "admin_job_ended"))
    done = _cli({**env, "DNMA_SITES_FILE": str(tmp_path / "sites.yaml")}, "conformance", "--site", "1",
                "--from", "2026-12-06", "--to", "2026-12-06", "--out", str(tmp_path))
    assert done.returncode == 0 and "site 1: 300 hits" in done.stderr, (done.stderr, log_tail(data_dir))
    rows = (tmp_path / "conformance-site1-2026-12-06_2026-12-06.csv").read_text(encoding="utf-8").splitlines()
    uai = next(r.split(";") for r in rows if ";site;;uai_valide;" in r)
    assert uai[7:9] == ["225", "300"]
    assert len(log_events(data_dir, "admin_job_ended")) == jobs and proc.poll() is None
