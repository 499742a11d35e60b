"""The site registry's `created` (SitesManager's `ts_created`): YAML's date, datetime or text,
a documented default when absent, a one-line error when unreadable."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnma.sites import DEFAULT_CREATED, SiteRegistry


def registry(tmp_path: Path, created: str) -> SiteRegistry:
    path = tmp_path / "sites.yaml"
    path.write_text(f"sites:\n  - {{id: 1, name: A, main_url: 'https://a.example'{created}}}\n", encoding="utf-8")
    return SiteRegistry.load(path)


@pytest.mark.parametrize(("created", "ts_created"), [
    ("", DEFAULT_CREATED.strftime("%Y-%m-%d %H:%M:%S")),
    (", created: 2024-09-02", "2024-09-02 00:00:00"),  # YAML reads a date
    (", created: 2024-09-02 08:30:00", "2024-09-02 08:30:00"),  # a datetime
    (", created: '2024-09-02T08:30:00+02:00'", "2024-09-02 08:30:00"),  # text, the site's local time kept
])
def test_created_is_ts_created(tmp_path: Path, created: str, ts_created: str) -> None:
    site = registry(tmp_path, created).get(1)
    assert site is not None and site.as_matomo()["ts_created"] == ts_created


def test_an_unreadable_created_names_the_site(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^site 1: created must be a date"):
        registry(tmp_path, ", created: 'last spring'")
