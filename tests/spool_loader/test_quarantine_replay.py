"""Quarantine and replay (#20), through the real collector app (in process, its real spool), the real
loader (a subprocess, chDB's owner) and `dnma quarantine` (in process, reading through the loader's
read-only endpoint, writing into the spool): a site registered after it started sending gets its
refused hits back once, however often the replay runs or was interrupted; fields refused for want of
authentication stay out of a replay without the super user's token."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from collector.app import Collector
from collector.quarantine import replay, replay_context, replay_records
from dnma import clock
from dnma import quarantine as q
from dnma.settings import Settings, get_settings
from dnma.sites import dump_sites
from dnma.spool import SpoolWriter
from tests import clockpin
from tests.harness import DEMO_TOKEN, SUPER_TOKEN, demo_sites
from tests.spool_loader.sl_support import loader_env, log_tail, start_loader, stop, wait_until

URL = "https://ent7.example/page/"
LATE_SITE = 7


def _late_site() -> dict[str, Any]:
    return {"id": LATE_SITE, "name": "ENT arrivé en retard", "main_url": "https://ent7.example", "timezone": "Europe/Paris"}


async def _send(settings: Settings, now: int) -> None:
    """What the ENTs sent: three hits to site 7 before it was registered (one a bulk item), and two
    requests to site 1 refused for want of a token (cip and geo; a cdt 2 days old)."""
    app = Collector(settings)
    # Its spool, as startup() opens it (startup also warms the User-Agent parser and tunes the GC
    # and the switch interval for a worker process: not for this test's process).
    app.spool = SpoolWriter(settings.resolved_spool_dir, max_bytes=settings.spool_max_bytes,
                            segment_bytes=settings.spool_segment_bytes, commit_interval_ms=2)
    await app.spool.start()
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.50", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
            for n, extra in ((1, {}), (2, {"uid": "eleve.deux@ent7"})):
                r = await http.get("/matomo.php", params={"idsite": LATE_SITE, "rec": 1, "url": f"{URL}{n}", **extra})
                assert r.status_code == 400
            bulk = {"requests": [f"?idsite={LATE_SITE}&rec=1&url={URL}3&cdt={now - 10 * 3600}"]}
            assert (await http.post("/matomo.php", content=orjson.dumps(bulk))).json()["invalid"] == 1
            r = await http.get("/matomo.php", params={"idsite": 1, "rec": 1, "url": f"{URL}auth", "cip": "198.51.100.9",
                                                      "country": "fr"})
            assert r.status_code == 400 and r.content.endswith(b"auth_required: cip requires a valid token_auth\n")
            r = await http.get("/matomo.php", params={"idsite": 1, "rec": 1, "url": f"{URL}old", "cdt": now - 2 * 86_400})
            assert r.status_code == 400
    finally:
        await app.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("quarantine")
    dump_sites([demo_sites()[0]], data_dir / "sites.yaml")
    overrides = {"uid_secret": "quarantine-test-secret", "super_user_token": SUPER_TOKEN,
                 "quarantine_max_records_per_site": 3, "quarantine_max_records_unknown_sites": 4}
    if clockpin.OFFSET:
        overrides["now"] = clockpin.OFFSET
    env = loader_env(data_dir, **overrides)
    mp = pytest.MonkeyPatch()
    for key in [k for k in os.environ if k.startswith("DNMA_")]:
        mp.delenv(key)
    for key, value in env.items():
        if key.startswith("DNMA_"):
            mp.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    now = int(clock.time())
    asyncio.run(_send(settings, now))
    proc = start_loader(data_dir, ch_http_port=env["DNMA_CH_HTTP_PORT"], **overrides)
    try:
        reader = _reader(settings)
        wait_until(lambda: _count(reader, "SELECT count() FROM dnma.quarantine FINAL") == 5, 60, "5 quarantined")
        yield {"settings": settings, "reader": reader, "data_dir": data_dir, "now": now}
    finally:
        stop(proc)
        mp.undo()
        get_settings.cache_clear()


def _reader(settings: Settings) -> Any:
    from dnma.chclient import get_reader_client

    client = None

    def up() -> bool:
        nonlocal client
        try:
            client = get_reader_client(settings)
            return bool(client.command("SELECT 1"))
        except Exception:  # noqa: BLE001 - the endpoint is starting
            return False

    wait_until(up, 60, "the loader's read-only endpoint")
    return client


def _count(reader: Any, sql: str) -> int:
    return int(reader.query(sql).result_rows[0][0])


def _cli(*args: str, stdin: str = "") -> int:
    from cli.main import main

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(["quarantine", *args])
    finally:
        sys.stdin = old


def _rows(reader: Any, site: int) -> list[dict[str, Any]]:
    from cli.quarantine import _ROW_COLUMNS

    found = reader.query(f"SELECT {', '.join(_ROW_COLUMNS)} FROM dnma.quarantine FINAL WHERE site_id = {site} "
                         "ORDER BY received_at, id").result_rows
    return [dict(zip(_ROW_COLUMNS, r, strict=True)) for r in found]


def _spool(settings: Settings, records: list[bytes]) -> None:
    async def go() -> None:
        w = SpoolWriter(settings.resolved_spool_dir, max_bytes=10**10, segment_bytes=1 << 20, commit_interval_ms=2)
        await w.start()
        await w.append([], records)
        await w.close()

    asyncio.run(go())


def test_the_reporting_api_shows_each_token_its_sites(stack: dict[str, Any]) -> None:
    """DNMA.getQuarantine: a site's token sees its own site's records, never an unregistered id's;
    the super user sees every one; no token, nothing."""
    from aggregator import reporting
    from collector.reporting_routes import report_methods

    app = Collector(stack["settings"], api_methods=report_methods(reporting))

    async def call(**params: str) -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
            r = await http.get("/index.php", params={"module": "API", "method": "DNMA.getQuarantine",
                                                     "format": "json", **params})
            return r.json()

    def counts(answer: dict[str, Any]) -> list[tuple[int, str, int]]:
        return [(c["site_id"], c["reason"], c["records"]) for c in answer["counts"]]

    site1 = [(1, "auth_required", 1), (1, "cdt_too_old", 1)]
    assert counts(asyncio.run(call(token_auth=DEMO_TOKEN))) == site1
    assert asyncio.run(call(token_auth=DEMO_TOKEN, idSite=str(LATE_SITE)))["result"] == "error"
    assert asyncio.run(call())["result"] == "error"
    everything = asyncio.run(call(token_auth=SUPER_TOKEN, limit="2"))
    assert counts(everything) == [*site1, (LATE_SITE, "unknown_site", 3)]
    assert len(everything["samples"]) == 2 and all("token_auth" not in s["request"] for s in everything["samples"])
    only = asyncio.run(call(token_auth=SUPER_TOKEN, idSite=str(LATE_SITE), reason="unknown_site"))
    assert counts(only) == [(LATE_SITE, "unknown_site", 3)]


def test_a_late_registered_site_gets_its_refused_hits_back_once(stack: dict[str, Any], capsys: Any) -> None:
    settings, reader = stack["settings"], stack["reader"]
    hits7 = f"SELECT count(), uniqExact(url) FROM dnma.hits WHERE site_id = {LATE_SITE}"
    assert _cli("list", "--site", str(LATE_SITE), "--json") == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert listed["counts"] == [{"site_id": LATE_SITE, "reason": "unknown_site", "records": 3,
                                 "first": listed["counts"][0]["first"], "last": listed["counts"][0]["last"]}]
    # Before the site exists a replay stores nothing and changes nothing.
    assert _cli("replay", "--site", str(LATE_SITE)) == 0
    assert "0 stored, 0 excluded, 3 still refused (unknown_site 3)" in capsys.readouterr().out

    dump_sites([demo_sites()[0], _late_site()], stack["data_dir"] / "sites.yaml")
    assert _cli("replay", "--site", str(LATE_SITE), "--dry-run") == 0
    assert "3 stored, 0 excluded, 0 still refused (dry run: nothing written)" in capsys.readouterr().out
    assert _count(reader, hits7) == 0

    # An interrupted replay (it wrote the outcome of its first two records, then died), the replay
    # run again, and a third that read the quarantine before the loader stored the others' outcome.
    rows = _rows(reader, LATE_SITE)
    records, counts = replay_records(rows, replay_context(settings), "", version=int(clock.time() * 1000))
    assert counts["stored"] == 3
    _spool(settings, records[:2])
    assert _cli("replay", "--site", str(LATE_SITE)) == 0
    _spool(settings, records)
    wait_until(lambda: _count(reader, f"SELECT count() FROM dnma.quarantine FINAL WHERE site_id = {LATE_SITE}") == 0,
               30, "site 7's quarantine emptied")
    wait_until(lambda: reader.query(hits7).result_rows[0] == (3, 3), 30, f"3 hits once: {log_tail(stack['data_dir'])}")
    # Once more, later: nothing left to replay, still each hit once.
    assert _cli("replay", "--site", str(LATE_SITE)) == 0
    assert "0 quarantined request(s)" in capsys.readouterr().out
    assert reader.query(hits7).result_rows[0] == (3, 3)
    stored = dict(reader.query(f"SELECT url, ts FROM dnma.hits WHERE site_id = {LATE_SITE}").result_rows)
    # The bulk item's cdt, 10 hours before its receipt, dates it: the 24 h rule judged at receipt.
    assert int(stored[f"{URL}3"].timestamp()) == stack["now"] - 10 * 3600
    uid_hash = next(r["user_hash"] for r in rows if r["request"]["url"] == f"{URL}2")
    assert reader.query(f"SELECT user_hash FROM dnma.hits WHERE url = '{URL}2'").result_rows == [(uid_hash,)]


def test_refused_for_auth_fields_need_the_super_users_token(stack: dict[str, Any], capsys: Any) -> None:
    reader = stack["reader"]
    rows = {r["request"]["url"]: r for r in _rows(reader, 1)}
    auth, old = rows[f"{URL}auth"], rows[f"{URL}old"]
    assert (auth["reason"], old["reason"]) == ("auth_required", "cdt_too_old")
    assert auth["visitor_id_auth"] not in (0, auth["visitor_id"])
    # The cdt rule is judged at the receipt time kept, not at the replay's.
    assert replay(old, replay_context(stack["settings"])).reason == "cdt_too_old"
    assert replay({**old, "received_at": old["received_at"].timestamp() - 2 * 86_400 + 3600},
                  replay_context(stack["settings"])).reason is None

    assert _cli("replay", "--site", "1", "--super-user-token-stdin", stdin="not-the-token\n") == 2
    assert "not the super user's" in capsys.readouterr().err
    assert _cli("replay", "--site", "1") == 0
    assert "1 stored, 0 excluded, 1 still refused (cdt_too_old 1)" in capsys.readouterr().out
    wait_until(lambda: _count(reader, f"SELECT count() FROM dnma.hits WHERE url = '{URL}auth'") == 1, 30, "auth hit")
    # Stored as an unauthenticated request: the cip (its visitor id) left out; the old cdt still refused.
    assert reader.query(f"SELECT visitor_id FROM dnma.hits WHERE url = '{URL}auth'").result_rows == [(auth["visitor_id"],)]
    wait_until(lambda: [r["reason"] for r in _rows(reader, 1)] == ["cdt_too_old"], 30, "the auth record resolved")
    assert _count(reader, f"SELECT count() FROM dnma.hits WHERE url = '{URL}old'") == 0

    assert _cli("replay", "--site", "1", "--super-user-token-stdin", stdin=f"{SUPER_TOKEN}\n") == 0
    assert "1 stored, 0 excluded, 0 still refused" in capsys.readouterr().out
    wait_until(lambda: _count(reader, f"SELECT count() FROM dnma.hits WHERE url = '{URL}old'") == 1, 30, "old hit")
    [(ts,)] = reader.query(f"SELECT ts FROM dnma.hits WHERE url = '{URL}old'").result_rows
    assert int(ts.timestamp()) == stack["now"] - 2 * 86_400
    wait_until(lambda: _rows(reader, 1) == [], 30, "site 1's quarantine emptied")


def test_bad_arguments_get_one_line(stack: dict[str, Any], capsys: Any) -> None:
    assert _cli("list", "--site", "0") == 2
    assert capsys.readouterr().err.strip() == "dnma quarantine: --site must be a site id (an integer > 0)"
    with pytest.raises(SystemExit) as exc:
        _cli("list", "--reason", "nope")
    assert exc.value.code == 2


def test_bounds_keep_each_registered_sites_newest_and_junk_apart(stack: dict[str, Any], capsys: Any) -> None:
    """Caps of 3 per registered site and 4 for unregistered ids together (the module's loader), TTL
    30 days: a site's oldest go first, newer junk to unknown ids never evicts a registered site's."""
    reader, now = stack["reader"], stack["now"]

    def kept(n: int, site: int, age_s: int) -> bytes:
        return q.encode(q.QUARANTINE, {"id": f"bound-{site}-{n}", "version": 0, "received_at": now - age_s,
                                       "site_id": site, "reason": "invalid_event", "request": {"n": str(n)}})

    site7 = [kept(n, LATE_SITE, 5000 - n * 1000) for n in range(5)] + [kept(9, LATE_SITE, 31 * 86_400)]
    junk = [kept(n, 900 + n, 100 - n) for n in range(6)]
    _spool(stack["settings"], site7 + junk)
    live = "SELECT count() FROM dnma.quarantine FINAL WHERE id LIKE 'bound-%'"
    wait_until(lambda: _count(reader, live) == 12 or _count(reader, "SELECT count() FROM dnma.quarantine_evictions") > 0,
               30, "the records loaded")
    assert _cli("trim") == 0
    assert "quarantine trimmed" in capsys.readouterr().out
    left = reader.query("SELECT site_id, id FROM dnma.quarantine FINAL WHERE id LIKE 'bound-%' ORDER BY id").result_rows
    assert [i for s, i in left if s == LATE_SITE] == ["bound-7-2", "bound-7-3", "bound-7-4"]
    assert [i for s, i in left if s != LATE_SITE] == ["bound-902-2", "bound-903-3", "bound-904-4", "bound-905-5"]
    evicted = reader.query("SELECT site_id = 7, cause, sum(records) FROM dnma.quarantine_evictions "
                           "GROUP BY 1, 2 ORDER BY 1, 2").result_rows
    assert evicted == [(0, "cap", 2), (1, "cap", 2), (1, "ttl", 1)]
    assert _cli("list", "--json") == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert {"site_id": LATE_SITE, "reason": "invalid_event", "cause": "ttl", "records": 1} in listed["evicted"]
