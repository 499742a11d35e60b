"""The face of DNMA: the `dnma` command line, the embedded stack's lifecycle (`dnma up/down/status`),
the collector's server process and `dnma tag-check`. It may import every room; no room imports it."""
