"""`dnma sites add|set|list` (issue 20): a site registered while a real collector runs has its hits
accepted within seconds, with no restart, and its token (shown once, stored hashed) works; `set`
changes what the running collector applies (time zone, perimeter); bad input is one line on stderr
and a non-zero exit, and leaves the file as it was."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ct_support import SUPER_TOKEN, Collector, page

from cli import main as cli
from dnma.settings import get_settings
from dnma.sites import SiteRegistry, hash_token

NEW = 41  # the site this module registers
RELOAD_WAIT_S = 10.0  # the registry is re-read within RELOAD_CHECK_S (2 s) plus the worker's 1 s look


@pytest.fixture(scope="module")
def running(collector: Collector) -> Iterator[Collector]:
    """The session's collector; its sites file as it was once this module is done (the other
    collector tests count its sites), the collector back on it."""
    path = collector.stack.data_dir / "sites.yaml"
    saved = path.read_bytes()
    try:
        yield collector
    finally:
        path.write_bytes(saved)
        assert wait_for(lambda: not site_info(collector)), "the collector kept the site this module added"


def dnma_sites(collector: Collector, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`dnma sites …` as the operator runs it against this stack's data directory (in process)."""
    saved = {k: os.environ.get(k) for k in ("DNMA_CONFIG", "DNMA_DATA_DIR")}
    os.environ.update(collector.stack.env)
    get_settings.cache_clear()
    umask = os.umask(0o022)
    os.umask(umask)
    capsys.readouterr()
    try:
        code = cli.main(["sites", *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    finally:
        os.umask(umask)  # the command sets 0077 for the process
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    return code, out, err


def hit(collector: Collector, marker: str, **params: Any) -> Any:
    return collector.http.get("/matomo.php", params={"idsite": NEW, "rec": 1, "url": page(marker), **params})


def wait_for(check: Any) -> Any:
    deadline = time.monotonic() + RELOAD_WAIT_S
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def site_info(collector: Collector) -> dict[str, Any]:
    r = collector.http.get("/index.php", params={"module": "API", "method": "SitesManager.getSiteFromId",
                                                 "idSite": NEW, "format": "json", "token_auth": SUPER_TOKEN})
    return dict(r.json()) if r.status_code == 200 and "idsite" in r.json() else {}


def test_a_site_added_while_the_collector_runs_is_accepted_without_restart(
    running: Collector, capsys: pytest.CaptureFixture[str], marker: str
) -> None:
    pid = running.stack.procs["collector"].pid
    before = hit(running, marker + "-before")
    assert before.status_code == 400 and b"unknown_site" in before.content
    code, out, err = dnma_sites(running, capsys, "add", "--id", str(NEW), "--name", "ENT ajouté",
                                "--url", "https://ent41.example", "--perimeter", "2D,035", "--projet", "ENT_41")
    assert code == 0, err
    token = out.strip()
    assert len(token) >= 30 and "\n" not in token and "shown" not in out  # the token alone on stdout
    stored = SiteRegistry.load(running.stack.data_dir / "sites.yaml").get(NEW)
    assert stored is not None and stored.token_sha256 == hash_token(token)
    assert token not in (running.stack.data_dir / "sites.yaml").read_text(encoding="utf-8")

    accepted = wait_for(lambda: hit(running, marker).status_code == 200)
    assert accepted, "the running collector did not take the new site"
    rows = running.rows_with(marker)
    assert rows and {r["site_id"] for r in rows} == {NEW} and rows[0]["projet"] == "ENT_41"
    # Its token is the registry's at once: an authenticated-only parameter passes with it, not without.
    assert hit(running, marker + "-cip", cip="192.0.2.7", token_auth=token).status_code == 200
    refused = hit(running, marker + "-nocip", cip="192.0.2.7")
    assert refused.status_code == 400 and b"auth_required" in refused.content
    assert running.stack.procs["collector"].pid == pid and running.stack.procs["collector"].poll() is None

    code, out, _ = dnma_sites(running, capsys, "list", "--json")
    listed = {s["id"]: s for s in json.loads(out)["sites"]}
    assert code == 0 and listed[NEW]["name"] == "ENT ajouté" and listed[NEW]["token"] is True
    assert "token_sha256" not in out and hash_token(token) not in out


def test_set_changes_the_time_zone_and_perimeter_the_collector_applies(
    running: Collector, capsys: pytest.CaptureFixture[str], marker: str
) -> None:
    if SiteRegistry.load(running.stack.data_dir / "sites.yaml").get(NEW) is None:
        code, _, err = dnma_sites(running, capsys, "add", "--id", str(NEW), "--name", "ENT ajouté",
                                  "--url", "https://ent41.example", "--perimeter", "035")
        assert code == 0, err
    assert wait_for(lambda: site_info(running).get("timezone") == "Europe/Paris")
    # 0350122T (a valid UAI of département 035): inside the declared perimeter, then outside.
    rennes = {"dimension1": "0350122T", "dimension2": "notes", "dimension3": "NATIF", "dimension5": "ELEVE"}
    assert wait_for(lambda: hit(running, marker + "-in", **rennes).status_code == 200)
    assert wait_for(lambda: running.rows_with(marker + "-in"))[0]["flags"] == []

    code, _, err = dnma_sites(running, capsys, "set", "--id", str(NEW), "--timezone", "America/Cayenne",
                              "--perimeter", "973")
    assert code == 0, err
    assert wait_for(lambda: site_info(running).get("timezone") == "America/Cayenne")

    def flagged() -> bool:
        tag = f"{marker}-out-{time.monotonic_ns()}"
        assert hit(running, tag, **rennes).status_code == 200
        rows = wait_for(lambda: running.rows_with(tag))
        return bool(rows) and "outside_perimeter" in rows[0]["flags"]

    assert wait_for(flagged), "the new perimeter did not reach the pipeline"
    site = SiteRegistry.load(running.stack.data_dir / "sites.yaml").get(NEW)
    assert site is not None and site.perimeter.departements == ("973",) and site.timezone == "America/Cayenne"


@pytest.mark.parametrize(("argv", "says"), [
    (["add", "--id", "1", "--name", "Doublon", "--url", "https://x.example"], "site 1 exists"),
    (["add", "--id", "0", "--name", "Zéro", "--url", "https://x.example"], "--id must be an integer from 1"),
    (["add", "--id", "50", "--name", " ", "--url", "https://x.example"], "--name must not be empty"),
    (["add", "--id", "50", "--name", "X", "--url", "ent.example"], "--url must be an http(s) URL"),
    (["add", "--id", "50", "--name", "X", "--url", "https://x.example", "--timezone", "Europe/Pariss"],
     "is not a time zone"),
    (["add", "--id", "50", "--name", "X", "--url", "https://x.example", "--perimeter", "2D,academie:Atlantis"],
     "unknown académie 'Atlantis'"),
    (["add", "--id", "50", "--name", "X", "--url", "https://x.example", "--perimeter", "999"],
     "unknown département '999'"),
    (["add", "--id", "50", "--name", "X", "--url", "https://x.example", "--alert-email", "pas-une-adresse"],
     "is not an e-mail address"),
    (["set", "--id", "77", "--timezone", "UTC"], "no site 77"),
    (["set", "--id", "2", "--alert-webhook", "javascript:alert(1)"], "--alert-webhook must be an http(s) URL"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(
    running: Collector, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    path: Path = running.stack.data_dir / "sites.yaml"
    before = path.read_bytes()
    code, out, err = dnma_sites(running, capsys, *argv)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("dnma sites: ") and says in err, err
    assert "Traceback" not in err
    assert path.read_bytes() == before
