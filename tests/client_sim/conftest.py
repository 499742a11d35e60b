"""Fixtures of the client/simulator/reporting tests: the real collector and loader (tests/harness.py)
in a temporary data dir, started once per module because each start costs seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dnma_client.simulator import demo_sites as simulated_sites
from harness import SUPER_TOKEN, Stack, demo_sites


@pytest.fixture(scope="module")
def collector_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Collector only, with the harness's demo sites."""
    with Stack(tmp_path_factory.mktemp("client")) as stack:
        stack.start_collector()
        yield stack


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Collector + loader (visits rebuilt every half second) with the harness's and the simulator's
    sites: simulator ids 1..5 replace the harness's site 1 but keep its token for site 1 below."""
    root: Path = tmp_path_factory.mktemp("stack")
    sites = simulated_sites(SUPER_TOKEN)
    harness_site = demo_sites()[0]
    sites[0] = {**sites[0], "token_sha256": harness_site["token_sha256"]}
    with Stack(root, sites=sites, loader_aggregate_interval_s=0.5) as stack:
        stack.start_loader()
        stack.start_collector()
        yield stack
