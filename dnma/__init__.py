"""DNMA: audience measurement for French school digital workspaces (ENT).

The shared core: settings, the DNMA vocabulary, UAI rules, the hit columns,
the spool format and the ClickHouse client factory.
"""

__version__ = "0.1.0"
