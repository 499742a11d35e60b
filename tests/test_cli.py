"""The `dnma` command line lists its commands, each from a module imported by name (no import by
string that could skip a broken one, and the architecture's contracts see every command), each
with its runner."""

from __future__ import annotations

import argparse
import subprocess
import sys
from types import ModuleType

from cli import main as cli


def test_every_command_is_there_with_its_runner() -> None:
    [sub] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(sub.choices) == list(cli.COMMANDS)
    for name, (module, _help) in cli.COMMANDS.items():
        assert isinstance(module, ModuleType)
        runner = getattr(module, f"run_{name}", None) or getattr(module, "run", None)
        assert callable(runner), name


def test_python_m_cli_is_the_dnma_command() -> None:
    out = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "tag-check" in out.stdout and "migrate" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "cli", "no-such-command"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr
