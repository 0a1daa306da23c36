"""``safeladder score`` streams: peak memory does not grow with the number of rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

N_ROWS = 200_000

# Runs in a fresh interpreter and reads its peak RSS from VmHWM (KiB), which starts afresh at
# exec; ru_maxrss would not do: Linux carries the parent's peak across fork + exec. Warm up on a
# small file, score the big one, then, for scale, hold the big file's rows in memory the way a
# non-streaming implementation would.
SCRIPT = r"""
import json, sys
from pathlib import Path
from safeladder.scoring import ScoreJob, run_score

small, big, out = (Path(a) for a in sys.argv[1:4])
cfg = {"terms": [{"name": "len", "weight": 1.0, "verifier": {
    "type": "custom", "target": "tests.cli.fixtures_rewards:lengths", "mode": "batch"}}]}

def peak():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

run_score(ScoreJob(input=small, output=out / "small.jsonl", config=cfg, progress=False, batch_size=64))
before = peak()
summary = run_score(ScoreJob(input=big, output=out / "big.jsonl", config=cfg, progress=False, batch_size=64))
streamed = peak()
with open(big, encoding="utf-8") as fh:
    rows = [json.loads(line) for line in fh]
held = peak()
print(json.dumps({"before": before, "streamed": streamed, "held": held,
                  "rows_scored": summary["rows_scored"]}))
"""


def write_rows(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": i,
                        "prompt": f"question {i}",
                        "completion": "answer " * (i % 13),
                        "task": "qa",
                    }
                )
                + "\n"
            )


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_scoring_200k_rows_keeps_memory_flat(tmp_path: Path) -> None:
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    write_rows(small, 5_000)
    write_rows(big, N_ROWS)
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(small), str(big), str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    print(res.stdout)
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["rows_scored"] == N_ROWS
    growth_mib = (m["streamed"] - m["before"]) / 1024
    held_mib = (m["held"] - m["streamed"]) / 1024
    # Holding the rows costs ~100+ MiB; streaming them must stay a small constant.
    assert held_mib > 50, m
    assert growth_mib < 16, m
    with open(tmp_path / "out" / "big.jsonl", "rb") as fh:
        assert sum(1 for _ in fh) == N_ROWS
