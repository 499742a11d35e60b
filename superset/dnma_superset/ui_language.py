"""What a dashboard page must not show a French user: Superset's own English UI strings (the msgids of
the French catalogue shipped in Superset's package, superset/.venv) and error states.

Used by the browser tests (tests/superset/test_ui_language.py); reads files only, never imports
Superset (it lives in another venv).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dnma_superset.server import VENV

# Rendered errors: the boxes Superset draws around a failed chart or request.
ERROR_SELECTORS = (".alert-danger", ".ant-alert-error", "[data-test=\"error-tooltip\"]",
                   "[data-test=\"error-message\"]")
# Error titles the frontend prints outside the catalogue ("Data error" is an error type's name) or
# whose French is a word DNMA uses too (a table column named "Erreur"): looked for as phrases.
ERROR_PHRASES = ("Data error", "Unexpected error", "Network error", "Erreur inattendue", "Erreur de réseau",
                 "Un erreur s'est produite", "Une erreur s'est produite", "requires the datasource",
                 "Error loading", "Traceback")
# A msgid short enough to be a French word or a name as well ("Services", "Message", "Source") is
# no evidence of an untranslated UI: only msgids of two words or more, or of 8 characters or more.
MIN_WORDS, MIN_CHARS = 2, 8


def catalogue_path() -> Path:
    found = sorted(VENV.glob("lib/python3*/site-packages/superset/translations/fr/LC_MESSAGES/messages.po"))
    if not found:
        raise FileNotFoundError(f"no French catalogue in Superset's venv ({VENV}): `make superset-install`")
    return found[-1]


def read_po(path: Path) -> dict[str, str]:
    """msgid -> msgstr (the singular form's) of a gettext catalogue; fuzzy entries count as
    untranslated (gettext does not use them)."""
    entries: dict[str, str] = {}
    msgid: list[str] | None = None
    msgstr: list[str] | None = None
    current: list[str] | None = None
    fuzzy = False

    def flush() -> None:
        if msgid is not None:
            key = "".join(msgid)
            if key:
                entries[key] = "" if fuzzy else "".join(msgstr or [])

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                flush()
                msgid, msgstr, current, fuzzy = None, None, None, True
            continue
        if line.startswith("msgid "):
            if msgid is not None:
                flush()
                fuzzy = False
            msgid, msgstr = [ast.literal_eval(line[6:])], None
            current = msgid
        elif line.startswith("msgid_plural "):
            current = None
        elif line.startswith(("msgstr ", "msgstr[0] ")):
            msgstr = [ast.literal_eval(line.split(" ", 1)[1])]
            current = msgstr
        elif line.startswith("msgstr["):
            current = None
        elif line.startswith('"') and current is not None:
            current.append(ast.literal_eval(line))
    flush()
    return entries


@dataclass(frozen=True)
class EnglishString:
    msgid: str
    pattern: re.Pattern[str]
    probe: str  # its longest literal part: a plain `in` test before the regex


_PLACEHOLDER = re.compile(r"%(?:\([a-zA-Z_]+\))?[sd]|\{[a-zA-Z_]*\}")


@cache
def english_strings() -> tuple[EnglishString, ...]:
    """The catalogue's English strings a French page must not show: every msgid of MIN_WORDS words or
    MIN_CHARS characters, except those whose French is the same text (then it is French too).
    Placeholders (%s, %(name)s, {name}) match any word; a match is whole words only."""
    out = []
    for msgid, msgstr in read_po(catalogue_path()).items():
        text = " ".join(msgid.split())
        if msgstr and " ".join(msgstr.split()) == text:
            continue
        literal = " ".join(_PLACEHOLDER.sub(" ", text).split())
        if len(literal.split()) < MIN_WORDS and len(literal) < MIN_CHARS:
            continue
        parts = [re.escape(p) for p in _PLACEHOLDER.split(text)]
        body = r"\S+".join(parts).replace(r"\ ", r"\s+")
        out.append(EnglishString(msgid, re.compile(r"(?<!\w)" + body + r"(?!\w)"),
                                 max(_PLACEHOLDER.split(text), key=len).strip()))
    return tuple(out)


def english_in(text: str) -> list[str]:
    """The catalogue's English strings found in a page's text."""
    return sorted({e.msgid for e in english_strings() if e.probe in text and e.pattern.search(text)})


def error_phrases_in(text: str) -> list[str]:
    return [p for p in ERROR_PHRASES if p in text]
