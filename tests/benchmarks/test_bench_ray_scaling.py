"""``benchmarks/bench_ray_scaling.py --quick --no-serve`` runs end to end (about 50 s).

A smoke test of the script, not of its figures: every part writes its JSON line, the Ray
runs score every row on distinct simulated GPUs, the outputs agree across worker counts, and
the SIGTERM'd backpressure run leaves a checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_ray_scaling.py"

try:
    import ray.data  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is an optional extra (safeladder[ray])")
def test_quick_run_writes_every_part(tmp_path: Path) -> None:
    results = tmp_path / "ray_scaling.jsonl"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-serve", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    parts = [r["part"] for r in records]
    assert set(parts) == {"offline", "score", "ceiling", "backpressure"}
    assert all(r["simulated"] and r["git_sha"] is not None for r in records)

    score = [r for r in records if r["part"] == "score"]
    assert [r["workers"] for r in score] == [1, 2]
    for r in score:
        assert r["rows_scored"] == r["rows"]
        # --gpus-per-worker 1: one actor per (simulated) GPU, each its own device
        assert r["actors"] == r["workers"] == len(r["cuda_visible_devices"])
        assert "None" not in r["cuda_visible_devices"]  # str(CUDA_VISIBLE_DEVICES)
    assert len({r["output_prefix_sha256"] for r in score}) == 1

    (bp,) = [r for r in records if r["part"] == "backpressure"]
    assert bp["checkpoint_saved"]
    assert 0 < bp["rows_scored_at_stop"] < bp["rows"]
