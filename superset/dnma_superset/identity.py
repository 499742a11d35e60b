"""Stable identities of the bundle's assets: UUIDs derived from kind and name (uuid5 under one
namespace), so regenerating gives the same files, and the name of the one Superset database they read.
"""

from __future__ import annotations

import uuid

NS = uuid.UUID("6f1c8e4e-3b0e-4b5e-9a57-0d2a3c1e5d00")  # DNMA Superset assets
DATABASE_NAME = "DNMA ClickHouse"


def uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NS, f"{kind}:{name}"))


DATABASE_UUID = uid("database", DATABASE_NAME)
