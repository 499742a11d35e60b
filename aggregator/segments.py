"""Matomo's `segment` parameter (core/Segment/SegmentExpression.php): its grammar parsed into
conditions and compiled to a parameterised SQL condition on `visits` for the visit-level segments
DNMA stores; any other segment is refused with Matomo's error, never ignored (ignoring it answers
the unsegmented total as if it were the segment's)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from dnma.params import as_int
from dnma.vocab import DEFAULT_DIMENSION_MAPPING, PROFILS

# Longest operators first, as Matomo's own pattern tries them.
OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "=@", "!@", "=^", "=$")
_OPERAND = re.compile(r"^(.+?)(==|!=|>=|>|<=|<|=@|!@|=\^|=\$)(.*)$", re.S)
_AND = re.compile(r";(?!$)(?<!\\;)")
_OR = re.compile(r",(?!$)(?<!\\,)")
MAX_SEGMENT = 4000  # a longer definition is not a segment
_SHOWN = 80


class SegmentError(ValueError):
    """A segment Matomo would refuse; the message goes to the API caller."""


@dataclass(frozen=True)
class Condition:
    name: str
    operator: str
    value: str  # decoded; "" with == / != means "is empty" / "is not empty", as in Matomo


def _shown(text: str) -> str:
    return text[:_SHOWN] + ("…" if len(text) > _SHOWN else "")


def parse(definition: str) -> tuple[tuple[Condition, ...], ...]:
    """The segment as AND of ORs of conditions (`;` binds looser than `,`; `\\;` and `\\,` are
    literal). Raises SegmentError for a definition Matomo cannot read."""
    text = definition.strip()
    if len(text) > MAX_SEGMENT:
        raise SegmentError(f"The segment is longer than {MAX_SEGMENT} characters.")
    ands = [part for part in _AND.split(text) if part]
    if not ands:
        raise SegmentError("Invalid segment, please specify a valid segment.")
    return tuple(tuple(_condition(o.replace("\\;", ";").replace("\\,", ",")) for o in _OR.split(part))
                 for part in ands)


def _condition(operand: str) -> Condition:
    # The operator is found before the value is decoded, as Matomo's SegmentExpression does: a value
    # whose encoding holds an operator's characters ('>' then '%3D') stays the value. A condition
    # encoded whole (`deviceType%3D%3Dsmartphone`, a client that encoded the parameter twice) holds no
    # operator until decoded: it is read decoded, its value decoded once more.
    decoded = unquote(operand)
    match = _OPERAND.match(operand) or _OPERAND.match(decoded)
    if match is None:
        raise SegmentError(f"The segment condition '{_shown(decoded)}' is not valid.")
    name, operator, value = unquote(match[1]), match[2], unquote(match[3])
    if value == "" and operator not in ("==", "!="):
        raise SegmentError(f"The segment '{_shown(decoded)}' has no value specified. You can leave this value "
                           "empty only when you use the operators: != (is not) or == (is)")
    return Condition(name, operator, value)


# --- compiled to SQL on `visits`: names, columns and values from these tables only, values as parameters


def _classes(mapping: Mapping[str, str]) -> Callable[[str], str]:
    """Matomo's value (or DNMA's class itself) to the class DNMA stores; an unknown one is refused:
    DNMA keeps classes, not every device-detector name (collector/useragent.py)."""
    def to_class(value: str) -> str:
        key = value.strip().lower()
        if key in mapping:
            return mapping[key]
        if key in mapping.values():
            return key
        raise SegmentError(f"The value '{_shown(value)}' is not one DNMA distinguishes; try one of: "
                           + ", ".join(sorted(set(mapping))))
    return to_class


_DEVICE = _classes({"desktop": "ordinateur", "smartphone": "smartphone", "tablet": "tablette",
                    "other": "autreappareil"})
_OS_CODES = _classes({"win": "windows", "and": "android", "ios": "ios", "mac": "macos", "lin": "linux",
                      "cos": "chromeos", "unk": "autreos"})
_OS_NAMES = _classes({"windows": "windows", "android": "android", "ios": "ios", "mac": "macos",
                      "gnu/linux": "linux", "chrome os": "chromeos", "unknown": "autreos"})
_BROWSER_NAMES = _classes({"chrome": "chrome", "chrome mobile": "chromemobile", "chrome mobile ios": "chromemobile",
                           "chrome webview": "chromemobile", "safari": "safari", "mobile safari": "safari",
                           "microsoft edge": "edge", "firefox": "firefox", "firefox mobile": "firefox",
                           "opera": "opera", "samsung browser": "samsungbrowser", "miui browser": "miuibrowser",
                           "huawei browser": "huaweibrowser", "unknown": "autrenavigateur"})


@dataclass(frozen=True)
class _Dimension:
    column: str  # a `visits` column
    kind: str  # "class" (==, != on a mapped value), "text" (every text operator), "number"
    to_value: Callable[[str], Any] | None = None


# Visit-level segments: Matomo's names, and DNMA's properties by their own name.
DIMENSIONS: dict[str, _Dimension] = {
    "deviceType": _Dimension("device", "class", _DEVICE),
    "operatingSystemCode": _Dimension("os", "class", _OS_CODES),
    "operatingSystemName": _Dimension("os", "class", _OS_NAMES),
    "browserName": _Dimension("browser", "class", _BROWSER_NAMES),
    "actions": _Dimension("actions", "number"),
    "visitDuration": _Dimension("duration", "number"),
    "uai": _Dimension("uai", "text"),
    "profil": _Dimension("profil", "text"),
    "projet": _Dimension("projet", "text"),
    # The visit's pseudonymous user id (hex of the uid's hash, as UserId.getUsers and
    # Live.getLastVisitsDetails show it), never the raw uid. A per-person segment: the reporting
    # routes allow it to the super user on sites that turn per-person reports on.
    "userId": _Dimension("user_hash", "pseudonym"),
}
PER_PERSON_SEGMENTS = frozenset({"userId"})
# DNMA properties kept on the visit: `dimensionN` names them through the site's slots.
_VISIT_PROPERTIES = ("uai", "profil", "projet")

_TEXT_SQL = {
    "==": "lowerUTF8({c}) = lowerUTF8({p})", "!=": "lowerUTF8({c}) != lowerUTF8({p})",
    "=@": "positionCaseInsensitiveUTF8({c}, {p}) > 0", "!@": "positionCaseInsensitiveUTF8({c}, {p}) = 0",
    "=^": "startsWith(lowerUTF8({c}), lowerUTF8({p}))", "=$": "endsWith(lowerUTF8({c}), lowerUTF8({p}))",
}
_NUMBER_SQL = {op: "{c} " + ("=" if op == "==" else op) + " {p}" for op in ("==", "!=", ">=", "<=", ">", "<")}


@dataclass(frozen=True)
class Segment:
    """A compiled segment: `sql` is a condition on `visits` columns, its values in `parameters`."""

    definition: str
    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)


def _dimension(name: str, slots: Mapping[int, str] | None) -> _Dimension:
    found = DIMENSIONS.get(name)
    slot = as_int(name[9:]) if found is None and name.startswith("dimension") else None
    if slot is not None:
        prop = (slots or DEFAULT_DIMENSION_MAPPING).get(slot)
        if prop in _VISIT_PROPERTIES:
            found = DIMENSIONS[prop]
    if found is None:
        raise SegmentError(f"Segment '{_shown(name)}' is not a supported segment.")
    return found


def compile_segment(definition: str, slots: Mapping[int, str] | None = None) -> Segment | None:
    """`definition` as SQL on `visits`, or None when empty. Raises SegmentError for a segment
    Matomo would refuse, or one DNMA does not store."""
    if not definition.strip():
        return None
    parameters: dict[str, Any] = {}
    ands = []
    for ors in parse(definition):
        terms = []
        for cond in ors:
            dim = _dimension(cond.name, slots)
            key = f"seg{len(parameters)}"
            column = f"`{dim.column}`"
            if dim.kind == "pseudonym":
                if cond.operator not in ("==", "!="):
                    raise SegmentError(f"The segment '{_shown(cond.name)}' supports only == and != in DNMA")
                sql = f"(user_hash != 0 AND lower(hex({column})) = lower({{{key}:String}}))"
                terms.append(sql if cond.operator == "==" else f"NOT {sql}")
                parameters[key] = cond.value
                continue
            if dim.kind == "number":
                template = _NUMBER_SQL.get(cond.operator)
                try:
                    value: Any = float(cond.value)
                except ValueError:
                    value = None
                if template is None or value is None or value != value or abs(value) == float("inf"):
                    raise SegmentError(f"The segment '{_shown(cond.name + cond.operator + cond.value)}' compares "
                                       "a number: use ==, !=, <, <=, >, >= and a number")
                terms.append(template.format(c=column, p=f"{{{key}:Float64}}"))
            else:
                if dim.kind == "class" and cond.operator not in ("==", "!="):
                    raise SegmentError(f"The segment '{_shown(cond.name)}' supports only == and != in DNMA")
                template = _TEXT_SQL.get(cond.operator)
                if template is None:
                    raise SegmentError(f"The operator '{cond.operator}' does not apply to text "
                                       f"(segment '{_shown(cond.name)}')")
                value = dim.to_value(cond.value) if dim.to_value and cond.value else cond.value
                terms.append(template.format(c=column, p=f"{{{key}:String}}"))
            parameters[key] = value
        ands.append(terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")")
    return Segment(definition, " AND ".join(ands), parameters)


# --- API.getSegmentsMetadata: what a client may ask for, in Matomo's fields

_METADATA: dict[str, tuple[str, str, str]] = {  # segment: (type, name, acceptedValues)
    "actions": ("metric", "Actions In Visit", ""),
    "visitDuration": ("metric", "Visit Duration (in seconds)", ""),
    "deviceType": ("dimension", "Device type", "desktop, smartphone, tablet, other"),
    "operatingSystemCode": ("dimension", "Operating system code", "WIN, AND, IOS, MAC, LIN, COS, UNK"),
    "operatingSystemName": ("dimension", "Operating system", "Windows, Android, iOS, Mac, GNU/Linux, Chrome OS, Unknown"),
    "browserName": ("dimension", "Browser", "Chrome, Chrome Mobile, Safari, Microsoft Edge, Firefox, Opera, "
                                           "Samsung Browser, MIUI Browser, Huawei Browser, Unknown"),
    "uai": ("dimension", "UAI (établissement)", "0350002M, …"),
    "profil": ("dimension", "Profil", ", ".join(PROFILS)),
    "projet": ("dimension", "Projet ENT", ""),
}
# Not in _METADATA, so not listed: userId (per-person, off unless a site turns it on).


def metadata(slots: Mapping[int, str] | None = None) -> list[dict[str, str]]:
    """The segments `compile_segment` accepts, as Matomo's getSegmentsMetadata rows (its SQL
    fields left out): the names of DIMENSIONS and the `dimensionN` of the site's slots naming a
    visit property."""
    out = []
    for name, (kind, label, accepted) in _METADATA.items():
        if name not in DIMENSIONS:
            continue
        row = {"type": kind, "category": "Visitors", "name": label, "segment": name}
        if accepted:
            row["acceptedValues"] = accepted
        out.append(row)
    for slot, prop in sorted((slots or DEFAULT_DIMENSION_MAPPING).items()):
        if prop in _VISIT_PROPERTIES:
            out.append({"type": "dimension", "category": "Visitors", "name": f"{prop} (dimension{slot})",
                        "segment": f"dimension{slot}"})
    return out
