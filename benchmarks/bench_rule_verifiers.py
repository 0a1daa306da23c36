"""Throughput of the rule verifiers on real GSM8K / MATH rows, and math_answer vs plain math-verify.

Run from anywhere (data is read from ``../shared/data`` next to the repository)::

    python benchmarks/bench_rule_verifiers.py

Rows: the first ``ROWS`` rows of ``gsm8k_train.jsonl.gz`` and of ``math_train.jsonl.gz``
(non-empty answers); the completion is the gold solution, except for a seeded ``WRONG_SHARE``
of rows whose final answer is replaced by a wrong one (GSM8K: ``#### n+1``; MATH: the boxed
answer of another problem). The reference is the dataset's ``answer``.

Measured, per dataset, after one warm-up pass: the median wall time of ``REPEATS`` passes over
all rows, as samples/s.
- ``math_answer`` (defaults, except ``cache_size: 0`` so every repeat does the full work):
  one ``score()`` call per pass, i.e. one batch, as a trainer would call it;
- the baseline, what reward functions do today: per sample, in this process,
  ``math_verify.verify(parse(f"${answer}$"), parse(completion))`` with math-verify's default
  (signal-based) timeouts; reported with the ratio ``math_answer / baseline``, and how often the
  two agree on the 0/1 outcome;
- every other registered verifier that builds from its defaults plus ``EXTRA_CONFIG``
  (placeholders and verifiers that need more config -- e.g. a model path -- are skipped, with
  the reason printed), scored on the same rows; terms a verifier ``requires`` are filled with
  math_answer's scores. Their scores on math rows mean little; the throughput does.

Each measurement is appended as one JSON line to ``benchmarks/results/rule_verifiers.jsonl``
(see ``benchmarks/README.md`` for the fields).
"""

from __future__ import annotations

import json
import logging
import random
import re
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

# ----------------------------------------------------------------------------- knobs
ROWS = 1000  # rows per dataset
REPEATS = 3  # timed passes (after one warm-up pass)
WRONG_SHARE = 0.3  # share of rows whose completion carries a wrong final answer
SEED = 0
DATASETS = {"gsm8k": "gsm8k_train.jsonl.gz", "math": "math_train.jsonl.gz"}
SKIP_TYPES = {"custom"}  # needs a user target, nothing to time
# Settings a verifier cannot do without; required context terms get math_answer's scores.
EXTRA_CONFIG: dict[str, dict[str, Any]] = {
    "confidence_calibration": {"correctness_from": "correct"}
}

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "rule_verifiers.jsonl"
sys.path.insert(0, str(REPO))


def load_rows(name: str, file: str, n: int) -> list[dict[str, Any]]:
    rows = bench_env.answered_rows(DATA / file, n)
    rng = random.Random(f"{SEED}:{name}")
    wrong = set(rng.sample(range(len(rows)), int(WRONG_SHARE * len(rows))))
    samples = []
    for i, row in enumerate(rows):
        completion = row["solution"]
        if i in wrong and name == "gsm8k":
            completion = re.sub(r"####.*$", f"#### {int(row['answer']) + 1}", completion)
        elif i in wrong:
            other = rows[(i + 1) % len(rows)]["answer"]
            completion = completion[: completion.rfind("\\boxed")] + f"\\boxed{{{other}}}."
        samples.append({"completion": completion, "reference": row["answer"], "wrong": i in wrong})
    return samples


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    fn()  # warm-up: starts pools, imports, fills caches that are not part of the measurement
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def baseline_scores(samples: list[dict[str, Any]]) -> list[float]:
    from math_verify import parse, verify

    return [float(verify(parse(f"${s['reference']}$"), parse(s["completion"]))) for s in samples]


def environment() -> dict[str, Any]:
    return bench_env.environment(("math-verify", "sympy"))


