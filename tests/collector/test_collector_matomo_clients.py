"""Stock Matomo clients from the registries against the running collector: the npm
`matomo-tracker` (GET hits + a bulk batch) and PyPI `matomopy` (form POSTs, bulk, token + cip)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ct_support import DEMO_TOKEN, Collector

NODE_DIR = Path(__file__).resolve().parent / "node"


def _wait_rows(collector: Collector, marker: str, n: int, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows = collector.rows_with(marker)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = collector.rows_with(marker)
    return rows


@pytest.fixture(scope="module")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed")
    work = tmp_path_factory.mktemp("node-client")
    for name in ("package.json", "client.js"):
        shutil.copy(NODE_DIR / name, work / name)
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=work, capture_output=True, timeout=180
    )
    if done.returncode != 0:
        pytest.skip(f"npm install failed: {done.stderr.decode()[-300:]}")
    return work


@pytest.fixture(scope="module")
def matomopy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pyclients")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "matomopy==0.1.0",
        ],
        capture_output=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"pip install matomopy failed: {done.stderr.decode()[-300:]}")
    return target


def test_npm_matomo_tracker(collector: Collector, node_client: Path, marker: str) -> None:
    done = subprocess.run(
        ["node", "client.js", f"{collector.url}/matomo.php", "1", marker],
        cwd=node_client,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert report["errors"] == []
    assert json.loads(report["bulk"]) == {"status": "success", "tracked": 2, "invalid": 0}
    rows = _wait_rows(collector, marker, 5)
    by_action = sorted((r["action"], r["url"].rsplit("/", 1)[-1]) for r in rows)
    assert by_action == sorted(
        [
            ("download", "file.pdf"),
            ("event", marker),
            ("pageview", "bulk1"),
            ("pageview", "bulk2"),
            ("pageview", marker),
        ]
    )
    event = next(r for r in rows if r["action"] == "event")
    assert (event["event_category"], event["event_action"], event["event_value"]) == ("node", "click", 2.5)
    assert all(r["uai"] == "0350122T" and r["service"] == "notes" and r["flags"] == [] for r in rows)
    assert {r["visitor_id"] for r in rows} == {0xAA, 0xAB}


def test_pypi_matomopy(collector: Collector, matomopy_path: Path, marker: str) -> None:
    script = textwrap.dedent(
        f"""
        import json
        from matomopy.tracking import MatomoTracker
        t = MatomoTracker({collector.url!r}, 1, user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")
        t.set_visitor_id("0123456789abcdef").set_user_id("eleve-{marker}").set_url("https://ent.demo.example/py/{marker}")
        for slot, value in ((1, "0940176F"), (2, "CAHIER_TEXTES"), (3, "NATIF"), (5, "ENSEIGNANT")):
            t.set_custom_dimension(slot, value)
        out = {{}}
        out["page"] = t.track_page_view("Py page {marker}").status_code
        out["event"] = t.track_event("py", "open", name="{marker}", value=3).status_code
        out["download"] = t.track_action("https://ent.demo.example/py/{marker}/doc.odt", "download").status_code
        t.enable_bulk_tracking()
        t.track_page_view("bulk a {marker}")
        t.track_page_view("bulk b {marker}")
        out["bulk"] = t.flush()
        authed = MatomoTracker({collector.url!r}, 1, token_auth={DEMO_TOKEN!r})
        authed.set_url("https://ent.demo.example/py/{marker}/authed").set_ip("192.0.2.44")
        out["authed"] = authed.track_page_view("authed {marker}").status_code
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(matomopy_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert out == {
        "page": 204,
        "event": 204,
        "download": 204,
        "bulk": {"status": "success", "tracked": 2, "invalid": 0},
        "authed": 204,
    }
    rows = _wait_rows(collector, marker, 6)
    assert sorted(r["action"] for r in rows) == [
        "download",
        "event",
        "pageview",
        "pageview",
        "pageview",
        "pageview",
    ]
    users = {r["user_hash"] for r in rows if "authed" not in r["url"]}
    assert len(users) == 1 and 0 not in users
    assert all(
        r["service"] == "cahier_textes" and r["profil"] == "ENSEIGNANT"
        for r in rows
        if "authed" not in r["url"]
    )
    assert all(r["browser"] == "firefox" and r["os"] == "linux" for r in rows if "authed" not in r["url"])
