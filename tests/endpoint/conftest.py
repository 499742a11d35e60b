"""Fixtures of the read-only endpoint tests: one chDB directory for the whole process (chDB opens
one path per process), a writer connection playing the loader, and endpoints on free ports."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aggregator.endpoint import EndpointHandle, start_endpoint
from dnma.settings import Settings

USER = "dnma_reader"
PASSWORD = "s3cret-pw"
ROWS = 1000


@dataclass
class Loader:
    """The loader side: its own non-readonly connection, guarded by a lock (one query at a time)."""

    path: str
    conn: Any
    lock: threading.Lock

    def query(self, sql: str, fmt: str = "TSVRaw") -> str:
        with self.lock:
            return self.conn.query(sql, fmt).bytes().decode()


# Module scope, closed at teardown: chDB serves one path per process, so a connection left open
# here would keep every later test module of the session from opening its own directory.
@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    import chdb

    path = str(tmp_path_factory.mktemp("endpoint") / "clickhouse")
    Path(path).mkdir(parents=True)
    conn = chdb.connect(path)
    conn.query("CREATE DATABASE IF NOT EXISTS dnma")
    conn.query(
        "CREATE TABLE dnma.visites (uai String, jour Date, visites UInt32, profil LowCardinality(String))"
        " ENGINE = MergeTree ORDER BY (uai, jour)"
    )
    conn.query(
        f"INSERT INTO dnma.visites SELECT concat('0', toString(350000 + number % 37), 'A'),"
        f" toDate('2025-09-01') + number % 30, number % 13, ['ELEVE','ENSEIGNANT','PARENT'][number % 3 + 1]"
        f" FROM numbers({ROWS})"
    )
    conn.query("CREATE TABLE dnma.ticks (n UInt64, at DateTime64(3)) ENGINE = MergeTree ORDER BY n")
    yield Loader(path=path, conn=conn, lock=threading.Lock())
    conn.close()


def endpoint_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ch_http_host": "127.0.0.1",
        "ch_http_port": 0,
        "ch_http_user": USER,
        "ch_http_password": PASSWORD,
        "reader_max_concurrency": 2,
        "reader_max_execution_time": 30,
        "reader_max_threads": 1,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def endpoint(loader: Loader) -> Iterator[EndpointHandle]:
    handle = start_endpoint(endpoint_settings(), loader.path)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def base_url(endpoint: EndpointHandle) -> str:
    return f"http://127.0.0.1:{endpoint.port}/"


def running_endpoint_queries(loader: Loader) -> list[str]:
    """Queries of any endpoint still in system.processes (they all start with the marker)."""
    out = loader.query(
        "SELECT query FROM system.processes WHERE startsWith(query, '/* dnma-endpoint ')"
        " AND query NOT LIKE '%system.processes%'"
    )
    return [line for line in out.splitlines() if line]


def wait_until(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
