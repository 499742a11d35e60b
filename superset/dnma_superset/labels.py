"""French labels of the codes a chart shows (dnma.vocab's labels; the checks' in quality_sql): SQL
that turns a code column into its label, "Non renseigné" for an empty value, as a chart's column.
The datasets keep the codes, which the native filters and the Jinja of dataset_sql compare with.
Durations are written in French ("3 min 19 s", "2 h 5 min", "3 j 4 h") by duration_sql, whose
Python twin duration_label says the same for tests and documentation.
"""

from __future__ import annotations

import math
from typing import Any

from dnma.vocab import ACTION_LABELS, DEVICE_LABELS, NOT_GIVEN, PROFIL_LABELS, SERVICE_LABELS

__all__ = ["ACTION_LABELS", "DEVICE_LABELS", "NO_DURATION", "PROFIL_LABELS", "SERVICE_LABELS", "duration_label",
           "duration_sql", "label_sql", "labelled"]

# A duration over no rows (an average or a median of nothing).
NO_DURATION = "Aucune donnée"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def label_sql(column: str, labels: dict[str, str]) -> str:
    """The label of each code; NOT_GIVEN for ''; a code without a label as it is."""
    fallback = f"if({column} = '', {_literal(NOT_GIVEN)}, {column})"
    if not labels:
        return fallback
    codes = ", ".join(_literal(c) for c in labels)
    names = ", ".join(_literal(n) for n in labels.values())
    return f"transform({column}, [{codes}], [{names}], {fallback})"


def labelled(column: str, labels: dict[str, str], title: str) -> dict[str, Any]:
    """A chart column (Superset's ad hoc SQL column) showing `column`'s labels under `title`."""
    return {"expressionType": "SQL", "sqlExpression": label_sql(column, labels), "label": title}


def duration_label(seconds: float | None) -> str:
    """A duration in French, rounded to the second, its two largest units: '0 s', '45 s', '3 min 19 s',
    '2 h 5 min', '3 j 4 h' (a zero second unit left out: '3 min'); a negative duration (clock skew)
    is '0 s'; None or NaN is NO_DURATION."""
    if seconds is None or not math.isfinite(seconds):
        return NO_DURATION
    s = math.floor(max(seconds, 0.0) + 0.5)
    for unit, size, sub, sub_size in (("j", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{s} s"


def duration_sql(seconds: str) -> str:
    """duration_label in ClickHouse SQL over the expression `seconds` (a number of seconds, may be
    NULL or NaN: an aggregate over no rows)."""
    x = f"ifNull(toFloat64({seconds}), nan)"
    s = f"toUInt64(floor(greatest({x}, 0) + 0.5))"

    def two(size: int, unit: str, sub_size: int, sub: str) -> str:
        rest = f"intDiv({s} % {size}, {sub_size})"
        return (f"concat(toString(intDiv({s}, {size})), ' {unit}', "
                f"if({rest} = 0, '', concat(' ', toString({rest}), ' {sub}')))")

    return (f"if(NOT isFinite({x}), {_literal(NO_DURATION)}, multiIf("
            f"{s} >= 86400, {two(86400, 'j', 3600, 'h')}, "
            f"{s} >= 3600, {two(3600, 'h', 60, 'min')}, "
            f"{s} >= 60, {two(60, 'min', 1, 's')}, "
            f"concat(toString({s}), ' s')))")
