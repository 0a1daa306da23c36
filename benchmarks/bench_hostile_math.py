"""Hostile answers in a ``math_answer`` batch: power towers, slow polynomial powers, restarts.

Run from anywhere (data is read from ``../shared/data`` next to the repository)::

    python benchmarks/bench_hostile_math.py

Rows: ``HONEST`` GSM8K training rows (completion = the gold solution, ``#### n``; reference =
the dataset's ``answer``) with ``HOSTILE`` hostile rows mixed in at seeded positions. Two kinds
of hostile rows, one scenario each:

- ``tower``: ``\\boxed{b^{b^{b^{b^{k}}}}}`` (bases 2-9, varied heights and tops), the case of
  issue 10 item 4 (106 s for 30 of them among 300 rows before the fix);
- ``polynomial``: ``\\boxed{(x+k)^{n}}`` with ``n`` around 3000, which sympy expands term by
  term for minutes and no estimate from the text rejects, so only the per-call budget ends them.

Measured, per scenario: the wall time of one ``score()`` call over all rows with the defaults
(``cache_size: 0``; the pool is started and warmed by a call on other rows first), the status
counts of honest and hostile rows, and whether every honest row scored 1.0. With
``BASELINE_REV`` set, the same scenario is run in a subprocess on that git revision's code
(exported with ``git archive``) as the baseline, and the ratio is reported.

Restart cost: one worker with math-verify imported; a row that runs past ``RESTART_TIMEOUT_S``
is killed, and the latency of the next (cheap) row is measured, without a spare (what a
restart costs) and with one warm spare (``spare_workers: 1``, the default); median of
``REPEATS``.

Each measurement is appended as one JSON line to ``benchmarks/results/hostile_math.jsonl``.
"""

from __future__ import annotations

import gzip
import json
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

# ----------------------------------------------------------------------------- knobs
HONEST = 300  # GSM8K rows scored right
HOSTILE = 30  # hostile rows mixed in
SEED = 0
SCENARIOS = ("tower", "polynomial")
# Git revision whose code is the baseline (before issue 10 item 4); None skips the baseline.
BASELINE_REV: str | None = "01ffa1d"
BASELINE_SCENARIOS = ("tower",)  # the baseline takes ~100 s per scenario
BASELINE_TIMEOUT_S = 900
REPEATS = 3  # restart-cost repeats
RESTART_TIMEOUT_S = 0.5

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "hostile_math.jsonl"


