"""What every check shares: the run context (client, settings, clock, window, sites, calendar),
the finding a check reports, and the small query helpers the checks' SQL goes through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from aggregator.checks.calendar import SchoolCalendar, Territory
from dnma.settings import Settings
from dnma.sites import Site, SiteRegistry

SEVERITIES = ("info", "warning", "critical")
Scope = tuple[str, str]  # (scope_kind, scope_value)


@dataclass(frozen=True)
class Finding:
    """One scope where a check's condition holds now."""

    scope_kind: str
    scope_value: str
    observed: float
    expected: float
    message: str
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return (self.scope_kind, self.scope_value)


@dataclass
class CheckResult:
    """Findings over one window. Scopes in `skipped` could not be judged (holiday, no history):
    their open alerts stay as they are instead of resolving."""

    window: str
    window_start: datetime
    window_end: datetime
    findings: list[Finding] = field(default_factory=list)
    skipped: set[Scope] = field(default_factory=set)


@dataclass(frozen=True)
class Check:
    name: str
    description: str  # French, shown by `dnma checks list` and the dashboard
    run: Callable[[CheckContext], CheckResult]


def share_severity(share: float, threshold: float) -> str:
    """Far above the threshold is critical: the indicators of that scope are not usable."""
    return "critical" if threshold > 0 and share >= 5 * threshold else "warning"


def pct(x: float) -> str:
    return f"{100 * x:.1f} %".replace(".", ",")


@dataclass
class CheckContext:
    client: Any
    settings: Settings
    now: datetime  # aware, Europe/Paris
    explicit_window: tuple[datetime, datetime] | None = None

    @property
    def db(self) -> str:
        return self.settings.clickhouse_database

    def table(self, name: str) -> str:
        return f"{self.db}.{name}"

    # --- windows
    @property
    def window_end(self) -> datetime:
        """Scheduled runs align on the hour, so every run within an hour judges the same window."""
        if self.explicit_window:
            return self.explicit_window[1]
        return self.now.replace(minute=0, second=0, microsecond=0)

    def window(self, hours: float, label: str) -> tuple[str, datetime, datetime]:
        if self.explicit_window:
            start, end = self.explicit_window
            return f"{start:%Y-%m-%dT%H:%M}/{end:%Y-%m-%dT%H:%M}", start, end
        end = self.window_end
        return label, end - timedelta(hours=hours), end

    def share_window(self) -> tuple[str, datetime, datetime]:
        h = self.settings.quality_window_hours
        return self.window(h, f"{h}h")

    # --- sites, referential, calendar
    @cached_property
    def sites(self) -> SiteRegistry:
        return SiteRegistry.load(self.settings.resolved_sites_file)

    def site(self, site_id: int) -> Site | None:
        return self.sites.get(site_id)

    @cached_property
    def calendar(self) -> SchoolCalendar:
        return SchoolCalendar(self.settings)

    def site_territory(self, site_id: int) -> Territory:
        site = self.site(site_id)
        return self.calendar.territory_of_perimeter(site.perimeter if site else None)

    @cached_property
    def referential_size(self) -> int:
        """0 when no referential is loaded: the checks that need it skip instead of firing."""
        if not self.has_table("etablissements"):  # migration not applied yet: same as empty
            return 0
        return int(self.scalar(f"SELECT count() FROM {self.table('etablissements')}"))

    @cached_property
    def referential(self) -> dict[str, tuple[str, str, str, str]]:
        """uai -> (degre, departement_code, academie, region_code), schools only (1D/2D)."""
        if self.referential_size == 0:
            return {}
        sql = (
            "SELECT uai, any(degre), any(departement_code), any(academie), any(region_code) "
            f"FROM {self.table('etablissements')} WHERE degre != '' GROUP BY uai"
        )
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in self.rows(sql)}

    # --- queries (values always travel as parameters)
    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql, parameters=params).result_rows)

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.rows(sql, **params)
        return rows[0][0] if rows else None

    def has_table(self, name: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                db=self.db,
                t=name,
            )
        )


def ts(dt: datetime) -> int:
    """Unix seconds: datetimes cross the client boundary as integers, never as naive text."""
    return int(dt.timestamp())


def top(counts: Iterable[tuple[str, int]], n: int = 10) -> dict[str, int]:
    return dict(sorted(((str(k), int(v)) for k, v in counts), key=lambda kv: (-kv[1], kv[0]))[:n])
