"""Integers read from request parameters, the one way every room reads them."""

from __future__ import annotations

_INT_DIGITS = 18  # a site id, a slot, a limit: far below; int() itself refuses past 4300 digits


def as_int(raw: str, *, signed: bool = False) -> int | None:
    """`raw` as an integer when it is one in ASCII digits (str.isdigit also accepts '²' or '٣',
    which int() refuses or reads), else None."""
    digits = raw[1:] if signed and raw.startswith("-") else raw
    if not digits or len(digits) > _INT_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return int(raw)
