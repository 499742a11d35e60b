"""Renders DDL once for the three deployments: embedded chDB / one server (MergeTree family),
or a cluster (Replicated* local tables + Distributed, ON CLUSTER). Nothing else that varies per
install reaches the DDL: migrations render the same text everywhere (aggregator.migration_digests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Renderer:
    database: str = "dnma"
    cluster: str = ""

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def name(self, table: str) -> str:
        """The qualified name readers and writers use (the Distributed table in a cluster)."""
        return f"{self.database}.{table}"

    def local_name(self, table: str) -> str:
        """Where the data physically lives: `<table>_local` in a cluster, the table itself otherwise."""
        return f"{self.database}.{table}_local" if self.cluster else f"{self.database}.{table}"

    def engine(self, table: str, family: str = "MergeTree", args: str = "") -> str:
        if not self.cluster:
            return f"{family}({args})"
        zk = f"'/clickhouse/tables/{{shard}}/{self.database}/{table}_local', '{{replica}}'"
        return f"Replicated{family}({zk}{', ' + args if args else ''})"

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {self.database}{self.on_cluster}"

    def create_table(
        self,
        table: str,
        columns: str,
        *,
        order_by: str,
        family: str = "MergeTree",
        engine_args: str = "",
        partition_by: str = "",
        ttl: str = "",
        settings: str = "",
        sharding_key: str = "rand()",
    ) -> list[str]:
        """CREATE TABLE for one node, or the local replicated table plus its Distributed front."""
        parts = [f"CREATE TABLE IF NOT EXISTS {self.local_name(table)}{self.on_cluster} ({columns})"]
        parts.append(f"ENGINE = {self.engine(table, family, engine_args)}")
        if partition_by:
            parts.append(f"PARTITION BY {partition_by}")
        parts.append(f"ORDER BY {order_by}")
        if ttl:
            parts.append(f"TTL {ttl}")
        if settings:
            parts.append(f"SETTINGS {settings}")
        statements = ["\n".join(parts)]
        if self.cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.name(table)}{self.on_cluster} AS {self.local_name(table)} "
                f"ENGINE = Distributed({self.cluster}, {self.database}, {table}_local, {sharding_key})"
            )
        return statements

    def create_materialized_view(self, view: str, to_table: str, select: str) -> str:
        """A view from a local source table into a local target table (per shard in a cluster).

        `select` uses {src} for the local source table name.
        """
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.database}.{view}{self.on_cluster} "
            f"TO {self.local_name(to_table)} AS {select}"
        )
