"""The aggregator: ClickHouse schema and migrations, loader, read-only endpoint, referential,
sessionizer, rollups, quality checks, exports and reporting queries."""
