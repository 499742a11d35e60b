"""UAI (Unité Administrative Immatriculée) rules: normalisation, format, département, check letter."""

from __future__ import annotations

import re
from enum import StrEnum

CHECK_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
_FORMAT = re.compile(r"^[0-9]{7}[A-Z]$")


class UaiStatus(StrEnum):
    VALID = "valid"
    MISSING = "missing"
    BAD_FORMAT = "bad_format"
    BAD_DEPARTEMENT = "bad_departement"
    BAD_CHECK_LETTER = "bad_check_letter"


def normalise(raw: str | None) -> str:
    """Lower case and surrounding spaces are accepted; stored upper case."""
    return (raw or "").strip().upper()


def check_letter(first_seven: str) -> str:
    return CHECK_LETTERS[int(first_seven) % 23]


def departement_prefix_ok(prefix: str) -> bool:
    """First three digits: 001-095, 971-976, 98x, and 620/720 for Corsica (2A/2B)."""
    n = int(prefix)
    return 1 <= n <= 95 or 971 <= n <= 976 or 980 <= n <= 989 or n in (620, 720)


def status(uai: str) -> UaiStatus:
    """Status of an already normalised UAI."""
    if not uai:
        return UaiStatus.MISSING
    if not _FORMAT.match(uai):
        return UaiStatus.BAD_FORMAT
    if not departement_prefix_ok(uai[:3]):
        return UaiStatus.BAD_DEPARTEMENT
    if check_letter(uai[:7]) != uai[7]:
        return UaiStatus.BAD_CHECK_LETTER
    return UaiStatus.VALID


def problem(uai: str) -> str:
    """What is wrong with a normalised UAI, in an ENT editor's words ('' when valid or missing): the
    conformance report's, in the words of the debug view (collector.debug.uai_problem)."""
    found = status(uai)
    if found is UaiStatus.BAD_FORMAT:
        return f"UAI invalide (« {uai[:20]} » : 7 chiffres puis une lettre attendus)"
    if found is UaiStatus.BAD_DEPARTEMENT:
        return f"UAI invalide (département « {uai[:3]} » inexistant)"
    if found is UaiStatus.BAD_CHECK_LETTER:
        return f"UAI invalide (lettre de contrôle {check_letter(uai[:7])} attendue)"
    return ""


def is_valid(raw: str | None) -> bool:
    return status(normalise(raw)) is UaiStatus.VALID


def departement_code(uai: str) -> str:
    """The département code of a valid UAI, as the annuaire writes it: '035', '2A', '2B', '974'."""
    prefix = uai[:3]
    if prefix == "620":
        return "2A"
    if prefix == "720":
        return "2B"
    return prefix
