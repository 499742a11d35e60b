"""Matomo's `segment` parameter (core/Segment/SegmentExpression.php): its grammar parsed into
conditions, and refused with Matomo's errors while no segment is served, never ignored (ignoring it
answers the unsegmented total as if it were the segment's)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

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
    decoded = unquote(operand)
    match = _OPERAND.match(decoded)
    if match is None:
        raise SegmentError(f"The segment condition '{_shown(decoded)}' is not valid.")
    name, operator, value = match[1], match[2], unquote(match[3])
    if value == "" and operator not in ("==", "!="):
        raise SegmentError(f"The segment '{_shown(decoded)}' has no value specified. You can leave this value "
                           "empty only when you use the operators: != (is not) or == (is)")
    return Condition(name, operator, value)


def refuse(definition: str) -> None:
    """Matomo's error for the first segment of `definition` DNMA cannot compute (today, every one)."""
    if not definition.strip():
        return
    first = parse(definition)[0][0]
    raise SegmentError(f"Segment '{_shown(first.name)}' is not a supported segment.")
