"""Every way to start the command line sees every command.

``python -m safeladder.cli.app`` runs ``app.py`` as ``__main__``, a second copy of the module;
commands register on ``safeladder.cli.base.app``, so that copy still has all of them (before,
``python -m safeladder.cli.app eval`` answered "No such command 'eval'").
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

COMMANDS = ("score", "check", "verifiers", "serve", "eval", "generate", "train", "corrections")


@pytest.mark.parametrize("module", ["safeladder.cli", "safeladder.cli.app"])
def test_python_dash_m_lists_and_runs_every_command(module: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    listed = [
        line.split()[0] for line in res.stdout.split("Commands:")[1].splitlines() if line.strip()
    ]
    assert listed == list(COMMANDS)  # in the order the app registers them
    res = subprocess.run(
        [sys.executable, "-m", module, "eval", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: safeladder eval ")