def record(env: dict[str, Any], **fields: Any) -> dict[str, Any]:
    line = {
        "benchmark": "rule_verifiers",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows_per_dataset": ROWS,
        "repeats": REPEATS,
        "wrong_share": WRONG_SHARE,
        **fields,
        **env,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    return line


def main() -> None:
    from safeladder.types import SampleBatch
    from safeladder.verifiers import REGISTRY, build_verifier
    from safeladder.verifiers.math_answer import MathAnswerVerifier

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    env = environment()
    data = {name: load_rows(name, file, ROWS) for name, file in DATASETS.items()}
    batches = {
        name: SampleBatch.from_columns(
            None, [s["completion"] for s in rows], [s["reference"] for s in rows]
        )
        for name, rows in data.items()
    }
    table: list[tuple[str, str, int, float, float, str, str]] = []

    # -- math_answer against the per-sample math-verify baseline
    ours = build_verifier({"type": "math_answer", "cache_size": 0})
    assert isinstance(ours, MathAnswerVerifier)
    for name, rows in data.items():
        batch = batches[name]
        ours.stats.clear()
        t_ours, sb = timed(lambda b=batch: ours.score(b), REPEATS)
        per_pass = {k: v // (REPEATS + 1) for k, v in ours.stats.items()}
        t_base, base = timed(lambda r=rows: baseline_scores(r), REPEATS)
        ok = sb.status == "ok"
        agree = sum(1 for i, s in enumerate(sb.scores) if ok[i] and float(s) == base[i]) / max(
            1, int(ok.sum())
        )
        expected_right = sum(
            1 for i, s in enumerate(rows) if not s["wrong"] and sb.scores[i] == 1.0
        )
        n = len(rows)
        ratio = t_base / t_ours
        record(
            env,
            verifier="math_answer",
            config={"cache_size": 0},
            dataset=name,
            rows=n,
            seconds_median=round(t_ours, 4),
            samples_per_s=round(n / t_ours, 1),
            baseline="math_verify.verify(parse(f'${answer}$'), parse(completion)) per sample, in-process",
            baseline_seconds_median=round(t_base, 4),
            baseline_samples_per_s=round(n / t_base, 1),
            ratio_vs_baseline=round(ratio, 2),
            agreement_with_baseline=round(agree, 4),
            gold_rows_scored_one=f"{expected_right}/{n - sum(s['wrong'] for s in rows)}",
            status_counts=sb.counts(),
            rows_decided_by_per_pass=per_pass,
        )
        table.append(
            ("math_answer", name, n, t_ours, n / t_ours, f"x{ratio:.1f} vs baseline", _counts(sb))
        )
        table.append(
            ("  baseline: verify(parse)", name, n, t_base, n / t_base, f"agree {agree:.1%}", "")
        )
    ours.close()

    # -- every other registered rule verifier that builds from its defaults
    for type_name, cls in sorted(REGISTRY.items()):
        if type_name in SKIP_TYPES or type_name == "math_answer":
            continue
        try:
            config = cls(type=type_name, **EXTRA_CONFIG.get(type_name, {}))
        except Exception as exc:
            print(f"skip {type_name}: needs extra config ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        try:
            verifier = config.build()
        except NotImplementedError:
            print(f"skip {type_name}: placeholder module (its config has no build() yet)")
            continue
        except Exception as exc:
            print(f"skip {type_name}: build failed ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        for name, batch in batches.items():
            context = {}
            if verifier.requires:
                helper = build_verifier({"type": "math_answer"})
                context = {req: helper.score(batch) for req in verifier.requires}
                helper.close()
            try:
                t, sb = timed(lambda b=batch, c=context, v=verifier: v.score(b, c), REPEATS)
            except Exception as exc:
                print(
                    f"skip {type_name} on {name}: scoring failed ({type(exc).__name__}: {str(exc)[:120]})"
                )
                break
            n = len(batch)
            record(
                env,
                verifier=type_name,
                config=config.model_dump(mode="json"),
                dataset=name,
                rows=n,
                seconds_median=round(t, 5),
                samples_per_s=round(n / t, 1),
                status_counts=sb.counts(),
                context_from=list(verifier.requires),
            )
            table.append((type_name, name, n, t, n / t, "", _counts(sb)))
        verifier.close()

    print()
    print(f"{'verifier':<28} {'data':<6} {'rows':>5} {'median s':>9} {'samples/s':>11}  note")
    for v, d, n, t, sps, note, counts in table:
        print(f"{v:<28} {d:<6} {n:>5} {t:>9.3f} {sps:>11.1f}  {note} {counts}".rstrip())
    print(
        f"\nappended to {RESULTS.relative_to(REPO)}; git {str(env['git_sha'])[:10]}, "
        f"{env['cpu_count']} CPUs, math-verify {env['versions']['math-verify']}"
    )


def _counts(sb: Any) -> str:
    c = Counter({k: v for k, v in sb.counts().items() if v})
    return " ".join(f"{k}={v}" for k, v in sorted(c.items()))


if __name__ == "__main__":  # required: the worker pool starts processes with "spawn"
    main()
