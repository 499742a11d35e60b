"""The shapes of a Matomo API answer, as Matomo's renderers tell them apart: a report's rows
(`Table`, Matomo's DataTable), one row of named values (`Simple`, DataTable\\Simple: VisitsSummary.get),
one value (`Scalar`), and answers keyed by site or by period (`Map`, DataTable\\Map). The
aggregator's queries build them, the collector renders them (collector/matomo_render.py); plain
lists and dicts stay Matomo's "PHP arrays" (the sites methods).

They subclass list and dict so that code reading an answer as JSON (tests, filters) still can.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class Table(list[dict[str, Any]]):
    """A report's rows. `metadata` names the row keys that are Matomo row metadata rather than
    columns (e.g. `url` of Actions.getPageUrls): CSV heads them `metadata_<name>`."""

    def __init__(self, rows: Iterable[dict[str, Any]] = (), metadata: Iterable[str] = ()) -> None:
        super().__init__(rows)
        self.metadata = frozenset(metadata)


class Simple(dict[str, Any]):
    """One row of named values; empty when the period has no data (JSON `[]`, XML `<result />`)."""


class Scalar:
    """One value (API.getMatomoVersion): JSON `{"value": v}`, XML `<result>v</result>`."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scalar) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Scalar({self.value!r})"


class Map(dict[str, Any]):
    """Answers keyed by `key` ("idSite" or "date"), in the order asked: Matomo's multi-site and
    multi-period results (`{"1": …, "2": …}`, `<results><result idSite="1">…`)."""

    def __init__(self, key: str, tables: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__(tables)
        self.key = key


def flat(value: Any) -> Any:
    """The answer as Matomo's renderers see it (Renderer::convertDataTableToArray): a Simple of one
    column is that column's value (so `showColumns=nb_visits` gives one number), an empty Simple
    `[]`, a Map a dict of its flattened tables."""
    if isinstance(value, Scalar):
        return value.value
    if isinstance(value, Simple):
        if len(value) == 1:
            return next(iter(value.values()))
        return dict(value) if value else []
    if isinstance(value, dict):
        return {str(k): flat(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [flat(v) for v in value]
    return value


def to_json(value: Any) -> Any:
    """The answer as Matomo's JSON renderer gives it, in plain lists and dicts (what a
    getBulkRequest item holds: Matomo decodes each sub-request's JSON). One value is `{"value": v}`."""
    out = flat(value)
    return out if isinstance(out, dict | list) else {"value": out}