def honest_rows(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with gzip.open(DATA / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            rows.append({"completion": row["solution"], "reference": row["answer"]})
            if len(rows) >= n + 20:
                break
    return rows


def hostile_rows(kind: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        if kind == "tower":
            b = rng.randint(2, 9)
            height = rng.randint(3, 5)
            tower = str(rng.randint(2, 9))
            for _ in range(height):
                tower = f"{b}^{{{tower}}}"
            text = f"\\boxed{{{tower}}}"
        else:
            text = f"\\boxed{{(x+{rng.randint(1, 9)})^{{{2900 + i}}}}}"
        rows.append({"completion": f"Let me compute. {text}", "reference": str(rng.randint(1, 99))})
    return rows


def scenario_rows(kind: str) -> tuple[list[dict[str, Any]], list[bool], list[dict[str, Any]]]:
    """``(rows, is_hostile, warm-up rows)``, seeded."""
    rng = random.Random(f"{SEED}:{kind}")
    pool = honest_rows(HONEST)
    honest, warm = pool[:HONEST], pool[HONEST:]
    rows = [(r, False) for r in honest] + [(r, True) for r in hostile_rows(kind, HOSTILE, rng)]
    rng.shuffle(rows)
    # The warm-up starts the pool on rows that need math-verify, like the hostile ones do.
    warm = [*warm, {"completion": "\\boxed{(x+2)(x+5)}", "reference": "x^2+7x+10"}]
    return [r for r, _ in rows], [h for _, h in rows], warm


# Runs in this process (current code) or in a subprocess on the baseline revision's code.
_MEASURE = """
import json, sys, time
from collections import Counter
from safeladder import Sample
from safeladder.verifiers import build_verifier
rows, hostile, warm = json.load(sys.stdin)
v = build_verifier({"type": "math_answer", "cache_size": 0})
v.score([Sample(**r) for r in warm])
t0 = time.perf_counter()
sb = v.score([Sample(**r) for r in rows])
seconds = time.perf_counter() - t0
out = {"seconds": seconds, "honest": Counter(), "hostile": Counter(), "honest_scored_one": 0,
       "hostile_reasons": Counter()}
for h, s, st, d in zip(hostile, sb.scores, sb.status, sb.details):
    out["hostile" if h else "honest"][str(st)] += 1
    if h:
        out["hostile_reasons"][str(d.get("reason", ""))[:60]] += 1
    elif st == "ok" and s == 1.0:
        out["honest_scored_one"] += 1
out["stats"] = dict(getattr(v, "stats", {}))
v.close()
print("RESULT " + json.dumps(out))
"""


def measure_here(kind: str) -> dict[str, Any]:
    rows, hostile, warm = scenario_rows(kind)
    return _run_measure(str(REPO), rows, hostile, warm, timeout=BASELINE_TIMEOUT_S)


def measure_baseline(kind: str, rev: str) -> dict[str, Any]:
    rows, hostile, warm = scenario_rows(kind)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(
            ["git", "archive", "-o", str(archive), rev, "safeladder"], cwd=REPO, check=True
        )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        return _run_measure(tmp, rows, hostile, warm, timeout=BASELINE_TIMEOUT_S)


def _run_measure(
    root: str, rows: list[Any], hostile: list[bool], warm: list[Any], timeout: int
) -> dict[str, Any]:
    # A fresh interpreter for both, so neither inherits the other's pool or imports.
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r})\n{_MEASURE}"],
        input=json.dumps([rows, hostile, warm]),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=root,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measurement failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def restart_latency(spares: int) -> list[float]:
    """Seconds from a killed row to the result of the next cheap row, per repeat."""
    sys.path.insert(0, str(REPO))
    from safeladder.timeout_pool import TimeoutPool
    from safeladder.verifiers.math_answer import _warm_up, symbolic_check

    slow = (("5",), "(x+1)^{3000}", 6)
    cheap = (("x^2+7x+10",), "(x+2)(x+5)", 6)
    out = []
    with TimeoutPool(1, spares=spares, initializer=_warm_up) as pool:
        pool.run(symbolic_check, cheap, timeout_s=60)
        for _ in range(REPEATS):
            while pool.idle_workers() < 1 + spares:  # steady state: the spare is ready
                time.sleep(0.05)
            assert pool.run(symbolic_check, slow, timeout_s=RESTART_TIMEOUT_S).timed_out
            t0 = time.perf_counter()
            outcome = pool.run(symbolic_check, cheap, timeout_s=60)
            out.append(time.perf_counter() - t0)
            assert outcome.value == "equal", outcome
    return out


def write(line: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def main() -> None:
    env = bench_env.environment(("math-verify", "sympy"))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    common = {"benchmark": "hostile_math", "timestamp": stamp, **env}
    print(f"{'scenario':<12} {'code':<10} {'seconds':>8}  honest (scored 1.0)   hostile")
    for kind in SCENARIOS:
        now = measure_here(kind)
        line: dict[str, Any] = {
            **common,
            "measure": "batch",
            "scenario": kind,
            "honest_rows": HONEST,
            "hostile_rows": HOSTILE,
            "seconds": round(now["seconds"], 3),
            "honest_status": now["honest"],
            "honest_scored_one": now["honest_scored_one"],
            "hostile_status": now["hostile"],
            "hostile_reasons": now["hostile_reasons"],
            "rows_decided_by": now["stats"],
        }
        print(
            f"{kind:<12} {'current':<10} {now['seconds']:8.2f}  "
            f"{dict(now['honest'])} ({now['honest_scored_one']})   {dict(now['hostile'])}"
        )
        if BASELINE_REV is not None and kind in BASELINE_SCENARIOS:
            base = measure_baseline(kind, BASELINE_REV)
            line.update(
                baseline=f"math_answer defaults at git {BASELINE_REV}",
                baseline_seconds=round(base["seconds"], 3),
                baseline_honest_status=base["honest"],
                baseline_hostile_status=base["hostile"],
                ratio_vs_baseline=round(base["seconds"] / now["seconds"], 2),
            )
            print(
                f"{kind:<12} {BASELINE_REV:<10} {base['seconds']:8.2f}  "
                f"{dict(base['honest'])} ({base['honest_scored_one']})   {dict(base['hostile'])}"
                f"   ratio {line['ratio_vs_baseline']}x"
            )
        write(line)

    print(f"\nnext row after a kill (timeout {RESTART_TIMEOUT_S} s), median of {REPEATS}:")
    before, after = restart_latency(0), restart_latency(1)
    line = {
        **common,
        "measure": "restart",
        "repeats": REPEATS,
        "no_spare_seconds": [round(x, 3) for x in before],
        "no_spare_median_s": round(statistics.median(before), 3),
        "warm_spare_seconds": [round(x, 3) for x in after],
        "warm_spare_median_s": round(statistics.median(after), 3),
        "ratio": round(statistics.median(before) / statistics.median(after), 1),
    }
    print(f"  no spare   {line['no_spare_median_s']:8.3f} s")
    print(f"  warm spare {line['warm_spare_median_s']:8.3f} s   ({line['ratio']}x)")
    write(line)


if __name__ == "__main__":
    main()
