"""`visits_fingerprints.sites`: with each built day, the fingerprint of each of its sites, so
that the next rebuild of the day is narrowed to the sites that changed (aggregator.sessionizer):
a late import from one ENT rebuilds that ENT's visits, not every site's. Empty for days built
before: their next rebuild is a whole one, as before.
"""

from __future__ import annotations

from aggregator.ddl import Renderer

TABLE = "visits_fingerprints"
SITES = "Array(Tuple(site_id UInt32, hits UInt64, hash UInt64))"


def up(r: Renderer) -> list[str]:
    out = [f"ALTER TABLE {r.local_name(TABLE)}{r.on_cluster} ADD COLUMN IF NOT EXISTS sites {SITES}"]
    if r.cluster:
        out.append(f"ALTER TABLE {r.name(TABLE)}{r.on_cluster} ADD COLUMN IF NOT EXISTS sites {SITES}")
    return out


def down(r: Renderer) -> list[str]:
    out = [f"ALTER TABLE {r.local_name(TABLE)}{r.on_cluster} DROP COLUMN IF EXISTS sites"]
    if r.cluster:
        out.append(f"ALTER TABLE {r.name(TABLE)}{r.on_cluster} DROP COLUMN IF EXISTS sites")
    return out
