"""`dnma quarantine list [--site N] [--reason R] [--json]`, `dnma quarantine replay --site N
[--reason R] [--dry-run] [--super-user-token-stdin]` and `dnma quarantine trim`: the refused tracking requests kept
(dnma/quarantine.py), and their replay through the pipeline once the cause is fixed.

A replay reads the records (through the live loader's read-only endpoint, or the storage), runs
them through the collector's steps here (collector/quarantine.py), and writes the outcome into the
spool: the loader stores each passing request once (its insert deduplication token is the record's
id) and removes it from the quarantine, or records its new reason.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from collector.hit import INVALID_REASONS
from dnma import clock
from dnma import quarantine as q
from dnma.settings import Settings, get_settings

REASONS = sorted(str(r) for r in INVALID_REASONS)
APPEND_RECORDS = 2_000  # records per spool append of a replay
_ROW_COLUMNS = ("id", "received_at", "site_id", "reason", "detail", "request", "headers", "user_hash",
                "visitor_id", "visitor_id_auth", "ip_excluded", "bulk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="refused requests kept, by site and reason, with the latest ones")
    ls.add_argument("--site", type=int, help="only this site id (registered or not)")
    ls.add_argument("--reason", choices=REASONS, help="only this refusal reason")
    ls.add_argument("--json", action="store_true", help="print JSON (counts, samples, evicted)")
    ls.add_argument("--limit", type=int, default=20, help="latest records shown (default 20)")
    sub.add_parser("trim", help="apply the bounds now (quarantine_keep_days, the caps); the loader does every minute")
    rp = sub.add_parser("replay", help="run a site's quarantined requests through the pipeline again")
    rp.add_argument("--site", type=int, required=True, help="the site id the requests named")
    rp.add_argument("--reason", choices=REASONS, help="only the requests refused for this reason")
    rp.add_argument("--dry-run", action="store_true", help="say what would be stored, write nothing")
    rp.add_argument("--super-user-token-stdin", action="store_true",
                    help="read the super user's token_auth on stdin: the requests are then authenticated "
                         "(fields only a token allows, cip, old cdt); without it those fields are left out")


def run(args: argparse.Namespace) -> int:
    from dnma.admin import read_client

    if args.action == "trim":
        from aggregator.jobs import run_command

        return run_command("quarantine.trim", {})
    settings = get_settings()
    if args.site is not None and not 0 < args.site < 2**32:
        return _fail("--site must be a site id (an integer > 0)")
    try:
        client = read_client(settings)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        return _fail(f"cannot read the quarantine: {str(exc).splitlines()[0][:200]}", 1)
    if args.action == "list":
        return _list(settings, client, args)
    return _replay(settings, client, args)


def _fail(message: str, code: int = 2) -> int:
    print(f"dnma quarantine: {message}", file=sys.stderr)
    return code


def _list(settings: Settings, client: Any, args: argparse.Namespace) -> int:
    if args.limit < 0:
        return _fail("--limit must be >= 0")
    try:
        found = q.listing(client, settings.clickhouse_database, q.Filter(args.site, args.reason), args.limit)
    except Exception as exc:  # noqa: BLE001
        return _fail(f"cannot read the quarantine (run `dnma migrate`?): {str(exc).splitlines()[0][:200]}", 1)
    if args.json:
        print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not found["counts"]:
        print("quarantine: empty" + (" for this selection" if args.site or args.reason else ""))
    else:
        print(f"{'site':>6}  {'reason':<20} {'records':>8}  first received        last received")
        for c in found["counts"]:
            print(f"{c['site_id']:>6}  {c['reason']:<20} {c['records']:>8}  {c['first'][:19]}   {c['last'][:19]}")
    if found["samples"]:
        print(f"\nlatest {len(found['samples'])}:")
        for s in found["samples"]:
            print(f"  {s['received_at'][:19]}  site {s['site_id']}  {s['reason']}: {s['detail']}  "
                  f"{_request_line(s['request'])}")
    for e in found["evicted"]:
        print(f"evicted ({e['cause']}): site {e['site_id']} {e['reason']}: {e['records']}")
    return 0


def _request_line(request: dict[str, str], width: int = 100) -> str:
    text = "&".join(f"{k}={v}" for k, v in request.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _replay(settings: Settings, client: Any, args: argparse.Namespace) -> int:
    from collector.quarantine import replay_context, replay_records
    from dnma.access import Access

    token = ""
    if args.super_user_token_stdin:
        token = sys.stdin.readline().strip()
        if not Access(settings).is_super_user(token):
            return _fail("the token read on stdin is not the super user's", 2)
    where, params = q.Filter(args.site, args.reason).where()
    try:
        found = client.query(
            f"SELECT {', '.join(_ROW_COLUMNS)} FROM {settings.clickhouse_database}.quarantine FINAL WHERE {where} "
            "ORDER BY received_at, id", parameters=params)
    except Exception as exc:  # noqa: BLE001
        return _fail(f"cannot read the quarantine (run `dnma migrate`?): {str(exc).splitlines()[0][:200]}", 1)
    rows = [dict(zip(_ROW_COLUMNS, r, strict=True)) for r in found.result_rows]
    records, counts = replay_records(rows, replay_context(settings), token, version=int(clock.time() * 1000))
    refused = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(counts.items()) if k.startswith("refused:"))
    summary = (f"site {args.site}: {len(rows)} quarantined request(s): {counts['stored']} stored, "
               f"{counts['excluded']} excluded, {counts['refused']} still refused" + (f" ({refused})" if refused else ""))
    if args.dry_run:
        print(summary + " (dry run: nothing written)")
        return 0
    if records:
        asyncio.run(_spool(settings, records))
    print(summary + ("; the loader stores them from the spool" if records else ""))
    return 0


async def _spool(settings: Settings, records: list[bytes]) -> None:
    from dnma.spool import SpoolWriter

    writer = SpoolWriter(settings.resolved_spool_dir, max_bytes=settings.spool_max_bytes,
                         segment_bytes=settings.spool_segment_bytes,
                         commit_interval_ms=settings.spool_commit_interval_ms)
    await writer.start()
    try:
        for start in range(0, len(records), APPEND_RECORDS):
            await writer.append([], records[start:start + APPEND_RECORDS])
    finally:
        await writer.close()
