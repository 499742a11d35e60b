"""`hits_fingerprints`: per hour and site, the number of hits and their summed fingerprint hash,
kept by a materialized view on `hits`, so that finding the days to rebuild reads a small table
instead of scanning every hit (the loader asks every 30 s; the scan grew with the whole history).

An hour never straddles a local midnight in a time zone whose offset is a whole number of hours,
so the site-local day's fingerprint is the sum of its hours (aggregator.visits_query). The few
zones with a fractional offset (e.g. Pacific/Marquesas) are still read from `hits` itself.
Blocks the source table deduplicates (loader retries) never reach the view.
Kept as long as the hits themselves: the loader sets the TTL at start (aggregator.retention).
"""

from __future__ import annotations

from aggregator.ddl import Renderer

TABLE = "hits_fingerprints"
# The hash as shipped; aggregator.visits_query.fingerprint_hash must keep computing the same one.
SELECT = (
    "SELECT toStartOfHour(ts) AS hour, site_id, count() AS hits, sum(cityHash64(site_id, visitor_id, ts, "
    "action, new_visit, campaign, uai, service, profil, flags)) AS hash FROM {hits} GROUP BY hour, site_id"
)


def view(r: Renderer) -> str:
    """The materialized view feeding the table from the hits inserted."""
    return r.create_materialized_view(f"{TABLE}_mv", TABLE, SELECT.format(hits=r.local_name("hits")))


def up(r: Renderer) -> list[str]:
    # Hits stored before this migration (the loader migrates before it inserts). A cluster's nodes
    # would each backfill their own shard; on a cluster this runs once by hand per shard (README).
    backfill = [] if r.cluster else [f"INSERT INTO {r.local_name(TABLE)} {SELECT.format(hits=r.local_name('hits'))}"]
    return [
        *r.create_table(
            TABLE,
            "`hour` DateTime('Europe/Paris'), `site_id` UInt32, `hits` UInt64, `hash` UInt64",
            order_by="(hour, site_id)",
            family="SummingMergeTree",
            partition_by="toYYYYMM(hour)",
            sharding_key="site_id",
        ),
        view(r),
        *backfill,
    ]


def down(r: Renderer) -> list[str]:
    out = [f"DROP VIEW IF EXISTS {r.database}.{TABLE}_mv{r.on_cluster}",
           f"DROP TABLE IF EXISTS {r.name(TABLE)}{r.on_cluster}"]
    if r.cluster:
        out.append(f"DROP TABLE IF EXISTS {r.local_name(TABLE)}{r.on_cluster}")
    return out
