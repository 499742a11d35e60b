"""The ClickHouse client factory: one storage API (clickhouse-connect) whatever the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from dnma.settings import Settings

# Under data_dir: the one directory chDB may write a `BACKUP ... TO File(...)` into, or RESTORE from
# (aggregator/backup.py). chDB allows File backups only under `backups.allowed_path`, an engine
# option fixed by the first client of a process: every embedded client passes it.
BACKUP_STAGING_DIR = "backups-staging"


def backup_staging_dir(settings: Settings) -> Path:
    return (settings.data_dir / BACKUP_STAGING_DIR).resolve()


def get_client(settings: Settings, database: str | None = None, **kwargs: Any) -> Client:
    """A client on the configured DSN: embedded chDB or a ClickHouse server.

    In embedded mode only one process may open the chDB directory: call this from the loader
    (or from a command that runs while the loader is stopped), never from the collector.
    """
    dsn = settings.resolved_dsn
    if dsn.startswith("chdb:"):
        (settings.data_dir / "clickhouse").mkdir(parents=True, exist_ok=True)
        staging = backup_staging_dir(settings)
        staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        kwargs.setdefault("chdb_options", {"backups.allowed_path": str(staging)})
    client = clickhouse_connect.get_client(dsn=dsn, **kwargs)
    if database:
        client.database = database
    return client


def get_reader_client(settings: Settings, **kwargs: Any) -> Client:
    """A client for processes that must not own chDB (the collector's reporting API, tools).

    Embedded mode: the loader's read-only ClickHouse-HTTP endpoint; server mode: the DSN. No
    session id, so that concurrent requests of one process never collide on a session lock.
    """
    kwargs.setdefault("autogenerate_session_id", False)
    if not settings.embedded:
        return get_client(settings, database=settings.clickhouse_database, **kwargs)
    # The endpoint may bind every interface; a local reader still connects to loopback.
    host = "127.0.0.1" if settings.ch_http_host in ("", "0.0.0.0", "::") else settings.ch_http_host
    return clickhouse_connect.get_client(
        host=host,
        port=settings.ch_http_port,
        username=settings.ch_http_user,
        password=settings.ch_http_password,
        database=settings.clickhouse_database,
        **kwargs,
    )
