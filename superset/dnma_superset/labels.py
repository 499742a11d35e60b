"""French labels of the codes a chart shows (dnma.vocab's labels; the checks' in quality_sql): SQL
that turns a code column into its label, "Non renseigné" for an empty value, as a chart's column.
The datasets keep the codes, which the native filters and the Jinja of dataset_sql compare with.
"""

from __future__ import annotations

from typing import Any

from dnma.vocab import ACTION_LABELS, DEVICE_LABELS, NOT_GIVEN, PROFIL_LABELS, SERVICE_LABELS

__all__ = ["ACTION_LABELS", "DEVICE_LABELS", "PROFIL_LABELS", "SERVICE_LABELS", "label_sql", "labelled"]


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
