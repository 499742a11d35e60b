"""`dnma sites add|set|list|projet`: register and change sites (ENT platforms) and the ENT projects'
alert contacts without editing the sites YAML by hand; the rules are dnma.registration's. Running
collectors take a change into account within a few seconds (dnma.access reloads the file)."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from dnma import clock, registration
from dnma.settings import get_settings
from dnma.sites import SiteRegistry


def _site_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def _change_options(p: argparse.ArgumentParser, *, new: bool) -> None:
    p.add_argument("--id", type=_site_id, required=True, help="the site's idsite")
    p.add_argument("--name", required=new, help="the site's name (at most 90 characters)")
    p.add_argument("--url", required=new, help="the ENT's main URL (https://…)")
    p.add_argument("--timezone", help="IANA time zone of the site's days (default Europe/Paris)")
    p.add_argument("--perimeter", help="where its UAIs come from, comma-separated: 1D, 2D, département codes "
                                       "(035, 2A, 974), academie:NAME, region:CODE; '' clears it")
    p.add_argument("--projet", help="the ENT project code (e.g. ENT_BRETAGNE)")
    p.add_argument("--per-person-reports", choices=("on", "off"),
                   help="the reporting API's per-person and campaign reports (Live.getLastVisitsDetails, "
                        "UserId.getUsers, the userId segment, Referrers.getCampaigns), for the super user "
                        "only; off by default (CNIL consent exemption)")
    _alert_options(p)


def _alert_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alert-webhook", help="the editor's webhook for the quality alerts about it ('' removes it)")
    p.add_argument("--alert-email", action="append", help="an editor's e-mail address for its quality alerts "
                                                          "(repeat for several; one '' removes them)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    _change_options(sub.add_parser("add", help="register a site; prints its write token (shown once, stored hashed)"),
                    new=True)
    change = sub.add_parser("set", help="change a registered site (only the options given)")
    _change_options(change, new=False)
    change.add_argument("--new-token", action="store_true", help="replace its write token; prints the new one")
    listing = sub.add_parser("list", help="list the registered sites")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    projet = sub.add_parser("projet", help="an ENT project's alert contacts (for every site of the project)")
    projet.add_argument("code", help="the ENT project code, as the sites' --projet")
    _alert_options(projet)


def _change(args: argparse.Namespace) -> registration.SiteChange:
    return registration.SiteChange(
        name=getattr(args, "name", None), url=getattr(args, "url", None), timezone=getattr(args, "timezone", None),
        perimeter=getattr(args, "perimeter", None), projet=getattr(args, "projet", None),
        alert_webhook=args.alert_webhook, alert_emails=args.alert_email,
        per_person_reports=None if args.per_person_reports is None else args.per_person_reports == "on",
    )


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    path = settings.resolved_sites_file
    try:
        if args.action == "list":
            return _list(SiteRegistry.load(path), args.json)
        if args.action == "add":
            token = registration.add_site(path, args.id, _change(args),
                                          created=clock.now().strftime("%Y-%m-%d %H:%M:%S"))
            print(token)
            print(f"site {args.id} registered in {path}; its write token is printed above, this once "
                  "(only its SHA-256 is kept); running collectors accept its hits within a few seconds",
                  file=sys.stderr)
            return 0
        if args.action == "set":
            token = registration.set_site(path, args.id, _change(args), new_token=args.new_token)
            if token:
                print(token)
            print(f"site {args.id} changed in {path}" + ("; its new write token is printed above, this once"
                                                          if token else ""), file=sys.stderr)
            return 0
        registration.set_project(path, args.code, _change(args))
        print(f"ENT project {args.code} alert contacts changed in {path}", file=sys.stderr)
        return 0
    except (registration.RegistrationError, OSError) as exc:
        print(f"dnma sites: {exc}", file=sys.stderr)
        return 2
    except (ValueError, yaml.YAMLError) as exc:  # the existing file does not load (a hand edit)
        print(f"dnma sites: {path}: {exc}", file=sys.stderr)
        return 2


def _list(registry: SiteRegistry, as_json: bool) -> int:
    rows = registration.describe(registry)
    if as_json:
        print(json.dumps({"sites": rows, "projets": {code: c.as_yaml() for code, c in registry.projects.items()}},
                         ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        perimeter = ",".join(r["perimeter"]) or "-"
        alerts = " ".join(filter(None, [r["alerts"].get("webhook", ""), *r["alerts"].get("emails", [])])) or "-"
        print(f"{r['id']}\t{r['name']}\t{r['url']}\t{r['timezone']}\tprojet {r['projet'] or '-'}\t"
              f"périmètre {perimeter}\tjeton {'oui' if r['token'] else 'non'}\talertes {alerts}")
    return 0
