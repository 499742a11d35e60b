"""`dnma demo`: the SDK's simulated ENT traffic (dnma_client.simulator) sent through the collector,
with the server's settings and each site's token (or one token for all), and the demo sites'
registrations written on request; then a handful of requests the collector refuses (an unknown
site, a stale token, a broken event...), kept in its quarantine for the Qualité dashboard."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path

from dnma_client.simulator import HITS_PER_SCHOOL_DAY, Simulation, demo_site_ids, demo_sites, send

from cli.stack import read_env_file, site_token_key


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=int, default=60, help="days of traffic (0: only write --sites-out)")
    p.add_argument("--scale", type=float, default=1.0, help="1 ≈ 16,000 hits per school day")
    p.add_argument("--start", type=date.fromisoformat, default=None, help="first day (default: DAYS days ago)")
    p.add_argument("--year-ago-scale", type=float, default=0.25,
                   help="the same school weeks one year earlier, at this share of --scale (0: none): the "
                        "rentrée comparison's N−1 line")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--collector", default="", help="collector base URL (default: from settings)")
    p.add_argument("--token", default="", help="one token_auth for every site (default: settings.super_user_token)")
    p.add_argument("--tokens-file", type=Path, default=None,
                   help="KEY=VALUE file naming each site's token as DEMO_SITE_<N>_TOKEN (var/secrets.env "
                        "after `dnma up`): each site's hits are sent with its own token")
    p.add_argument("--sites-out", type=Path, default=None, help="write the sites' registrations (YAML) here")
    p.add_argument("--concurrency", type=int, default=4, help="bulk requests in flight")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-refused", action="store_true",
                   help="send no refused request (by default a few, one per usual tagging mistake)")


def year_ago_days(start: date, days: int) -> list[date]:
    """The days of the school weeks one year earlier with the same numbers as those of the `days`
    days from `start` (dnma.indicators: week k of N against week k of N−1, not the same dates)."""
    from dnma.indicators import same_school_week_year_ago

    mondays = {m for i in range(days) if (m := same_school_week_year_ago(start + timedelta(days=i)))}
    return sorted(m + timedelta(days=d) for m in mondays for d in range(7))


def refused_requests(site_id: int, main_url: str, now: float) -> list[dict[str, str]]:
    """What an ENT's tagging gets wrong, one request each (collector/steps.py's refusals), so that
    the quarantine (and the Qualité dashboard's refused-requests tables) has examples: a site id
    nobody registered, a test site's id 0, a replayed hit dated three days back under a revoked
    token, an event without its action, a visitor id that is not 16 hex digits."""
    page = main_url.rstrip("/") + "/"
    base = {"rec": "1", "apiv": "1", "send_image": "0"}
    return [
        {**base, "idsite": "999", "url": "https://ent-inconnu.example/accueil", "action_name": "Accueil"},
        {**base, "idsite": "0", "url": page + "recette", "action_name": "Recette"},
        {**base, "idsite": str(site_id), "url": page + "cahier-de-textes", "action_name": "Cahier de textes",
         "cdt": str(int(now) - 3 * 86_400), "token_auth": "jeton-revoque-de-demo"},
        {**base, "idsite": str(site_id), "url": page + "ressources", "e_c": "Ressources", "e_a": " "},
        {**base, "idsite": str(site_id), "url": page + "messagerie", "action_name": "Messagerie", "cid": "xyz"},
    ]


def send_refused(collector: str, site_id: int, main_url: str, now: float) -> dict[str, int]:
    """Sends `refused_requests` one GET each; {"sent", "refused"} (refused: answered 400)."""
    import httpx

    url = collector.rstrip("/") + "/matomo.php"
    requests = refused_requests(site_id, main_url, now)
    with httpx.Client(timeout=30, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) dnma-demo"}) as http:
        refused = sum(http.get(url, params=params).status_code == 400 for params in requests)
    return {"sent": len(requests), "refused": refused}


def run(args: argparse.Namespace) -> int:
    from dnma import clock
    from dnma.settings import get_settings
    from dnma.sites import dump_sites

    settings = get_settings()
    tokens: str | Mapping[int, str] = args.token or settings.super_user_token
    if args.tokens_file:
        values = read_env_file(args.tokens_file)
        missing = [i for i in demo_site_ids() if site_token_key(i) not in values]
        if missing:
            print(f"dnma demo: {args.tokens_file} names no token for sites {missing}", file=sys.stderr)
            return 2
        tokens = {i: values[site_token_key(i)] for i in demo_site_ids()}
    if not tokens:
        print("dnma demo: no token (--token, --tokens-file or DNMA_SUPER_USER_TOKEN): past dates need one",
              file=sys.stderr)
        return 2
    if args.sites_out:
        dump_sites(demo_sites(tokens), args.sites_out)
    if args.days <= 0:
        return 0
    host = settings.collector_host if settings.collector_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    collector = args.collector or f"http://{host}:{settings.collector_port}"
    # The last simulated day is yesterday at the latest (DNMA's clock): `cdt` in the future would
    # become "now".
    start = args.start or clock.today() - timedelta(days=args.days)
    sim = Simulation(scale=args.scale, seed=args.seed, referentiel_dir=settings.referentiel_dir)
    items = (item for _, day_items in sim.days(start, args.days) for item in day_items)
    expected = int(HITS_PER_SCHOOL_DAY * args.scale * args.days * 0.8)
    report = send(items, collector, tokens, concurrency=args.concurrency, progress=not args.no_progress,
                  total=expected)
    reports = [report]
    if args.year_ago_scale > 0:
        # The same school weeks a year earlier, smaller: the rentrée view's N−1 line (own population).
        past = Simulation(scale=args.scale * args.year_ago_scale, seed=args.seed,
                          referentiel_dir=settings.referentiel_dir)
        past_days = year_ago_days(start, args.days)
        reports.append(send((item for d in past_days for item in past.day(d)), collector, tokens,
                            concurrency=args.concurrency, progress=not args.no_progress,
                            total=int(expected * args.year_ago_scale)))
    summary = report.as_dict()
    if len(reports) > 1:
        summary["an_passe"] = reports[1].as_dict()
    refused = None
    if not args.no_refused:
        first = demo_sites(tokens)[0]
        refused = send_refused(collector, int(first["id"]), str(first["main_url"]), clock.now().timestamp())
        summary["refusees"] = refused
    print(json.dumps(summary))
    for r in reports:
        for sample in r.invalid_samples:
            print(f"invalid: {sample[:300]}", file=sys.stderr)
    if refused is not None and refused["refused"] != refused["sent"]:
        print(f"dnma demo: {refused['sent'] - refused['refused']} of the {refused['sent']} requests meant to be "
              "refused were not answered 400", file=sys.stderr)
        return 1
    return 0 if all(r.invalid == 0 and r.failed_batches == 0 for r in reports) else 1
