"""The standing rules of every listener (issue 19), on one real stack: each route of the collector
and of the loader's read-only endpoint, as their code lists them (a route added later is probed
too), gets the same bad inputs; none is answered 5xx, none hangs, the collector's 5xx counter does
not move, and both listeners still serve a hit and a query afterwards."""

from __future__ import annotations

import http.client
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from harness import DEMO_SITE_ID, SUPER_TOKEN, Stack

TIMEOUT_S = 1.0  # every header, body and keep-alive timeout of both listeners
ANSWER_WITHIN_S = 5.0  # generous: a refusal must not wait for a body that never comes
CUT_WITHIN_S = 8.0
PROBE_THREADS = 3  # probes in flight at once (more, on a loaded 2-core host, let new connections miss the 1 s header deadline)
BIG_HEADER = 100 * 1024  # past the collector's 64 KiB head and the endpoint's 64 KiB header line

# Values a client may put in any parameter, read by code that expects a number, a date, a list…
BAD_VALUES = [
    "\u00b2", "\u0663", "1,\u00b2", "-1", "0", "1e3", "0x10", "nan", "inf", "-inf", "1e400", " 1 ", "",
    "9" * 4400, "last" + "9" * 30, "previous0", "9999-12-31", "0001-01-01", "2024-02-30", "today,0001-01-01",
    "all,1", "[]", "{}", "null", "%", "\x00", "\ud800", "é" * 3000,
]
# Parameters the listeners' code reads (a name outside this list reaches no code at all).
PARAM_NAMES = [
    "idSite", "idsite", "idDimension", "filter_limit", "period", "date", "url", "urls[0]", "urls[\u00b2]",
    "segment", "format", "since", "limit", "status", "check", "rec", "url", "action_name", "_id", "uid",
    "cdt", "h", "m", "s", "res", "dimension1", "dimension\u00b2", "cvar", "_cvar", "ping", "send_image",
    "query", "database", "default_format", "param_x", "query_id", "max_result_rows",
]
GARBAGE_BODIES = [
    b"{", b"[]", b"null", b"0", b'{"requests": "x"}', b'{"requests": [1, null, {}]}', b'{"requests": ["?idsite=\xb2"]}',
    b'{"requests": [' + b'"?idsite=1&rec=1",' * 10 + b"]}", b"\xff\xfe\x00garbage", b"\x1f\x8b\x08\x00 not gzip",
    b"idSite=%C2%B2&module=API&method=VisitsSummary.get", "é".encode("latin-1") * 100,
]


@dataclass(frozen=True)
class Route:
    port: int
    path: str
    methods: frozenset[str]
    listener: str  # "collector" or "endpoint"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("listeners"),
        collector_header_timeout_s=TIMEOUT_S, collector_body_timeout_s=TIMEOUT_S, collector_keep_alive_timeout_s=1,
        reader_header_timeout_s=TIMEOUT_S, reader_body_timeout_s=TIMEOUT_S, reader_keep_alive_timeout_s=TIMEOUT_S,
    )
    try:
        stack.start_collector()
        stack.start_loader()
        yield stack
    finally:
        stack.stop_all()


def collector_app(stack: Stack) -> Any:
    """The collector as `dnma serve` builds it (cli.serve.create_app), over the stack's settings."""
    from aggregator import reporting
    from collector.app import Collector
    from collector.reporting_routes import report_methods
    from dnma.settings import Settings

    return Collector(Settings(**stack.config), api_methods=report_methods(reporting))


def listening_routes(stack: Stack, app: Any) -> list[Route]:
    """Every route the two listeners serve, read from their code."""
    from aggregator import endpoint
    from collector.app import TRACKING_PATHS
    from collector.validation import VALIDATION_PATHS

    routes = [Route(stack.collector_port, path, frozenset({"GET", "POST", "OPTIONS"}), "collector")
              for path in sorted(TRACKING_PATHS)]
    routes += [Route(stack.collector_port, path, frozenset({"GET", "POST"}), "collector")
               for path in sorted(VALIDATION_PATHS)]
    routes += [Route(stack.collector_port, path, frozenset(methods), "collector")
               for path, methods in sorted(app.api.state.routes.items())]
    routes += [Route(stack.ch_http_port, path, frozenset({"GET", "POST"}), "endpoint") for path in endpoint.PATHS]
    return routes


