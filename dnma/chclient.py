"""The ClickHouse client factory: one storage API (clickhouse-connect) whatever the engine."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from dnma.settings import Settings


def get_client(settings: Settings, database: str | None = None, **kwargs: Any) -> Client:
    """A client on the configured DSN: embedded chDB or a ClickHouse server.

    In embedded mode only one process may open the chDB directory: call this from the loader
    (or from a command that runs while the loader is stopped), never from the collector.
    """
    dsn = settings.resolved_dsn
    if dsn.startswith("chdb:"):
        (settings.data_dir / "clickhouse").mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(dsn=dsn, **kwargs)
    if database:
        client.database = database
    return client
