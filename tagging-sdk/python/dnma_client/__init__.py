"""DNMA's Python SDK: the tracking client (`Tracker`) and the ENT traffic simulator (`dnma demo`).
Only `client` is needed to tag a server-side application; the rest is for demos and tests."""

from dnma_client.client import Tracker

__all__ = ["Tracker"]
