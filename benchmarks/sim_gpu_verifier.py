"""A simulated GPU-bound verifier for ``bench_ray_scaling.py``: a ``custom`` verifier target.

A neural verifier on a GPU costs a fixed launch overhead per forward pass plus a time per row,
and a forward pass holds at most ``max_rows`` rows (the GPU memory limit), so a larger batch is
cut into passes. Here each pass is ``time.sleep(overhead_ms + per_row_ms * rows)``: the sleep
releases the GIL and uses no CPU, so a 2-core machine can host several simulated "GPUs" and
what is measured is Ray's scheduling, batching and backpressure, not the CPUs.

Each ``score`` call appends one JSON line to ``<log_dir>/calls-<pid>.jsonl`` (when ``log_dir``
is set): ``{"pid", "gpu" (CUDA_VISIBLE_DEVICES as Ray set it), "t0", "t1" (time.time()),
"cpu0", "cpu1" (the process's CPU seconds, time.process_time()), "rows", "passes"}``; the benchmark reads these to find the scoring span and the actors.

Score: the completion's length modulo 7, divided by 7 (in [0, 1), deterministic), so runs can
be compared byte for byte.

Example reward config (``benchmarks/`` on ``PYTHONPATH``, also for the Ray workers)::

    {"name": "sim_gpu", "terms": [{"name": "sim", "verifier": {
        "type": "custom", "target": "sim_gpu_verifier:SimGpuModel",
        "kwargs": {"overhead_ms": 20, "per_row_ms": 1, "max_rows": 128},
        "score_range": [0, 1], "reads_reference": false, "reads_images": false}}]}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def pass_seconds(rows: int, overhead_ms: float, per_row_ms: float, max_rows: int) -> float:
    """Simulated GPU time for a batch of ``rows``: ``ceil(rows / max_rows)`` passes.

    >>> round(pass_seconds(64, 20, 1, 128), 3), round(pass_seconds(256, 20, 1, 128), 3)
    (0.084, 0.296)
    """
    passes = -(-rows // max_rows)
    return (passes * overhead_ms + rows * per_row_ms) / 1000.0


class SimGpuModel:
    """``score(batch) -> list[float]``, sleeping as a GPU model of the given cost would run."""

    def __init__(
        self,
        overhead_ms: float = 20.0,
        per_row_ms: float = 1.0,
        max_rows: int = 128,
        log_dir: str | None = None,
    ):
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.overhead_ms = float(overhead_ms)
        self.per_row_ms = float(per_row_ms)
        self.max_rows = int(max_rows)
        self._log: Any = None
        if log_dir is not None:
            path = Path(log_dir) / f"calls-{os.getpid()}.jsonl"
            self._log = path.open("a", encoding="utf-8")  # one per actor, kept open

    def score(self, batch: Any) -> list[float]:
        t0, cpu0 = time.time(), time.process_time()
        rows = len(batch)
        passes = 0
        for start in range(0, rows, self.max_rows):
            n = min(self.max_rows, rows - start)
            time.sleep((self.overhead_ms + self.per_row_ms * n) / 1000.0)
            passes += 1
        scores = [(len(c) % 7) / 7.0 for c in batch.completions]
        if self._log is not None:
            rec = {
                "pid": os.getpid(),
                "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "t0": t0,
                "t1": time.time(),
                "cpu0": cpu0,
                "cpu1": time.process_time(),
                "rows": rows,
                "passes": passes,
            }
            self._log.write(json.dumps(rec) + "\n")
            self._log.flush()
        return scores
