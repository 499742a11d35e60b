"""DNMA side of Superset: the asset bundle spec and `dnma superset provision`."""