# --- raw exchanges


def _exchange(port: int, data: bytes, *, within: float = ANSWER_WITHIN_S) -> int | None:
    """Send `data` on a new connection; the answer's status, or None when the server closed
    without one. Fails when neither came within `within` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server refused and closed while we were still sending
            pass
        out = b""
        deadline = time.monotonic() + within
        while b"\r\n" not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"no answer within {within} s to {data[:120]!r}"
            try:
                if not select.select([sock], [], [], left)[0]:
                    continue
                chunk = sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            out += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
        assert m, out[:200]
        return int(m.group(1))


def _slowloris(port: int, first: bytes) -> float:
    """Send `first`, then a header byte every quarter second: seconds until the server closed."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        while time.monotonic() - started < CUT_WITHIN_S + 5:
            try:
                if select.select([sock], [], [], 0)[0] and not sock.recv(65536):
                    break
                while select.select([sock], [], [], 0)[0]:  # a 408 before the close
                    if not sock.recv(65536):
                        return time.monotonic() - started
                sock.send(b"a")
            except OSError:
                break
            time.sleep(0.25)
    return time.monotonic() - started


def _head(method: str, path: str, *lines: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


class _Connection:
    """One keep-alive connection of the standard library's HTTP client, reopened (as httpx's pool
    does) when the server closed it while it was idle: a close between two requests is the
    keep-alive timeout at work, not a refusal."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_WITHIN_S)

    def request(self, method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
        """The answer's status (its body read, so the connection can carry the next request)."""
        sock = self.http.sock
        if sock is not None and select.select([sock], [], [], 0)[0]:
            self.http.close()  # idle and closed by the server (or an unexpected byte): a new connection
        self.http.request(method, target, body=body, headers=headers or {})
        response = self.http.getresponse()
        response.read()
        return response.status


def framing_probes(route: Route) -> list[tuple[str, bytes]]:
    """Malformed or hostile HTTP framing, for each method of the route and one it does not serve."""
    out = []
    for method in sorted(route.methods | {"POST", "PUT", "DELETE", "PATCH", "BREW"}):
        p = route.path
        out += [
            (f"{method} huge Content-Length, no auth, no body", _head(method, p, "Content-Length: 10000000000")),
            (f"{method} Content-Length -1", _head(method, p, "Content-Length: -1") + b"x"),
            (f"{method} Content-Length abc", _head(method, p, "Content-Length: abc") + b"x"),
            (f"{method} bad chunk size", _head(method, p, "Transfer-Encoding: chunked") + b"zz\r\nabc\r\n0\r\n\r\n"),
            (f"{method} non-UTF-8 query", f"{method} {p}?idSite=".encode() + b"\xff\xfe\xb2&x=\xc3 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]
    return out


def server_errors(stack: Stack) -> dict[str, float]:
    """Every listener's 5xx counters by route, from the collector's /metrics (the endpoint's, which
    runs in the loader, reach it through the loader's status file)."""
    text = httpx.get(f"{stack.collector_url}/metrics", timeout=10).text
    return {f"{m[1]} {m[2]}": float(m[3]) for m in re.finditer(
        r'^dnma_(collector|endpoint)_server_errors_total\{route="([^"]*)"\} (\S+)$', text, re.M)}


def _spread(values: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Each value with the parameter names it fills: all of them, or for a long value as many at a
    time as keep the URL under clients' 64 KiB."""
    for value in values:
        per_url = max(1, 40_000 // max(1, len(quote(value, safe="", errors="surrogatepass"))))
        for i in range(0, len(PARAM_NAMES), per_url):
            yield value, PARAM_NAMES[i:i + per_url]


def query_probes(route: Route, stack: Stack, methods: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Bad values in every parameter the code reads, with and without valid credentials (so the
    code past the authentication is reached), and for the Matomo API in each of its methods."""
    creds = ({"user": stack.ch_user, "password": stack.ch_password} if route.listener == "endpoint"
             else {"token_auth": SUPER_TOKEN})
    # Each API method's probes on /index.php only: / is the same handler (collector/api.py), and
    # probing every method on both doubled the test's time as methods joined.
    api = route.listener == "collector" and route.path == "/index.php"
    for value, names in _spread(BAD_VALUES):
        base = dict.fromkeys(names, value)
        yield f"all parameters {value[:20]!r}", base
        yield f"all parameters {value[:20]!r}, credentials", base | creds
        # A valid site, so the code behind the site check meets the bad values.
        yield f"site 1, others {value[:20]!r}", base | creds | {"idSite": str(DEMO_SITE_ID), "idsite": str(DEMO_SITE_ID)}
        if api:
            for method in methods:
                params = base | creds | {"module": "API", "method": method, "format": "json"}
                yield f"{method} {value[:20]!r}", params
                yield f"{method} site 1, {value[:20]!r}", params | {"idSite": str(DEMO_SITE_ID)}
                yield (f"{method} site 1 today, {value[:20]!r}",
                       params | {"idSite": str(DEMO_SITE_ID), "period": "day", "date": "today"})


def test_every_route_refuses_bad_input_without_5xx_or_hanging(stack: Stack) -> None:
    app = collector_app(stack)
    routes = listening_routes(stack, app)
    # The code lists what it serves: the probe sees every surface (a new route joins by itself).
    paths = {(r.listener, r.path) for r in routes}
    assert {("collector", "/matomo.php"), ("collector", "/index.php"), ("collector", "/api/quality/alerts"),
            ("collector", "/debug/hits"), ("collector", "/matomo.php/validate"), ("endpoint", "/"),
            ("endpoint", "/ping")} <= paths, paths
    before = server_errors(stack)
    failures: list[str] = []

    def check(route: Route, what: str, status: int | None, *, answer_needed: bool = True) -> list[str]:
        if status is None and answer_needed:
            return [f"{route.listener} {route.path}: {what}: closed without an answer"]
        if status is not None and status >= 500:
            return [f"{route.listener} {route.path}: {what}: {status}"]
        return []

    # Slow heads first, all at once: each must be cut, none waits for another.
    with ThreadPoolExecutor(max_workers=len(routes)) as pool:
        slow = {r: pool.submit(_slowloris, r.port, _head("GET", r.path)[:-2] + b"X-Slow: ") for r in routes}
        for route, future in slow.items():
            took = future.result()
            if took >= CUT_WITHIN_S:
                failures.append(f"{route.listener} {route.path}: slow headers still open after {took:.1f} s")

    # The other probes (about ten thousand, most of them the Matomo API's methods on /index.php),
    # each an independent request. They took 114 s on CI, a third of it httpx's own CPU: the query
    # and body probes go through the standard library's client (a sixth of httpx's CPU per request)
    # on keep-alive connections, PROBE_THREADS at a time, so the listeners answer some while the
    # client sends others. Each probe and its verdict are as before; only their order differs.
    methods: list[str] = app.api.state.api_methods
    conns: list[_Connection] = []
    local = threading.local()

    def connection(port: int) -> _Connection:
        mine: dict[int, _Connection] = local.__dict__.setdefault("conns", {})
        if port not in mine:
            mine[port] = _Connection(port)
            conns.append(mine[port])
        return mine[port]

    def raw_probe(route: Route, what: str, data: bytes) -> list[str]:
        return check(route, what, _exchange(route.port, data))

    def big_header(route: Route) -> list[str]:
        big = _exchange(route.port, _head("GET", route.path, "X-Big: " + "a" * BIG_HEADER))
        return [] if big in (400, 413, 414, 431) else [f"{route.listener} {route.path}: {BIG_HEADER} B header: {big}"]

    def query_probe(route: Route, what: str, params: dict[str, str]) -> list[str]:
        query = "&".join(f"{quote(k, safe='[]')}={quote(v, safe='', errors='surrogatepass')}" for k, v in params.items())
        # GET, or POST where GET is not served: both read the query string alike.
        method = "GET" if "GET" in route.methods else "POST"
        try:
            status = connection(route.port).request(method, f"{route.path}?{query}")
        except (OSError, http.client.HTTPException) as exc:
            return [f"{route.listener} {route.path}: {method} {what}: {exc!r}"]
        return check(route, f"{method} {what}", status)

    def body_probe(route: Route, body: bytes, params: dict[str, str], content_type: str) -> list[str]:
        what = f"POST {content_type} {body[:30]!r}"
        target = f"{route.path}?{urlencode(params)}" if params else route.path
        try:
            status = connection(route.port).request("POST", target, body, {"Content-Type": content_type})
        except (OSError, http.client.HTTPException) as exc:
            return [f"{route.listener} {route.path}: {what}: {exc!r}"]
        return check(route, what, status)

    # Framing first, one connection at a time as before: a declared body that never comes is cut
    # after the 1 s body timeout, and a handler slowed by probes in flight beside it (/readyz on a
    # loaded host) could be cut before it answered.
    for route in routes:
        for what, data in framing_probes(route):
            failures += raw_probe(route, what, data)
        failures += big_header(route)
    probes: list[Callable[[], list[str]]] = []
    for route in routes:
        probes += [partial(query_probe, route, what, params) for what, params in query_probes(route, stack, methods)]
        creds = ({"user": stack.ch_user, "password": stack.ch_password} if route.listener == "endpoint"
                 else {"token_auth": SUPER_TOKEN, "module": "API", "method": "API.getBulkRequest"})
        probes += [partial(body_probe, route, body, params, content_type) for body in GARBAGE_BODIES
                   for params in ({}, creds) for content_type in ("application/json", "application/x-www-form-urlencoded")]
    try:
        with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
            for found in pool.map(lambda probe: probe(), probes):
                failures += found
    finally:
        for conn in conns:
            conn.http.close()

    assert not failures, "\n".join(failures[:60]) + f"\n({len(failures)} failures)"

    after = server_errors(stack)
    assert after == before, {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    # Both listeners still serve.
    hit = httpx.get(f"{stack.collector_url}/matomo.php", timeout=10,
                    params={"idsite": DEMO_SITE_ID, "rec": 1, "url": "https://ent.demo.example/listeners", "send_image": 0})
    assert hit.status_code == 204, hit.text
    client = stack.reader()
    try:
        assert client.query("SELECT 1").result_rows == [(1,)]
    finally:
        client.close()



def test_an_endpoint_5xx_is_counted_by_route(stack: Stack) -> None:
    """A write sent to the read-only endpoint is ClickHouse's READONLY error, a 500 as ClickHouse
    answers it: counted under its route in /metrics (the loader writes its status every second)."""
    every = server_errors(stack)
    assert {"endpoint /", "endpoint /ping", "endpoint *"} <= set(every), every  # present from the start
    r = httpx.post(f"http://127.0.0.1:{stack.ch_http_port}/", content=b"INSERT INTO dnma.hits (url) VALUES ('x')",
                   auth=(stack.ch_user, stack.ch_password), timeout=10)
    assert r.status_code == 500, (r.status_code, r.text)
    deadline = time.monotonic() + 15
    while server_errors(stack)["endpoint /"] < every["endpoint /"] + 1:
        assert time.monotonic() < deadline, server_errors(stack)
        time.sleep(0.3)
    after = server_errors(stack)
    assert after["endpoint /"] == every["endpoint /"] + 1
    assert {k: v for k, v in after.items() if k != "endpoint /"} == {k: v for k, v in every.items() if k != "endpoint /"}
