"""Exact distinct users in every visit rollup: `user_index` numbers each user (a visit's uid hash,
else its visitor id) densely from 1, and the rollups' `utilisateurs` become `groupBitmap` states
over that index instead of `uniq` (per-UAI tiers) or `uniqCombined(12)` (coarse tiers) estimates.
Merged over any period or territory they give the exports' and the reporting API's `uniqExact`.

The index is filled from the visits already stored (key order), the rollups' users columns are
replaced (ClickHouse cannot convert one aggregate state into another) and every rollup is rebuilt
from `visits` (daily tiers) or from its finer tier (the others), as aggregator.rollups builds them.
The sessionizer's extra worker stage tables (`<rollup>_stage_w1`, created `AS` the stage) are
dropped: they would keep the old column and refuse REPLACE PARTITION; the sessionizer recreates
them. Each statement can be run again after an interruption (the index and the rollups are
refilled from scratch). Nothing may write meanwhile: the loader migrates before it builds visits.

On a cluster the tables are altered but not refilled (each shard holds its own rollups): rebuild
them after migrating with `dnma aggregate --days ...`.
"""

from __future__ import annotations

from aggregator.ddl import Renderer

USER_KEY = "if(user_hash != 0, user_hash, visitor_id)"
INDEX = "user_index"
GEO = ("degre", "region", "academie", "departement")
DETAIL = ("uai", "site_id", "projet", *GEO, "profil", "device")
# rollup: (period column, dimensions, source: None = visits, else the finer daily rollup), build order
ROLLUPS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "visits_daily": ("day", DETAIL, None),
    "visits_territoires_daily": ("day", (*GEO, "profil", "device"), None),
    "visits_national_daily": ("day", ("degre", "profil", "device"), "visits_territoires_daily"),
    "visits_services_daily": ("day", (*GEO, "projet", "profil", "service"), None),
    "visits_services_national_daily": ("day", ("degre", "profil", "service"), "visits_services_daily"),
    "visits_weekly": ("debutsemaine", DETAIL, "visits_daily"),
}
USERS_COLUMN = "`utilisateurs` AggregateFunction(groupBitmap, UInt32) CODEC(ZSTD(3))"
SUMS = ("visites", "duree", "pages_vues", "actions", "rebonds")
FROM_VISITS = ("toUInt64(count())", "toUInt64(sum(duration))", "toUInt64(sum(pageviews))",
               "toUInt64(sum(actions))", "toUInt64(sum(is_bounce))")


def _index(r: Renderer) -> list[str]:
    return r.create_table(
        INDEX,
        "`user_key` UInt64, `user_idx` UInt32",
        order_by="user_key",
        sharding_key="cityHash64(user_key)",
    )


def _tables(r: Renderer, table: str) -> list[str]:
    """The physical tables holding a rollup's rows (and its Distributed front in a cluster)."""
    return [r.local_name(table), r.name(table)] if r.cluster else [r.name(table)]


def _replace_users_column(r: Renderer) -> list[str]:
    out = []
    for rollup in ROLLUPS:
        for name in (rollup, f"{rollup}_stage"):
            for table in _tables(r, name):
                out.append(f"ALTER TABLE {table}{r.on_cluster} DROP COLUMN IF EXISTS `utilisateurs`")
                out.append(f"ALTER TABLE {table}{r.on_cluster} ADD COLUMN IF NOT EXISTS {USERS_COLUMN} AFTER `visites`")
        if not r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(rollup + '_stage_w1')}")
    return out


def _rebuild(r: Renderer, table: str) -> list[str]:
    period, dims, source = ROLLUPS[table]
    columns = ", ".join([period, *dims, "visites", "utilisateurs", *SUMS[1:]])
    keys = ", ".join(dims)
    if source is None:
        array_join = "ARRAY JOIN services AS service " if "service" in dims else ""
        measures = [FROM_VISITS[0], "groupBitmapState(u.user_idx)", *FROM_VISITS[1:]]
        select = (f"SELECT day, {keys}, {', '.join(measures)} FROM {r.local_name('visits')} {array_join}"
                  f"LEFT JOIN {r.name(INDEX)} AS u ON u.user_key = {USER_KEY} GROUP BY day, {keys}")
    else:
        measures = ["sum(visites)", "groupBitmapMergeState(utilisateurs)", *(f"sum({m})" for m in SUMS[1:])]
        period_sql = "day" if period == "day" else "toMonday(day)"
        select = (f"SELECT {period_sql} AS {period}, {keys}, {', '.join(measures)} FROM {r.local_name(source)} "
                  f"GROUP BY {period}, {keys}")
    return [
        f"TRUNCATE TABLE {r.local_name(table)}",
        # One partition per day or week: a year of them in one INSERT is meant.
        f"INSERT INTO {r.local_name(table)} ({columns}) SETTINGS max_partitions_per_insert_block = 0, "
        f"optimize_on_insert = 0 {select}",
    ]


def up(r: Renderer) -> list[str]:
    out = [*_index(r), *_replace_users_column(r)]
    if r.cluster:
        return out
    out += [
        f"TRUNCATE TABLE {r.local_name(INDEX)}",
        f"INSERT INTO {r.local_name(INDEX)} (user_key, user_idx) SELECT user_key, "
        f"toUInt32(row_number() OVER (ORDER BY user_key)) FROM (SELECT DISTINCT {USER_KEY} AS user_key "
        f"FROM {r.local_name('visits')})",
    ]
    for table in ROLLUPS:
        out += _rebuild(r, table)
    return out


def down(r: Renderer) -> list[str]:
    """Back to m0004's `uniq` / `uniqCombined(12)` states, empty: rebuild the rollups afterwards."""
    previous = {"visits_daily": "uniq", "visits_weekly": "uniq"}
    out = []
    for rollup in ROLLUPS:
        users = previous.get(rollup, "uniqCombined(12)")
        for name in (rollup, f"{rollup}_stage"):
            for table in _tables(r, name):
                out.append(f"ALTER TABLE {table}{r.on_cluster} DROP COLUMN IF EXISTS `utilisateurs`")
                out.append(f"ALTER TABLE {table}{r.on_cluster} ADD COLUMN `utilisateurs` "
                           f"AggregateFunction({users}, UInt64) CODEC(ZSTD(3)) AFTER `visites`")
        if not r.cluster:
            out.append(f"DROP TABLE IF EXISTS {r.local_name(rollup + '_stage_w1')}")
    out.append(f"DROP TABLE IF EXISTS {r.name(INDEX)}{r.on_cluster}")
    if r.cluster:
        out.append(f"DROP TABLE IF EXISTS {r.local_name(INDEX)}{r.on_cluster}")
    return out
