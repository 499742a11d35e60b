"""The tagging denominator of dnma.indicators materialised: `perimetres_ent` holds, for each site
with a declared perimeter (sites registry), the establishments of the referential inside it, by the
perimeter check's own rule (perimeter.outside). SQL readers (Superset's coverage dataset, the
coverage check) then see an ENT's declared perimeter, not the UAIs its traffic happens to carry.

Rewritten whole (stage table, REPLACE PARTITION) when the registry's perimeters or the referential
change; sync() is cheap otherwise, so the aggregation pass and the coverage check both call it."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from aggregator.checks.perimeter import declared, outside
from aggregator.ddl import Renderer
from dnma import clock
from dnma.indicators import PERIMETERS_TABLE
from dnma.settings import Settings
from dnma.sites import SiteRegistry

log = logging.getLogger("dnma.checks")

STAGE = PERIMETERS_TABLE + "_stage"
COLUMNS = ["site_id", "projet", "uai", "degre", "departement", "academie", "region", "loaded_at"]
# What the table was last written from, per database of this process: registry's perimeters, the
# referential's size and load time, the table's own size (a fresh or restored table is rewritten).
_written: dict[str, str] = {}


def _key(client: Any, db: str, registry: SiteRegistry) -> str:
    ref = client.query(f"SELECT count(), toUInt32(max(loaded_at)), (SELECT count() FROM {db}.{PERIMETERS_TABLE}) "
                       f"FROM {db}.etablissements").result_rows[0]
    perimeters = [(s.id, s.projet, s.perimeter) for s in registry.all() if declared(s.perimeter)]
    return hashlib.sha256(repr((tuple(ref), perimeters)).encode()).hexdigest()


def rows(client: Any, db: str, registry: SiteRegistry) -> list[list[Any]]:
    """(site_id, projet, uai, degre, departement, academie, region): each declared site's establishments."""
    sites = [s for s in registry.all() if declared(s.perimeter)]
    if not sites:
        return []
    ref = client.query(
        "SELECT uai, any(degre), any(departement_code), any(academie), any(region_code), any(departement), "
        f"any(region) FROM {db}.etablissements FINAL WHERE degre != '' GROUP BY uai ORDER BY uai").result_rows
    out: list[list[Any]] = []
    for site in sites:
        for uai, degre, dep_code, academie, region_code, departement, region in ref:
            if not outside(site.perimeter, uai, (degre, dep_code, academie, region_code)):
                out.append([site.id, site.projet, uai, degre, departement, academie, region])
    return out


def sync(client: Any, settings: Settings, registry: SiteRegistry | None = None, force: bool = False) -> bool:
    """Rewrite `perimetres_ent` if the registry's perimeters or the referential changed since this
    process last wrote it; True when written. A database not migrated that far is left alone."""
    r = Renderer(database=settings.clickhouse_database, cluster=settings.clickhouse_cluster)
    db = settings.clickhouse_database
    exists = client.query("SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                          parameters={"db": db, "t": PERIMETERS_TABLE}).result_rows[0][0]
    if not exists:
        return False
    registry = registry if registry is not None else SiteRegistry.load(settings.resolved_sites_file)
    key = _key(client, db, registry)
    if not force and _written.get(settings.resolved_dsn) == key:
        return False
    now = clock.now().replace(microsecond=0, tzinfo=None)
    data = [[*row, now] for row in rows(client, db, registry)]
    on_cluster = r.on_cluster
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(STAGE)}{on_cluster}")
    if data:
        client.insert(r.name(STAGE), data, column_names=COLUMNS,
                      settings={"insert_distributed_sync": 1} if r.cluster else None)
        client.command(f"ALTER TABLE {r.local_name(PERIMETERS_TABLE)}{on_cluster} REPLACE PARTITION tuple() "
                       f"FROM {r.local_name(STAGE)}")
    else:
        client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(PERIMETERS_TABLE)}{on_cluster}")
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(STAGE)}{on_cluster}")
    _written[settings.resolved_dsn] = _key(client, db, registry)  # with the table's new size
    log.info("ENT perimeters written", extra={"rows": len(data)})
    return True
