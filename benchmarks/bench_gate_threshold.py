"""Would a gate threshold chosen for the shift beat the shipped one? (issue 13, item 2)

The default reward vetoes a response when the shipped ``safety`` scores it below its
calibrated threshold (max F1 on its own dev split). This script picks the threshold on data
the model never trained on instead, and tests it on held-out data:

- **dev**: the JailbreakBench pool of ``safeladder.training.shift_sets`` (the 60 % of
  behaviours held out from every test column, all attacks). For each attack column the
  threshold is the max-F1 one on the pool *without* that attack (leave one attack out), so
  neither the column's behaviours nor its attack method choose it;
- **test**: each ``jbb-<attack>`` column, and the other shift columns and the benign answers
  at the threshold chosen on the whole pool.

Scores come from one pass of ``build_verifier("safety")``; a row is flagged when its score is
below the threshold. One JSON line is appended to ``benchmarks/results/gate_threshold.jsonl``.

    python benchmarks/bench_gate_threshold.py      # ~4 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gate_threshold.jsonl"


def f1_at(scores: np.ndarray, labels: np.ndarray, t: float) -> float:
    """F1 of "unsafe" (label 1) when a score below ``t`` flags."""
    flagged = scores < t
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The max-F1 threshold: just above one of the scores (ties: the lowest)."""
    cands = np.unique(scores) + 1e-7
    f1s = [f1_at(scores, labels, t) for t in cands]
    return float(cands[int(np.argmax(f1s))])


def main() -> None:
    from safeladder.training.shift_sets import load_shift_sets
    from safeladder.types import Sample
    from safeladder.verifiers import build_verifier

    started = time.monotonic()
    sets = load_shift_sets(bench_env.SHARED_DATA)
    verifier = build_verifier("safety")
    cal = REPO / "safeladder" / "defaults" / "safety" / "safeladder_calibration.json"
    shipped = float(json.loads(cal.read_text(encoding="utf-8"))["meta"]["score_threshold"])

    def score(rows: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        batch = [Sample(prompt=r.prompt, completion=r.response) for r in rows]
        s = np.asarray(verifier.score(batch).scores, dtype=np.float64)
        return s, np.array([r.label for r in rows])

    jbb = sets.sources["jbb"]
    pool_rows = jbb.train + jbb.dev
    pool_s, pool_y = score(pool_rows)
    pool_tag = np.array([r.tag for r in pool_rows])
    t_all = best_threshold(pool_s, pool_y)
    columns: dict[str, dict[str, float]] = {}
    print(f"shipped threshold {shipped:.3f}; chosen on the whole JBB pool {t_all:.3f}")
    print(f"{'column':<14} {'n':>5} {'t chosen':>9} {'F1 chosen':>10} {'F1 shipped':>11}")
    for column, rows in sets.tests.items():
        s, y = score(rows)
        if column.startswith("jbb-"):
            keep = pool_tag != column.removeprefix("jbb-")
            t = best_threshold(pool_s[keep], pool_y[keep])
        else:
            t = t_all
        columns[column] = {
            "n": len(rows),
            "threshold": round(t, 4),
            "f1_chosen": round(f1_at(s, y, t), 4),
            "f1_shipped": round(f1_at(s, y, shipped), 4),
        }
        c = columns[column]
        print(
            f"{column:<14} {len(rows):>5} {t:>9.3f} {c['f1_chosen']:>10.3f} {c['f1_shipped']:>11.3f}"
        )
    benign, _ = score(sets.benign)
    ffr = {"chosen": float((benign < t_all).mean()), "shipped": float((benign < shipped).mean())}
    print(
        f"false-flag rate on {len(benign)} benign answers: chosen {ffr['chosen']:.4f}, "
        f"shipped {ffr['shipped']:.4f}"
    )
    record = {
        "benchmark": "gate_threshold",
        "shipped_threshold": shipped,
        "pool_threshold": t_all,
        "pool_rows": len(pool_rows),
        "columns": columns,
        "ffr": ffr,
        "seconds": round(time.monotonic() - started, 1),
        **bench_env.environment(["torch", "transformers"]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
