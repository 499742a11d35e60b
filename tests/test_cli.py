"""The `dnma` command line lists its commands; a command whose module is missing is an error
(a broken install), never a command silently left out."""

from __future__ import annotations

import argparse

import pytest

from dnma import cli


def test_every_command_is_there() -> None:
    [sub] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(sub.choices) == list(cli.COMMANDS)


def test_a_missing_command_module_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("dnma.no_such_module", "a command not installed"))
    with pytest.raises(ModuleNotFoundError, match="dnma.no_such_module"):
        cli.build_parser()
