"""The tagging denominator of dnma.indicators materialised: `perimetres_ent` holds, for each site
with a declared perimeter (sites registry), the establishments of the referential inside it, by the
perimeter check's own rule (perimeter.outside). SQL readers (Superset's coverage dataset, the
coverage check) then see an ENT's declared perimeter, not the UAIs its traffic happens to carry.

Rewritten whole (stage table, REPLACE PARTITION) when the registry's perimeters or the referential
change; sync() is cheap otherwise, so the aggregation pass and the coverage check both call it.

The same sync writes `projets_ent` (m0017): each project code of the registry with its readable name,
which charts show instead of the code (Superset's couverture_ent dataset)."""

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
NAMES_TABLE = "projets_ent"
NAMES_STAGE = NAMES_TABLE + "_stage"
NAMES_COLUMNS = ["projet", "nom", "loaded_at"]
# What the table was last written from, per database of this process: registry's perimeters, the
# referential's size and load time, the table's own size (a fresh or restored table is rewritten).
_written: dict[str, str] = {}


def _key(client: Any, db: str, registry: SiteRegistry) -> str:
    ref = client.query(f"SELECT count(), toUInt32(max(loaded_at)), (SELECT count() FROM {db}.{PERIMETERS_TABLE}) "
                       f"FROM {db}.etablissements").result_rows[0]
    perimeters = [(s.id, s.projet, s.perimeter) for s in registry.all() if declared(s.perimeter)]
    names = sorted(project_names(registry).items())
    written = client.query(f"SELECT count() FROM {db}.{NAMES_TABLE}").result_rows[0][0] if _has(client, db, NAMES_TABLE) else -1
    return hashlib.sha256(repr((tuple(ref), perimeters, names, written)).encode()).hexdigest()


def _has(client: Any, db: str, table: str) -> bool:
    return bool(client.query("SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                             parameters={"db": db, "t": table}).result_rows[0][0])


def project_names(registry: SiteRegistry) -> dict[str, str]:
    """Each project code of the registry -> its name: its site's name, or the names of its sites in
    id order joined by ' / ' when several sites share the code (a site without a name: the code)."""
    by_code: dict[str, list[str]] = {}
    for site in sorted(registry.all(), key=lambda s: s.id):
        if site.projet:
            names = by_code.setdefault(site.projet, [])
            name = site.name.strip() or site.projet
            if name not in names:
                names.append(name)
    return {code: " / ".join(names) for code, names in by_code.items()}


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
    if not _has(client, db, PERIMETERS_TABLE):
        return False
    registry = registry if registry is not None else SiteRegistry.load(settings.resolved_sites_file)
    key = _key(client, db, registry)
    if not force and _written.get(settings.resolved_dsn) == key:
        return False
    now = clock.now().replace(microsecond=0, tzinfo=None)
    data = [[*row, now] for row in rows(client, db, registry)]
    _rewrite(client, r, PERIMETERS_TABLE, STAGE, COLUMNS, data)
    if _has(client, db, NAMES_TABLE):
        _rewrite(client, r, NAMES_TABLE, NAMES_STAGE, NAMES_COLUMNS,
                 [[code, name, now] for code, name in sorted(project_names(registry).items())])
    _written[settings.resolved_dsn] = _key(client, db, registry)  # with the table's new size
    log.info("ENT perimeters written", extra={"rows": len(data)})
    return True


def _rewrite(client: Any, r: Renderer, table: str, stage: str, columns: list[str], data: list[list[Any]]) -> None:
    """`table` becomes `data`: through `stage` and REPLACE PARTITION (atomic), or emptied."""
    on_cluster = r.on_cluster
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(stage)}{on_cluster}")
    if data:
        client.insert(r.name(stage), data, column_names=columns,
                      settings={"insert_distributed_sync": 1} if r.cluster else None)
        client.command(f"ALTER TABLE {r.local_name(table)}{on_cluster} REPLACE PARTITION tuple() "
                       f"FROM {r.local_name(stage)}")
    else:
        client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(table)}{on_cluster}")
    client.command(f"TRUNCATE TABLE IF EXISTS {r.local_name(stage)}{on_cluster}")
