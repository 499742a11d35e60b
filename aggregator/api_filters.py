"""Matomo's generic API filters (core/API/DataTableGenericFilter.php and DataTablePostProcessor) over a
report's rows: read from the request once, checked, and applied in Matomo's order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnma.params import as_int

DEFAULT_LIMIT = 100  # Matomo's API_datatable_default_limit over HTTP
MAX_PATTERN = 1000  # a longer filter_pattern is not a search
_SHOWN = 40  # how much of a bad value an error message repeats

# Generic parameters Matomo honours and DNMA does not yet: refused rather than silently ignored,
# since ignoring them answers other rows than the caller asked for.
UNSUPPORTED = ("filter_truncate", "filter_excludelowpop", "filter_column_recursive", "filter_pattern_recursive")


class FilterError(ValueError):
    """A generic filter parameter that cannot be read; the message goes to the API caller."""


def _shown(value: str) -> str:
    return repr(value[:_SHOWN] + ("…" if len(value) > _SHOWN else ""))


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = as_int(raw.strip(), signed=True)
    if value is None:
        raise FilterError(f"Parameter '{name}' must be an integer, not {_shown(raw)}")
    return value


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n for n in (part.strip() for part in raw.split(",")) if n)


_DIGITS = re.compile(r"(\d+)")


def natural_key(value: Any) -> tuple[Any, ...]:
    """PHP's natural, case-insensitive order for text: 'page9' before 'page10'."""
    parts = _DIGITS.split(str(value).lower())
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts))


@dataclass(frozen=True)
class GenericFilters:
    """What the request asks of a report's rows. `limit` None: every row (Matomo's -1 or any
    negative); `pattern` is matched by ClickHouse (RE2: linear time, case-insensitive as Matomo's)."""

    limit: int | None = DEFAULT_LIMIT
    offset: int = 0
    sort_column: str = ""
    descending: bool = True
    pattern: str = ""
    pattern_column: str = "label"
    show_columns: tuple[str, ...] = ()
    hide_columns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> GenericFilters:
        for name in UNSUPPORTED:
            if params.get(name, "").strip():
                raise FilterError(f"Parameter '{name}' is not supported by DNMA")
        limit = _int(params, "filter_limit", DEFAULT_LIMIT)
        order = params.get("filter_sort_order", "").strip().lower() or "desc"
        if order not in ("asc", "desc"):
            raise FilterError(f"Parameter 'filter_sort_order' must be asc or desc, not {_shown(order)}")
        pattern = params.get("filter_pattern", "")
        if len(pattern) > MAX_PATTERN:
            raise FilterError(f"Parameter 'filter_pattern' is longer than {MAX_PATTERN} characters")
        return cls(
            limit=limit if limit >= 0 else None,
            offset=max(0, _int(params, "filter_offset", 0)),  # Matomo skips rows only for an offset > 0
            sort_column=params.get("filter_sort_column", "").strip(),
            descending=order == "desc",
            pattern=pattern,
            pattern_column=params.get("filter_column", "").strip() or "label",
            show_columns=_names(params.get("showColumns", "")),
            hide_columns=_names(params.get("hideColumns", "")),
        )

    @property
    def regex(self) -> str:
        """filter_pattern for ClickHouse's match(): Matomo matches it case-insensitively."""
        return "(?i)" + self.pattern

    def sql_limit(self) -> int | None:
        """Rows per period the query must return for `rows` to be exact: the query orders by the
        report's default order, so a page of it is enough unless another column sorts."""
        if self.limit is None or self.sort_column:
            return None
        return self.offset + self.limit

    def rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Matomo's order on rows already matched by `pattern` in SQL: sort, offset and limit, then
        the requested columns."""
        out = list(rows)
        if self.sort_column and out:
            out = self._sorted(out)
        end = None if self.limit is None else self.offset + self.limit
        return [self.columns(r) for r in out[self.offset:end]]

    def _sorted(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Matomo's Sorter: an unknown column sorts by nb_visits; numbers numerically, text
        # naturally; ties by nb_visits, or by label (the other way) when nb_visits sorts.
        column = self.sort_column if self.sort_column in rows[0] else "nb_visits"
        if column not in rows[0]:
            return rows
        numeric = all(isinstance(r.get(column), int | float) for r in rows)
        secondary = "label" if column == "nb_visits" else "nb_visits"

        def key(row: dict[str, Any]) -> Any:
            value = row.get(column)
            return value if numeric else natural_key(value)

        if secondary in rows[0] and secondary != column:
            # Stable sorts: the tie-breaker first.
            tie_descending = (not self.descending) if secondary == "label" else self.descending
            if secondary == "label":
                rows = sorted(rows, key=lambda r: natural_key(r.get("label", "")), reverse=tie_descending)
            else:
                rows = sorted(rows, key=lambda r: r.get(secondary) or 0, reverse=tie_descending)
        return sorted(rows, key=key, reverse=self.descending)

    def columns(self, row: dict[str, Any]) -> dict[str, Any]:
        """hideColumns, then showColumns (Matomo's ColumnDelete: `label` always stays shown)."""
        if not self.show_columns and not self.hide_columns:
            return row
        out = {k: v for k, v in row.items() if k not in self.hide_columns}
        if self.show_columns:
            out = {k: v for k, v in out.items() if k == "label" or k in self.show_columns}
        return out
