"""``safeladder score --resume`` after a real SIGKILL / SIGINT of a subprocess.

The run scores a file with bad rows sprinkled in, through a reward that sleeps a little per
batch so the test can stop it part-way (once the checkpoint shows progress). After resuming,
every good row must be in OUT and every bad row in OUT.errors.jsonl, exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app
from tests.cli.fixtures_rewards import reward_config
from tests.helpers import REPO

N_ROWS = 300
BATCH = 10


def make_input(path: Path) -> tuple[list[int], list[int]]:
    """Rows ``{"id": i, ...}``; every 37th line is broken JSON, every 53rd lacks a completion.

    Returns the ids of the good rows and the (1-based) lines of the bad ones.
    """
    good, bad, lines = [], [], []
    for i in range(N_ROWS):
        line = i + 1
        if i % 37 == 5:
            lines.append(f'{{"id": {i}, "completion": "trunc')
            bad.append(line)
        elif i % 53 == 7:
            lines.append(json.dumps({"id": i, "prompt": "no completion"}))
            bad.append(line)
        else:
            lines.append(json.dumps({"id": i, "prompt": "q", "completion": "x" * (i % 7)}))
            good.append(i)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return good, bad


def start_run(cfg: Path, inp: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "safeladder.cli.app",
        "score",
        str(cfg),
        "-i",
        str(inp),
        "-o",
        str(out),
    ]
    cmd += ["--batch-size", str(BATCH), "--no-progress", "--checkpoint-every", "0"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_progress(
    proc: subprocess.Popen[bytes], progress: Path, past_line: int
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the run ended before it could be stopped: {err.decode()}")
        try:
            state = json.loads(progress.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = {}
        if state.get("next_line", 0) > past_line:
            return state
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("no progress within 30 s")


def check_outputs(out: Path, good: list[int], bad: list[int]) -> None:
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == good  # each good row exactly once, in input order
    assert all(r["reward"] == float(r["id"] % 7) for r in rows)
    errors = [json.loads(x) for x in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == bad
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert (summary["rows_scored"], summary["bad_rows"]) == (len(good), len(bad))
    assert summary["runs"] == 2
    assert json.loads(Path(f"{out}.progress.json").read_text())["status"] == "complete"


def write_reward(cfg: Path, delay: float) -> None:
    """The reward config: row lengths, sleeping ``delay`` seconds per batch."""
    cfg.write_text(
        yaml.safe_dump(reward_config("slow_lengths", mode="batch", kwargs={"delay": delay}))
    )


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, Path, list[int], list[int]]:
    cfg = tmp_path / "r.yaml"
    write_reward(cfg, delay=0.02)
    inp = tmp_path / "in.jsonl"
    good, bad = make_input(inp)
    return cfg, inp, tmp_path / "out.jsonl", good, bad


def resume(cfg: Path, inp: Path, out: Path) -> Any:
    args = [
        "score",
        str(cfg),
        "-i",
        str(inp),
        "-o",
        str(out),
        "--batch-size",
        "7",
        "--no-progress",
        "--resume",
    ]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("stop_after_line", [40, 170])
def test_resume_after_sigkill(
    setup: tuple[Path, Path, Path, list[int], list[int]], stop_after_line: int
) -> None:
    cfg, inp, out, good, bad = setup
    proc = start_run(cfg, inp, out)
    state = wait_for_progress(proc, Path(f"{out}.progress.json"), stop_after_line)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert state["status"] == "running"
    # A chunk written after the last checkpoint, half of a line included: resume drops it.
    with open(out, "ab") as fh:
        fh.write(b'{"id": 999999, "reward": 1.0}\n{"id": 1000000, "rew')
    with open(f"{out}.errors.jsonl", "ab") as fh:
        fh.write(b'{"line": 123456, "err')

    res = resume(cfg, inp, out)  # a different batch size is fine when resuming
    assert res.exit_code == 0, res.stderr
    check_outputs(out, good, bad)
    assert f"rows scored: {len(good)}" in res.stdout


def test_resume_after_ctrl_c(setup: tuple[Path, Path, Path, list[int], list[int]]) -> None:
    cfg, inp, out, good, bad = setup
    # A slower reward than the fixture's: at 0.02 s a batch the ~0.4 s left after line 100
    # could pass before the signal landed on a loaded 2-core machine (the full suite), and the
    # run then ended normally (exit 0).
    write_reward(cfg, delay=0.1)
    proc = start_run(cfg, inp, out)
    wait_for_progress(proc, Path(f"{out}.progress.json"), 100)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "interrupted" in err.decode() and "--resume" in err.decode()
    assert "Traceback" not in err.decode()

    # without --resume the half-done output is protected
    again = CliRunner().invoke(
        app, ["score", str(cfg), "-i", str(inp), "-o", str(out), "--no-progress"]
    )
    assert again.exit_code == 2 and "--resume" in again.stderr

    res = resume(cfg, inp, out)
    assert res.exit_code == 0, res.stderr
    check_outputs(out, good, bad)


def test_resume_refuses_a_tampered_output(
    setup: tuple[Path, Path, Path, list[int], list[int]],
) -> None:
    cfg, inp, out, _, _ = setup
    proc = start_run(cfg, inp, out)
    wait_for_progress(proc, Path(f"{out}.progress.json"), 50)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    out.write_bytes(b"")  # shorter than the checkpoint says
    res = resume(cfg, inp, out)
    assert res.exit_code == 1 and "modified after the run" in res.stderr
