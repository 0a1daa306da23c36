"""Helpers shared by the CLI tests (not a test module): run the app, write and read the files
a command takes and writes, and build reward terms around ``tests.cli.fixtures_rewards``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app

runner = CliRunner()
#: Module of the tiny reward functions the CLI tests score with.
FIX = "tests.cli.fixtures_rewards"


def invoke(*args: Any) -> Any:
    """``safeladder ARGS`` in process; the result has ``exit_code``, ``stdout``, ``stderr``."""
    return runner.invoke(app, [str(a) for a in args])


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One line per row: a dict as JSON, a string as it is (for broken lines)."""
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def term(name: str, target: str, weight: float = 1.0, **extra: Any) -> dict[str, Any]:
    """A reward term around ``tests.cli.fixtures_rewards:<target>``."""
    return {
        "name": name,
        "verifier": {"type": "custom", "target": f"{FIX}:{target}"},
        "weight": weight,
        **extra,
    }
