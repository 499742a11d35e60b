"""The README documents every setting (its table is generated from the settings object)."""

from __future__ import annotations

from pathlib import Path

from dnma.settings import BEGIN, END, Settings, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == markdown_table().strip(), "run `make readme` to refresh the settings table"
    for name in Settings.model_fields:
        assert f"`DNMA_{name.upper()}`" in block


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make up" in text and "make test" in text
