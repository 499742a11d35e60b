"""The site registry's `created` (SitesManager's `ts_created`): YAML's date, datetime or text,
a documented default when absent, a one-line error when unreadable. Its `per_person_reports`: off
unless exactly `true`, turned on and off by `dnma sites set --per-person-reports`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import main as cli
from dnma import registration
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


@pytest.mark.parametrize(("raw", "on"), [("", False), (", per_person_reports: false", False),
                                         (", per_person_reports: 'yes'", False), (", per_person_reports: true", True)])
def test_per_person_reports_are_off_unless_exactly_true(tmp_path: Path, raw: str, on: bool) -> None:
    site = registry(tmp_path, raw).get(1)
    assert site is not None and site.per_person_reports is on


def test_sites_set_turns_per_person_reports_on_and_off(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    registration.add_site(path, 7, registration.SiteChange(name="A", url="https://a.example"))
    assert SiteRegistry.load(path).get(7).per_person_reports is False  # type: ignore[union-attr]
    registration.set_site(path, 7, registration.SiteChange(per_person_reports=True))
    assert "per_person_reports: true" in path.read_text(encoding="utf-8")
    assert registration.describe(SiteRegistry.load(path))[0]["per_person_reports"] is True
    registration.set_site(path, 7, registration.SiteChange(per_person_reports=False))
    assert "per_person_reports" not in path.read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as refused:  # argparse: on or off only
        cli.main(["sites", "set", "--id", "7", "--per-person-reports", "maybe"])
    assert refused.value.code == 2
