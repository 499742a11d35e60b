"""A site's exclusion lists as people write them in sites.yaml: a number (`[2024]`) is a pattern
like any other, and a lone string one pattern. Before, the number raised AttributeError on every
hit of the site (each answered 400 as a bug), and `excluded_user_agents: curl` excluded every
User-Agent holding a c, u, r or l."""

from __future__ import annotations

import time
from pathlib import Path

from collector import pipeline
from collector.app import Collector as App
from collector.hit import DropReason, Hit
from dnma.settings import Settings

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SITES = """
sites:
  - id: 1
    name: numbers
    main_url: https://a.example
    excluded_user_agents: [2024, Probe]
  - id: 2
    name: lone strings
    main_url: https://b.example
    excluded_user_agents: curl
    excluded_ips: 10.9.0.0/16
"""


def test_exclusion_lists_of_numbers_and_lone_strings(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(SITES, encoding="utf-8")
    ctx = App(Settings(data_dir=tmp_path, sites_file=tmp_path / "sites.yaml", uid_secret="x")).ctx

    def run(site: int, ua: str, ip: str = "203.0.113.7") -> DropReason | None:
        params = {"idsite": str(site), "rec": "1", "url": "https://a.example/p", "_id": "0123456789abcdef"}
        return pipeline.run(Hit(params, ip, {b"user-agent": ua.encode()}, "", time.time(), {}), ctx)

    assert run(1, UA) is None
    assert run(1, "Agent/2024") is DropReason.EXCLUDED_USER_AGENT
    assert run(1, "a Probe") is DropReason.EXCLUDED_USER_AGENT
    assert run(2, UA) is None  # holds an l and a u, not "curl"
    assert run(2, "curl/8.5.0") is DropReason.EXCLUDED_USER_AGENT
    assert run(2, UA, ip="10.9.3.4") is DropReason.EXCLUDED_IP
