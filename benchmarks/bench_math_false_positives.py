"""False-positive rate of ``math_answer`` on real GSM8K / MATH rows: wrong final answers scored 1.0.

Run from anywhere (data is read from ``../shared/data`` next to the repository)::

    python benchmarks/bench_math_false_positives.py

Rows: every row of ``gsm8k_train.jsonl.gz`` and ``math_train.jsonl.gz`` with a non-empty answer
(or the first ``ROWS``). Each completion is the row's own gold solution with its final answer
replaced by the answer of the next row whose answer text differs (GSM8K: the ``#### n`` line;
MATH: the last ``\\boxed{}``), so it is a wrong answer written in the dataset's own style. The
reference is the row's ``answer``. A row scored 1.0 is a false positive; the rate is false
positives / rows scored ``ok``. Some "false positives" on MATH are answers that really are equal
(two problems with the same value written differently); the rows are printed so they can be read.

One JSON line per dataset is appended to ``benchmarks/results/math_false_positives.jsonl``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

# ----------------------------------------------------------------------------- knobs
ROWS: int | None = None  # rows per dataset; None = all
CONFIG: dict[str, Any] = {"type": "math_answer"}  # the shipped defaults
DATASETS = {"gsm8k": "gsm8k_train.jsonl.gz", "math": "math_train.jsonl.gz"}

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "math_false_positives.jsonl"


def wrong_rows(name: str, file: str, limit: int | None) -> list[dict[str, Any]]:
    rows = bench_env.answered_rows(DATA / file, limit)
    out = []
    for i, row in enumerate(rows):
        squeezed = "".join(row["answer"].split())
        other = next(
            r["answer"]
            for k in range(1, len(rows))
            if "".join((r := rows[(i + k) % len(rows)])["answer"].split()) != squeezed
        )
        solution = row["solution"]
        if name == "gsm8k":
            completion = solution[: solution.rfind("####")] + f"#### {other}"
        else:
            cut = solution.rfind("\\boxed")
            completion = (solution[:cut] if cut >= 0 else solution + " ") + f"\\boxed{{{other}}}."
        out.append({"completion": completion, "reference": row["answer"], "wrong_answer": other})
    return out


def main() -> None:
    from safeladder.types import SampleBatch
    from safeladder.verifiers import build_verifier

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    env = bench_env.environment(("math-verify", "sympy"))
    verifier = build_verifier(CONFIG)
    print(f"{'dataset':8} {'rows':>6} {'ok':>6} {'false pos':>9} {'rate':>8} {'seconds':>8}")
    for name, file in DATASETS.items():
        rows = wrong_rows(name, file, ROWS)
        batch = SampleBatch.from_columns(
            None, [r["completion"] for r in rows], [r["reference"] for r in rows]
        )
        t0 = time.perf_counter()
        sb = verifier.score(batch)
        seconds = time.perf_counter() - t0
        ok = int((sb.status == "ok").sum())
        fps = [
            (r["reference"], r["wrong_answer"])
            for r, s in zip(rows, sb.scores, strict=True)
            if s == 1.0
        ]
        rate = len(fps) / max(1, ok)
        print(f"{name:8} {len(rows):6d} {ok:6d} {len(fps):9d} {rate:8.2%} {seconds:8.1f}")
        for ref, wrong in fps:
            print(f"    reference {ref!r} scored 1.0 for {wrong!r}")
        line = {
            "benchmark": "math_false_positives",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": CONFIG,
            "dataset": name,
            "rows": len(rows),
            "rows_ok": ok,
            "status_counts": sb.counts(),
            "false_positives": len(fps),
            "false_positive_rate": round(rate, 6),
            "false_positive_pairs": fps,
            "seconds": round(seconds, 2),
            **env,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
    verifier.close()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
