"""The Matomo `module=API` surface, /healthz and /metrics."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from ct_support import DEMO_TOKEN, SITE3_TOKEN, SUPER_TOKEN, Collector, collector_sites
from harness import free_port

from dnma.settings import Settings
from dnma.sites import dump_sites


def api(collector: Collector, how: str, **params: str) -> object:
    params = {"module": "API", "format": "json", **params}
    if how == "POST /":
        r = collector.http.post("/", data=params)
    elif how == "POST /index.php":
        r = collector.http.post("/index.php", data=params)
    else:
        r = collector.http.get("/index.php", params=params)
    assert r.status_code in (200, 400, 401)  # Matomo's: an error 200, a refused access 401, an unknown method 400
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_get_site_from_id_as_the_log_importer_calls_it(collector: Collector) -> None:
    for how in ("POST /", "POST /index.php", "GET /index.php"):
        for token in (DEMO_TOKEN, SUPER_TOKEN):
            doc = api(collector, how, method="SitesManager.getSiteFromId", idSite="1", token_auth=token)
            assert isinstance(doc, dict)
            assert doc["idsite"] == "1" and doc["name"] == "ENT démo"
            assert doc["main_url"] == "https://ent.demo.example" and doc["timezone"] == "Europe/Paris"


def test_api_errors(collector: Collector) -> None:
    """Matomo's error document, with Matomo's HTTP status: 401 for a refused access, 400 for an
    unknown method, 200 for a bad parameter (core/API/ResponseBuilder.php)."""
    for params, status in (
        ({"method": "SitesManager.getSiteFromId", "idSite": "1", "token_auth": "wrong"}, 401),
        ({"method": "SitesManager.getSiteFromId", "idSite": "2", "token_auth": DEMO_TOKEN}, 401),  # other site's token
        ({"method": "SitesManager.getSiteFromId", "idSite": "99", "token_auth": SUPER_TOKEN}, 401),
        ({"method": "SitesManager.getSiteFromId", "token_auth": SUPER_TOKEN}, 200),
        ({"method": "Nope.nothing", "token_auth": SUPER_TOKEN}, 400),
    ):
        r = collector.http.post("/", data={"module": "API", "format": "json", **params})
        doc = r.json()
        assert r.status_code == status, (params, r.status_code, doc)
        assert isinstance(doc, dict) and doc["result"] == "error" and doc["message"], params


def test_get_sites_id_from_site_url(collector: Collector) -> None:
    doc = api(
        collector,
        "GET /index.php",
        method="SitesManager.getSitesIdFromSiteUrl",
        url="https://ent.demo.example/x",
        token_auth=SUPER_TOKEN,
    )
    assert doc == [{"idsite": 1}]
    doc = api(
        collector,
        "POST /",
        method="SitesManager.getSitesIdFromSiteUrl",
        url="ent-dnt.example",
        token_auth=SUPER_TOKEN,
    )
    assert doc == [{"idsite": 2}]
    assert (
        api(
            collector,
            "POST /",
            method="SitesManager.getSitesIdFromSiteUrl",
            url="https://nowhere.example",
            token_auth=SUPER_TOKEN,
        )
        == []
    )


def test_api_methods_handed_to_a_collector_are_answered(tmp_path: Path) -> None:
    """Methods handed to a collector (as the command line hands it the reporting API's) are answered
    over HTTP like the built-in ones, token checks and API.getBulkRequest included; a collector
    not handed them answers Matomo's unknown-method error."""
    from collector.api import ApiRequest
    from collector.app import Collector as CollectorApp

    dump_sites(collector_sites(), tmp_path / "sites.yaml")
    settings = Settings(data_dir=tmp_path, sites_file=tmp_path / "sites.yaml", super_user_token=SUPER_TOKEN)

    def echo(req: ApiRequest) -> object:
        return {"x": req.params.get("x"), "super_user": req.is_super_user()}

    def serve(app: CollectorApp) -> tuple[uvicorn.Server, threading.Thread, int]:
        port = free_port()
        # In this process: the API needs no spool.
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        return server, thread, port

    def call(port: int, token: str, status: int = 200, **extra: str) -> Any:
        params = {"module": "API", "format": "json", "method": "Test.echo", "x": "bonjour", "token_auth": token,
                  **extra}
        r = httpx.post(f"http://127.0.0.1:{port}/index.php", data=params, timeout=10)
        assert r.status_code == status
        assert r.headers["content-type"].startswith("application/json")
        return r.json()

    for methods, expected in (({"Test.echo": echo}, True), ({}, False)):
        server, thread, port = serve(CollectorApp(settings, api_methods=methods))
        try:
            if expected:
                assert call(port, SUPER_TOKEN) == {"x": "bonjour", "super_user": True}
                assert call(port, DEMO_TOKEN) == {"x": "bonjour", "super_user": False}
                bulk = call(port, DEMO_TOKEN, method="API.getBulkRequest", **{"urls[0]": "method=Test.echo&x=a",
                                                                              "urls[1]": "method=Nope.nope"})
                assert bulk[0] == {"x": "a", "super_user": False} and bulk[1]["result"] == "error"
            else:
                gone = call(port, SUPER_TOKEN, 400)  # Matomo's status for an unknown method (BadRequestException)
                assert gone["result"] == "error" and "Test.echo" in gone["message"]
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def test_healthz(collector: Collector) -> None:
    doc = collector.http.get("/healthz").json()
    assert doc["status"] == "ok"
    assert doc["spool"]["started"] is True and doc["spool"]["full"] is False
    assert doc["sites"] == 3


def test_metrics_count_steps_and_drop_reasons(collector: Collector) -> None:
    collector.http.get("/matomo.php", params={"idsite": 999, "rec": 1})
    collector.http.get("/matomo.php", params={"idsite": 1, "rec": 0})
    collector.http.get(
        "/matomo.php", params={"idsite": 1, "rec": 1, "url": "https://ent.demo.example/metrics"}
    )
    (collector.stack.data_dir / "loader_status.json").write_bytes(
        orjson.dumps({"backlog_bytes": 1234, "lag_seconds": 2.5, "state": "ok"})
    )
    text = collector.http.get("/metrics").text
    assert 'dnma_collector_hits_dropped_total{reason="unknown_site"}' in text
    assert 'dnma_collector_hits_dropped_total{reason="rec_not_1"}' in text
    assert 'dnma_collector_step_seconds_total{step="parse_site"}' in text
    assert 'dnma_collector_step_calls_total{step="build_row"}' in text
    assert "dnma_collector_hits_accepted_total" in text
    assert "dnma_spool_bytes" in text
    assert "dnma_loader_backlog_bytes 1234.0" in text and "dnma_loader_lag_seconds 2.5" in text


def server_errors(collector: Collector) -> dict[str, float]:
    """dnma_collector_server_errors_total by route, as /metrics shows it now."""
    text = collector.http.get("/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r'^dnma_collector_server_errors_total\{route="([^"]*)"\} (\S+)$',
                                                   text, re.M)}


def test_every_5xx_is_counted_by_route_template(collector: Collector) -> None:
    """A real 500 of the quality alerts: the session's collector runs without the loader, so its
    read-only endpoint is unreachable. (The reporting API answers the same outage, and bad input,
    with a Matomo error: tests/test_listeners.py probes that no input makes it fail.)"""
    before = server_errors(collector)
    # Every route is listed from the start, a route that never failed at 0.
    assert {"/index.php", "/", "/api/quality/alerts", "/debug/hits", "/healthz", "/metrics", "/matomo.php",
            "/piwik.php"} <= set(before)
    assert before["/healthz"] == 0
    # A Unicode digit that str.isdigit accepts and int() refuses: a client's error, not a 5xx.
    reporting = httpx.get(f"{collector.url}/index.php", timeout=30, params={
        "module": "API", "method": "VisitsSummary.get", "idSite": "\u00b2", "period": "day", "date": "today",
        "format": "json", "token_auth": SUPER_TOKEN})
    assert reporting.status_code == 200 and reporting.json()["result"] == "error", reporting.text
    assert "idSite" in reporting.json()["message"]
    alerts = httpx.get(f"{collector.url}/api/quality/alerts", params={"token_auth": SUPER_TOKEN}, timeout=30)
    assert alerts.status_code == 500
    after = server_errors(collector)
    assert after["/index.php"] == before["/index.php"]
    assert after["/api/quality/alerts"] == before["/api/quality/alerts"] + 1
    assert after["/healthz"] == 0
    assert not any(route.startswith("/index.php?") for route in after)  # the template, not the raw path


# Matomo's 21 site fields (its `site` table, then timezone_name and currency_name), in its order.
SITE_FIELDS = ["idsite", "name", "main_url", "ts_created", "ecommerce", "sitesearch", "sitesearch_keyword_parameters",
               "sitesearch_category_parameters", "timezone", "currency", "exclude_unknown_urls", "excluded_ips",
               "excluded_parameters", "excluded_user_agents", "excluded_referrers", "group", "type",
               "keep_url_fragment", "creator_login", "timezone_name", "currency_name"]


def test_sites_methods_answer_the_sites_a_token_may_read(collector: Collector) -> None:
    ids = "SitesManager.getSitesIdWithAtLeastViewAccess"
    assert api(collector, "POST /", method=ids, token_auth=SUPER_TOKEN) == ["1", "2", "3"]
    assert api(collector, "GET /index.php", method=ids, token_auth=DEMO_TOKEN) == ["1"]
    assert api(collector, "POST /", method=ids, token_auth=SITE3_TOKEN) == ["3"]
    assert api(collector, "POST /", method=ids, token_auth="wrong") == []

    sites = api(collector, "POST /", method="SitesManager.getSitesWithAtLeastViewAccess", token_auth=SUPER_TOKEN)
    assert isinstance(sites, list) and [s["idsite"] for s in sites] == ["1", "2", "3"]
    assert all(list(s) == SITE_FIELDS for s in sites)
    one, two, three = sites
    assert (one["ts_created"], three["ts_created"]) == ("2020-01-01 00:00:00", "2024-09-02 08:30:00")
    assert (one["timezone_name"], one["currency_name"], one["currency"]) == ("France", "Euro", "EUR")
    assert (two["excluded_ips"], two["excluded_user_agents"]) == ("10.9.0.0/16", "MonitoringProbe")
    # Another's creator login is the super user's to see, as in Matomo.
    mine = api(collector, "POST /", method="SitesManager.getSitesWithAtLeastViewAccess", token_auth=DEMO_TOKEN)
    assert isinstance(mine, list) and len(mine) == 1
    assert list(mine[0]) == [f for f in SITE_FIELDS if f != "creator_login"]
    assert api(collector, "POST /", method="SitesManager.getSitesWithAtLeastViewAccess", token_auth=SUPER_TOKEN,
               limit="2") == sites[:2]
    assert api(collector, "POST /", method="SitesManager.getSiteFromId", idSite="3", token_auth=SITE3_TOKEN) == {
        k: v for k, v in three.items() if k != "creator_login"}

    every = api(collector, "POST /", method="SitesManager.getAllSites", token_auth=SUPER_TOKEN)
    assert isinstance(every, dict) and list(every) == ["1", "2", "3"] and every["2"] == two
    refused = api(collector, "POST /", method="SitesManager.getAllSites", token_auth=DEMO_TOKEN)
    assert isinstance(refused, dict) and refused["result"] == "error" and "'superuser'" in refused["message"]


def test_xml_is_the_default_format_csv_and_refused_formats(collector: Collector) -> None:
    query = {"module": "API", "method": "SitesManager.getSiteFromId", "idSite": "3", "token_auth": SITE3_TOKEN}
    r = collector.http.get("/index.php", params=query)
    assert r.status_code == 200 and r.headers["content-type"] == "text/xml; charset=utf-8"
    assert r.text.startswith('<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<row>\n\t\t<idsite>3</idsite>\n')
    assert "\t\t<ts_created>2024-09-02 08:30:00</ts_created>\n" in r.text and "\t\t<group />\n" in r.text
    version = collector.http.get("/index.php", params={"module": "API", "method": "API.getMatomoVersion"})
    assert version.text == '<?xml version="1.0" encoding="utf-8" ?>\n<result>5.0.0</result>'
    denied = collector.http.post("/index.php", data={**query, "token_auth": DEMO_TOKEN})
    assert denied.text.startswith('<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<error message="')
    csv = collector.http.post("/index.php", data={**query, "format": "csv", "method":
                                                  "SitesManager.getSitesIdWithAtLeastViewAccess", "token_auth": SUPER_TOKEN})
    assert csv.headers["content-type"] == "application/vnd.ms-excel" and csv.content == b"\xff\xfe" + "1\n2\n3".encode("utf-16-le")
    for fmt in ("html", "rss", "php"):
        refused = collector.http.post("/index.php", data={**query, "format": fmt})
        assert refused.text.startswith(f"Error: Renderer format '{fmt}' not valid."), refused.text
    as_json = collector.http.post("/index.php", data={**query, "format": "original"})
    assert as_json.json()["idsite"] == "3"
