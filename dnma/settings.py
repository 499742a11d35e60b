"""The one settings object: DNMA_* environment variables over an optional TOML config file.

Every field here is documented in the README's settings table, with its default.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _config_file() -> Path | None:
    """DNMA_CONFIG names the TOML file; by default `<data_dir>/dnma.toml` when it exists."""
    explicit = os.environ.get("DNMA_CONFIG")
    if explicit:
        return Path(explicit)
    data_dir = Path(os.environ.get("DNMA_DATA_DIR", REPO_ROOT / "var"))
    candidate = data_dir / "dnma.toml"
    return candidate if candidate.exists() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DNMA_", extra="ignore")

    # --- where things live
    data_dir: Path = Field(default=REPO_ROOT / "var", description="Root of all runtime state (chDB, spool, logs, pids).")
    clickhouse_dsn: str = Field(
        default="",
        description="chdb:///abs/path (embedded), http://user:pass@host:8123/dnma (server). Empty: chDB under data_dir/clickhouse.",
    )
    clickhouse_database: str = Field(default="dnma", description="ClickHouse database holding every DNMA table.")
    clickhouse_cluster: str = Field(default="", description="Cluster name: migrations render ReplicatedMergeTree + Distributed, ON CLUSTER.")
    hits_ttl_months: int = Field(default=13, description="Raw hits expire after this many months (ClickHouse TTL).")

    # --- sites (ENT platforms)
    sites_file: Path | None = Field(default=None, description="YAML file registering the sites. Empty: data_dir/sites.yaml.")
    super_user_token: str = Field(default="", description="Super-user token_auth (bulk invalid_indices, every site).")
    bulk_requests_require_authentication: bool = Field(default=False, description="Refuse a bulk batch without a valid token.")

    # --- privacy
    uid_secret: str = Field(default="", description="HMAC key for uid hashing and the daily cookieless salt. Required outside tests.")
    honour_dnt_default: bool = Field(default=False, description="Honour DNT: 1 for sites that do not say.")

    # --- collector
    collector_host: str = Field(default="127.0.0.1", description="Collector bind address.")
    collector_port: int = Field(default=8080, description="Collector port.")
    collector_workers: int = Field(default=1, description="Collector worker processes.")
    trust_x_forwarded_for: bool = Field(default=False, description="Take the client IP from X-Forwarded-For (behind a proxy).")
    ua_cache_size: int = Field(default=50_000, description="User-Agent parse cache entries per worker.")

    # --- spool
    spool_dir: Path | None = Field(default=None, description="Spool directory. Empty: data_dir/spool.")
    spool_max_bytes: int = Field(default=2 * 1024**3, description="Spool size cap; above it the collector answers 503.")
    spool_segment_bytes: int = Field(default=64 * 1024**2, description="Segment size before rotation.")
    spool_commit_interval_ms: float = Field(default=2.0, description="Group-commit window: fsync at most this often.")

    # --- loader
    loader_batch_rows: int = Field(default=100_000, description="Maximum rows per ClickHouse insert.")
    loader_poll_interval_ms: int = Field(default=200, description="How often the loader looks for new spool records.")
    loader_retry_max_s: float = Field(default=30.0, description="Cap of the loader's exponential backoff when ClickHouse fails.")

    # --- read-only ClickHouse-HTTP endpoint (embedded mode)
    ch_http_host: str = Field(default="127.0.0.1", description="Bind address of the read-only endpoint.")
    ch_http_port: int = Field(default=8123, description="Port of the read-only endpoint.")
    ch_http_user: str = Field(default="dnma_reader", description="User readers authenticate as.")
    ch_http_password: str = Field(default="", description="Password of that user. Required to start the endpoint.")
    reader_max_concurrency: int = Field(default=2, description="Reader queries running at once (about the number of cores).")
    reader_max_execution_time: int = Field(default=60, description="Seconds before a reader query is cancelled (code 159).")
    reader_max_memory_usage: int = Field(default=4 * 1024**3, description="Memory cap per reader query, bytes.")
    reader_max_threads: int = Field(default=1, description="max_threads of reader queries.")

    # --- logging
    log_format: str = Field(default="json", description="json (one event per line) or text.")
    log_level: str = Field(default="INFO", description="Python log level.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    # --- derived paths
    @property
    def resolved_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.resolved_dsn.startswith("chdb:")

    @property
    def resolved_spool_dir(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def resolved_sites_file(self) -> Path:
        return self.sites_file or self.data_dir / "sites.yaml"


@lru_cache(maxsize=1)
def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
