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

from dnma.indicators import ACTIVE_SCHOOL_WEEKS

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
    referentiel_dir: Path = Field(default=REPO_ROOT / "deploy" / "referentiel", description="Reference data (annuaire, pupil counts) `dnma up` loads and the simulator draws its schools from; the repository ships a sample (deploy/referentiel/README.md).")
    referentiel_base_url: str = Field(default="https://data.education.gouv.fr", description="The ministry's open-data portal `dnma referentiel fetch` downloads the annuaire and pupil counts from (Explore v2.1 API).")
    clickhouse_dsn: str = Field(
        default="",
        description="chdb:///abs/path (embedded), http://user:pass@host:8123/dnma (server). Empty: chDB under data_dir/clickhouse.",
    )
    clickhouse_database: str = Field(default="dnma", description="ClickHouse database holding every DNMA table.")
    clickhouse_cluster: str = Field(default="", description="Cluster name: migrations render ReplicatedMergeTree + Distributed, ON CLUSTER.")
    hits_ttl_months: int = Field(default=13, ge=1, le=1200, description="Raw hits expire after this many months (ClickHouse TTL, set by the loader at start and by `dnma migrate`; visits and rollups keep longer).")
    visits_ttl_months: int = Field(default=37, ge=1, le=1200, description="Visits (and their days' fingerprints) expire after this many months, never before the raw hits they are rebuilt from (the longer of the two applies). ClickHouse TTL, set with the hits'.")
    rollups_ttl_months: int = Field(default=0, ge=0, le=1200, description="The hit and visit rollups (hits_daily, hits_hourly, visits_daily, visits_weekly, the territorial, national and service tiers) expire after this many months, never before the visits; 0: kept for ever.")
    quality_alerts_ttl_months: int = Field(default=13, ge=0, le=1200, description="Quality alerts last seen this many months ago are deleted (resolved ones: an open alert is seen at every run); 0: kept for ever.")
    debug_captures_keep_hours: float = Field(default=24.0, ge=0, description="The tagging debug view's captures (data_dir/debug) untouched for this many hours are deleted by the collector; 0: kept.")
    now: str = Field(default="", description="Run as if the clock read this: an offset from the host clock (-3d, +90m, +3600) or an instant with its zone (2026-03-29T01:30:00Z); @<file>: either, read from that file and followed while the stack runs. For tests and rehearsals; empty: the host clock.")

    # --- sites (ENT platforms)
    sites_file: Path | None = Field(default=None, description="YAML file registering the sites. Empty: data_dir/sites.yaml.")
    super_user_token: str = Field(default="", description="Super-user token_auth (bulk invalid_indices, every site).")
    bulk_requests_require_authentication: bool = Field(default=False, description="Refuse a bulk batch without a valid token.")

    # --- quarantine of refused requests (dnma quarantine)
    quarantine_enabled: bool = Field(default=True, description="Keep every refused tracking request and bulk item (no IP, uid hashed, no token) in the quarantine, for `dnma quarantine list` and `replay`.")
    quarantine_keep_days: int = Field(default=30, ge=1, le=3650, description="Quarantined requests received this many days ago are deleted by the loader (counted in quarantine_evictions).")
    quarantine_max_records_per_site: int = Field(default=100_000, ge=1, description="At most this many quarantined requests per registered site; the oldest are deleted first (counted).")
    quarantine_max_records_unknown_sites: int = Field(default=100_000, ge=1, description="At most this many quarantined requests for all unregistered site ids together (their own cap: never evicts a registered site's records); the oldest first (counted).")

    # --- privacy
    uid_secret: str = Field(default="", description="HMAC key for uid hashing and the daily cookieless salt. Required outside tests.")
    honour_dnt_default: bool = Field(default=False, description="Honour DNT: 1 for sites that do not say.")

    # --- collector
    collector_host: str = Field(default="127.0.0.1", description="Collector bind address.")
    collector_port: int = Field(default=8080, description="Collector port.")
    superset_port: int = Field(default=8088, description="Superset's port (`dnma up`), so that two stacks can run side by side.")
    collector_workers: int = Field(default=1, description="Collector worker processes. Bulk throughput grows with workers up to one per core: raise it when a worker's core is saturated, leaving the loader the cores it needs.")
    trust_x_forwarded_for: bool = Field(default=False, description="Take the client IP from X-Forwarded-For (behind a proxy).")
    ua_cache_size: int = Field(default=50_000, description="User-Agent parse cache entries per worker.")
    collector_keep_alive_timeout_s: int = Field(default=5, ge=1, description="An idle keep-alive connection is closed after this many seconds without a new request.")
    collector_header_timeout_s: float = Field(default=10.0, gt=0, description="A request's headers must have arrived this many seconds after the connection opened (first request) or after their first byte (next ones); past it the collector answers 408 and closes.")
    collector_body_timeout_s: float = Field(default=10.0, gt=0, description="A request body must progress: at least 64 KiB every this many seconds from the end of the headers, else the connection is closed.")
    collector_max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request head (request line and headers), bytes; past it the collector answers 431 and closes.")
    collector_max_connections: int = Field(default=4096, ge=1, description="Open connections per worker; past them a new connection is answered 503 and closed. Kept below the process's file limit (whose soft value is raised toward the hard one when it is lower).")

    # --- spool
    spool_dir: Path | None = Field(default=None, description="Spool directory. Empty: data_dir/spool.")
    spool_max_bytes: int = Field(default=2 * 1024**3, description="Spool size cap; above it the collector answers 503.")
    spool_segment_bytes: int = Field(default=64 * 1024**2, description="Segment size before rotation.")
    spool_commit_interval_ms: float = Field(default=2.0, description="Group-commit window: fsync at most this often.")

    # --- loader
    loader_batch_rows: int = Field(default=200_000, description="Maximum rows per ClickHouse insert.")
    loader_poll_interval_ms: int = Field(default=200, description="How often the loader looks for new spool records.")
    loader_insert_interval_ms: int = Field(default=2000, description="Least time between two inserts of less than loader_batch_rows: under steady traffic batches grow (fewer parts to write and merge, less CPU per row, mostly in merges); a lone hit after a quiet spell is inserted at once, and the rest of a burst as soon as the spool gets nothing new for a poll interval. Hits reach the dashboards' rollups within about this time: lower it for fresher dashboards, raise it to spend less CPU on inserts and merges.")
    loader_malloc_arenas: int = Field(default=2, ge=0, description="glibc malloc arenas the loader may use (mallopt M_ARENA_MAX, set at start before chDB starts its threads); 0 keeps glibc's default of 8 per core. chDB allocates with glibc's malloc, and each of its many threads otherwise gets an arena of its own that keeps freed memory: the loader's RSS then creeps up with its working set's high-water mark.")
    loader_retry_max_s: float = Field(default=30.0, description="Cap of the loader's exponential backoff when ClickHouse fails.")
    loader_aggregate_interval_s: float = Field(default=30.0, description="Seconds between the end of a sessionizer pass (visits) and the start of the next, in the loader; 0 disables.")
    incremental_visits: bool = Field(default=True, description="The loader's periodic passes rebuild the visits of the day under way for the visitors that received hits since the previous pass only (the day's other visits are copied), instead of sessionizing the whole day again: the same visits, at a cost that follows the traffic of the last interval rather than the size of the day. The first pass after a start, kicks, `dnma aggregate` and past days rebuild whole days either way.")

    # --- read-only ClickHouse-HTTP endpoint (embedded mode)
    ch_http_host: str = Field(default="127.0.0.1", description="Bind address of the read-only endpoint.")
    ch_http_port: int = Field(default=8123, description="Port of the read-only endpoint.")
    ch_http_user: str = Field(default="dnma_reader", description="User readers authenticate as.")
    ch_http_password: str = Field(default="", description="Password of that user. Required to start the endpoint.")
    reader_max_concurrency: int = Field(default=2, description="Reader queries running at once (about the number of cores).")
    reader_max_execution_time: int = Field(default=60, description="Seconds before a reader query is cancelled (code 159).")
    reader_max_memory_usage: int = Field(default=1024**3, description="Memory cap per reader query, bytes. It also bounds a result chDB builds as one block before streaming it (the result cap cannot see inside a block): with reader_max_concurrency queries at once, readers hold at most about their product.")
    reader_max_threads: int = Field(default=1, description="max_threads of reader queries.")
    reader_max_result_bytes: int = Field(default=256 * 1024**2, ge=1, description="Largest answer a reader query may send, bytes (as formatted): past it the query is cancelled and the answer ends with ClickHouse's error 396 (TOO_MANY_ROWS_OR_BYTES). Answers stream in chunks, so the loader holds about one block of a result at a time, not the whole of it.")
    reader_max_connections: int = Field(default=64, ge=1, description="Open connections the read-only endpoint serves at once (one thread each); past them it answers 503 and closes.")
    reader_header_timeout_s: float = Field(default=10.0, gt=0, description="A request's line and headers must have arrived this many seconds after the connection opened (first request) or after their first byte (next ones); past it the read-only endpoint closes the connection.")
    reader_body_timeout_s: float = Field(default=30.0, gt=0, description="A request body (at most 1 MiB) must have arrived this many seconds after its headers; past it the read-only endpoint closes the connection.")
    reader_keep_alive_timeout_s: float = Field(default=10.0, gt=0, description="An idle keep-alive connection of the read-only endpoint is closed after this many seconds without a new request.")

    # --- logging
    log_format: str = Field(default="json", description="json (one event per line) or text.")
    log_level: str = Field(default="INFO", description="Python log level.")
    log_file: Path | None = Field(default=None, description="Append this process's logs to this file, rotated by size (`dnma up` sets it per process: data_dir/log/<process>.log). Empty: stderr.")
    log_max_bytes: int = Field(default=50 * 1024**2, ge=0, description="A log file past this size is renamed <file>.1 (older ones shifted) and a new one started; 0: never rotated.")
    log_backup_count: int = Field(default=5, ge=0, description="Rotated log files kept per process (<file>.1 ... <file>.N).")

    # --- health and test hooks
    ready_loader_lag_max_s: float = Field(default=300.0, gt=0, description="/readyz answers 503 when the loader's lag (oldest spool record not yet stored) exceeds this many seconds, or its status file is older than this.")
    collector_fault_param: str = Field(default="", description="Tests only: a tracking request carrying a parameter of this name fails as a bug would (an unexpected error, answered 400 and logged with a sanitised sample). Empty (the default): off.")

    # --- quality checks (aggregator/checks; INDICATORS.md "Automated quality checks")
    quality_checks_interval_s: float = Field(default=900.0, description="How often the loader runs the quality checks; 0 disables.")
    quality_checks_disabled: list[str] = Field(default=[], description="Checks never run (names as in `dnma checks list`).")
    quality_window_hours: int = Field(default=24, description="Window of the share checks (UAI, properties, vocabulary, perimeter, lateness, duplicates).")
    quality_min_hits: int = Field(default=100, description="A scope with fewer hits in the window is not judged by the share checks.")
    quality_invalid_uai_max_share: float = Field(default=0.02, description="invalid_uai fires above this share of hits with a malformed UAI.")
    quality_unknown_uai_max_share: float = Field(default=0.05, description="unknown_uai fires above this share of valid-UAI hits absent from the referential.")
    quality_missing_properties_max_share: float = Field(default=0.05, description="missing_properties fires above this share of page views lacking UAI, SERVICE, TYPE or PROFIL.")
    quality_vocabulary_min_hits: int = Field(default=10, description="vocabulary fires when a site sends at least this many hits with unknown SERVICE/PROFIL/TYPE values.")
    quality_perimeter_max_share: float = Field(default=0.01, description="perimeter fires above this share of hits with a UAI outside the site's perimeter.")
    quality_coverage_min_share: float = Field(default=0.5, description="coverage fires when fewer establishments of a site's declared perimeter than this share are active through it (active_school_weeks).")
    active_school_weeks: int = Field(default=ACTIVE_SCHOOL_WEEKS, ge=1, le=40, description="An establishment is active with at least one visit in this many last school weeks, the running one included (dnma/indicators.py): deployment census, tagging coverage and the coverage check alike. Superset reads it as DNMA_ACTIVE_SCHOOL_WEEKS from its environment.")
    quality_lateness_hours: float = Field(default=6.0, description="A hit received more than this many hours after its time is late.")
    quality_clock_skew_s: int = Field(default=300, description="A hit dated more than this many seconds after its reception is in the future.")
    quality_lateness_max_share: float = Field(default=0.05, description="lateness / clock_skew fire above this share of the hits received in the window.")
    quality_duplicate_seconds: int = Field(default=5, description="Identical hits (same visitor, action, URL, properties) within this many seconds are duplicates.")
    quality_duplicates_max_share: float = Field(default=0.02, description="duplicates fires above this share of repeated pv_id / identical hits.")
    quality_silence_weeks: int = Field(default=4, description="Past weeks (same weekday and time) the silence check learns the usual gap from.")
    quality_silence_min_weeks: int = Field(default=3, description="Silence is not judged with fewer usable (non-holiday) past weeks.")
    quality_silence_min_minutes: int = Field(default=30, description="A silence shorter than this never fires.")
    quality_silence_max_hours: int = Field(default=48, description="Longest silence span compared with past weeks (longer silences keep firing).")
    quality_silence_active_share: float = Field(default=0.75, description="Silence fires when at least this share of past weeks had hits over the same span.")
    quality_silence_min_expected_hits: int = Field(default=5, description="Silence fires only when past weeks had at least this many hits (median) over the span.")
    quality_volume_weeks: int = Field(default=6, description="Past same weekdays the volume check builds its band from.")
    quality_volume_min_weeks: int = Field(default=4, description="Volume is not judged with fewer usable (non-holiday) past same weekdays.")
    quality_volume_k: float = Field(default=4.0, description="Band half-width in robust standard deviations (1.4826·MAD).")
    quality_volume_min_rel_band: float = Field(default=0.25, description="Band half-width floor as a share of the median (MAD is often 0 on stable series).")
    quality_volume_min_daily: int = Field(default=50, description="A scope whose median day is below this is not judged.")
    quality_backlog_max_share: float = Field(default=0.5, description="ingestion fires when the spool backlog exceeds this share of spool_max_bytes.")
    quality_loader_lag_max_s: float = Field(default=300.0, description="ingestion fires when the loader lags more than this.")
    quality_refused_max_share: float = Field(default=0.05, description="ingestion fires when a refusal reason exceeds this share of requests between two runs.")
    quality_refused_ignored: list[str] = Field(
        default=["rec_not_1", "bot", "excluded_ip", "excluded_user_agent", "do_not_track", "preview"],
        description="Collector drop reasons that are exclusions, not refusals (never fire).",
    )
    quality_academie_zones: dict[str, str] = Field(default={}, description="Overrides of the académie -> school-holiday zone map ('Rennes' = 'B').")
    quality_extra_holidays: list[str] = Field(default=[], description="Extra days off, 'YYYY-MM-DD/YYYY-MM-DD' or 'ZONE:YYYY-MM-DD/YYYY-MM-DD' (overseas calendars).")
    quality_webhook_url: str = Field(default="", description="POST one JSON per run with the opened/resolved alerts. Empty: no webhook.")
    quality_webhook_retries: int = Field(default=3, description="Webhook attempts after the first, with exponential backoff.")
    quality_webhook_backoff_s: float = Field(default=1.0, description="First webhook retry delay; doubles each time.")
    quality_smtp_host: str = Field(default="", description="SMTP server the editors' alert e-mails go through (the `alerts: {emails: [...]}` of a site or ENT project in the sites file). Empty: no e-mail; their webhooks are still called.")
    quality_smtp_port: int = Field(default=25, ge=1, le=65535, description="Port of quality_smtp_host.")
    quality_smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS before sending.")
    quality_smtp_user: str = Field(default="", description="SMTP login, when the server wants one (with quality_smtp_password).")
    quality_smtp_password: str = Field(default="", description="SMTP password of quality_smtp_user.")
    quality_email_from: str = Field(default="dnma@localhost", description="From address of the alert e-mails.")

    # --- weekly open-data publication (aggregator/publication.py)
    exports_dir: Path | None = Field(default=None, description="Where the loader publishes the weekly open-data exports, one YYYY-Www directory per ISO week. Empty: data_dir/exports.")
    exports_keep_weeks: int = Field(default=104, ge=1, description="Published weeks kept (two years); the loader removes the directories of older weeks.")
    publication_schedule: str = Field(default="monday 06:00", pattern=r"(?i)^(off|((mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\s+([01]?\d|2[0-3]):[0-5]\d))?$", description="When the loader publishes the previous ISO week: a weekday and a Europe/Paris time; it waits for the week's days to be settled. `off` (or empty) disables it.")
    publication_recheck_weeks: int = Field(default=4, ge=0, description="Published weeks (the last ones) the loader re-checks for late data; changed data makes a new revision of the week.")

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


def markdown_table() -> str:
    """The README's settings table, generated from the fields so they never drift apart."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, Path):
            default = str(default.relative_to(REPO_ROOT)) if default.is_relative_to(REPO_ROOT) else str(default)
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        rows.append(f"| `DNMA_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def refresh_readme(readme: Path) -> bool:
    """Rewrite the settings table between the README's markers; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--readme"]:
        refresh_readme(Path(sys.argv[2]))
    else:
        print(markdown_table())
