"""safeladder resolves inside the trainers' pinned environments (scripts/check_trainer_pins.py).

Needs the package index (pip runs in a subprocess, outside the loopback-only socket guard of
conftest.py); skipped with the reason when it is unreachable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_trainer_pins.py"


@pytest.mark.slow
def test_safeladder_resolves_with_verl_and_openrlhf_pins(tmp_path: Path) -> None:
    out = tmp_path / "pins.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--set",
            "verl-0.9.1",
            "--set",
            "openrlhf-0.11.2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode == 3:
        pytest.skip(f"package index unreachable: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["set"]: r for r in json.loads(out.read_text())}
    verl, orl = rows["verl-0.9.1"]["versions"], rows["openrlhf-0.11.2"]["versions"]
    # the trainers' pins hold, and safeladder's math check runs on the antlr runtime they bring
    assert verl["verl"] == "0.9.1"
    major, minor = (int(x) for x in verl["transformers"].split(".")[:2])
    assert (5, 5) <= (major, minor) < (5, 11)
    assert verl["antlr4-python3-runtime"].startswith("4.9.")
    assert orl["transformers"] == "5.15.0"
    assert orl["ray"] == "2.55.0"
    for row in (verl, orl):
        assert row["math-verify"] and row["trl"] and row["fastapi"]
