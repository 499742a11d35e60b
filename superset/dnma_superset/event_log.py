"""What Superset's action log (the `logs` table of its metadata) may keep: the request fields it
records, without secrets. superset_config.py scrubs each new record (it loads this file by path:
Superset's venv has no DNMA installed); server.py scrubs the rows an older version wrote.

Standard library only. Superset logs every form field and JSON body of an API call: the assets
import's `passwords` (the reader's password, in clear), SSH tunnel secrets, a user's password.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

SCRUBBED = "[scrubbed]"
# A key naming one of these is a secret whatever its value (`passwords`, `ssh_tunnel_private_keys`,
# `access_token`, `masked_encrypted_extra`…).
SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "private_key", "encrypted", "credential",
                    "hash", "api_key", "authorization", "cookie")
# Values that are secrets whatever their key: password hashes (werkzeug, bcrypt, argon2).
_HASH = re.compile(r"(?:pbkdf2:|scrypt:|\$2[aby]\$|\$argon2)")
# A URI's password (`clickhousedb://user:password@host`); Superset's own mask is kept as it is.
_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"']*:)(?!X{10}@)[^@\s/\"']+@", re.IGNORECASE)
# SQL pre-filter of the rows worth parsing: a row matching none of these holds none of the above.
_CANDIDATES = (*SECRET_KEY_PARTS, "pbkdf2:", "scrypt:", "$2", "$argon2", "://")


def secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def scrub(value: Any) -> Any:
    """`value` (a log record: JSON-like) with every secret replaced by SCRUBBED; strings holding
    JSON (form fields do) are scrubbed inside."""
    if isinstance(value, dict):
        return {k: SCRUBBED if isinstance(k, str) and secret_key(k) and v not in (None, "", {}, [])
                else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _scrub_text(value)
    return value


def _scrub_text(text: str) -> str:
    if _HASH.search(text):
        return SCRUBBED
    if text[:1] in ("{", "["):
        try:
            inner = json.loads(text)
        except ValueError:
            pass
        else:
            cleaned = scrub(inner)
            return text if cleaned == inner else json.dumps(cleaned)
    return _URI_PASSWORD.sub(r"\1XXXXXXXXXX@", text)


def scrub_json_text(text: str | None) -> str | None:
    """A `logs.json` cell, scrubbed (unparseable text is scrubbed as a string)."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return _scrub_text(text)
    cleaned = scrub(record)
    return text if cleaned == record else json.dumps(cleaned)


def scrub_database(db_path: Path) -> int:
    """Scrub the `logs` rows of a Superset SQLite metadata file (Superset stopped); returns how many
    changed. The old contents are then wiped from the file too (VACUUM, WAL truncated)."""
    if not db_path.exists():
        return 0
    conn = sqlite3.connect(db_path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'logs'").fetchone():
            return 0
        conn.execute("PRAGMA secure_delete = ON")
        where = " OR ".join(["json LIKE ? ESCAPE '!'"] * len(_CANDIDATES) + ["referrer LIKE '%://%:%@%'"])
        patterns = ["%" + p.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%" for p in _CANDIDATES]
        changed = 0
        for row_id, text, referrer in conn.execute(
                f"SELECT id, json, referrer FROM logs WHERE {where}", patterns).fetchall():  # noqa: S608 - fixed text
            new_text = scrub_json_text(text)
            new_referrer = _scrub_text(referrer) if referrer else referrer
            if (new_text, new_referrer) != (text, referrer):
                conn.execute("UPDATE logs SET json = ?, referrer = ? WHERE id = ?", (new_text, new_referrer, row_id))
                changed += 1
        conn.commit()
        if changed:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return changed
    finally:
        conn.close()
