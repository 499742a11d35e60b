"""The collector: the Matomo-compatible HTTP surface, the per-hit pipeline and the spool writer."""
