"""Inference-time guidance: greedy vs best-of-N vs step-level guided search vs voting.

There is no pretrained causal LM on this machine, so the script first **trains a tiny causal LM
on synthetic arithmetic word problems** (GSM8K answer format: steps separated by blank lines,
then ``#### n``) for a fixed number of steps on CPU, so that it is right only sometimes. Then,
on held-out synthetic problems:

- **quality**: how often each method's chosen completion is correct (``math_answer`` against
  the reference). The guidance reward never sees the reference: it is a rule process reward
  (``arith_check``, below) that checks each written equation (``a op b = c``), that its operands
  come from the problem or earlier results, that every number of the problem is used, and that
  ``#### n`` repeats the last result. ``oracle@N`` (any of the N best-of-N samples correct) is
  the upper bound of any selection.
- **throughput**: wall time, tokens generated and candidates scored per second for guided search
  vs best-of-N at about the same number of generated tokens (N = beams x candidates).
- **GSM8K**: the same tiny model on real GSM8K questions (expected ~0 correct: reported for
  honesty, not as a result).

Results: one JSON line per method appended to ``benchmarks/results/guidance.jsonl`` with the
environment record. ``--quick`` is a smoke run (< 1 minute).

    python benchmarks/bench_guidance.py            # ~3-4 minutes on 2 CPUs
    python benchmarks/bench_guidance.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

# --- knobs ----------------------------------------------------------------------------------
SEED = 0
TRAIN_STEPS = 450  # AdamW steps of the tiny LM (batch TRAIN_BATCH); ~2 minutes on 1 CPU thread
TRAIN_BATCH = 32
LR = 3e-3
MODEL: dict[str, Any] = {
    "hidden_size": 96,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
}
EVAL_PROBLEMS = 100  # held-out synthetic problems
N = 8  # best-of-N / vote samples; guided search uses BEAMS x CANDIDATES = N per step
BEAMS, CANDIDATES = 2, 4
#: (beams, candidates) of further guided runs: b3k4 spends about best-of-N's token count.
GUIDED_EXTRA = [(3, 4)]
MAX_STEPS = 4
MAX_NEW_TOKENS = 48
STEP_TOKENS = 24
TEMPERATURE = 0.8
GSM8K_PROBLEMS = 20
THREADS = 1
QUICK = {"TRAIN_STEPS": 120, "EVAL_PROBLEMS": 16, "GSM8K_PROBLEMS": 4}

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SAFELADDER_BENCH_DATA") or REPO.parent / "shared" / "data")
RESULTS = REPO / "benchmarks" / "results" / "guidance.jsonl"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# The problems, the process reward and the training loop are the demo policy's
# (safeladder/guidance/demo_policy.py); this script trains longer (TRAIN_STEPS).
from safeladder.guidance.demo_policy import Recipe, arith_check, make_problem, train_demo_policy  # noqa: E402,F401


def arith_reward() -> Any:
    from safeladder.rewards import Reward, RewardConfig

    return Reward(
        RewardConfig.model_validate(
            {
                "name": "arith_prm",
                "terms": [
                    {
                        "name": "arith",
                        "verifier": {"type": "custom", "target": "bench_guidance:arith_check"},
                    }
                ],
            }
        )
    )


# --- the tiny LM ----------------------------------------------------------------------------
def train_tiny_lm(out: Path, steps: int, seed: int) -> dict[str, Any]:
    """Train a byte-level BPE tokenizer (digits split) and a small Qwen2 LM; save both to ``out``."""
    recipe = Recipe(steps=steps, batch=TRAIN_BATCH, lr=LR, seed=seed, model=dict(MODEL))
    return train_demo_policy(out, recipe, log=print)


# --- methods --------------------------------------------------------------------------------
def correct(rows: list[dict[str, Any]], completions: list[str]) -> list[bool]:
    from safeladder.verifiers import build_verifier

    v = build_verifier({"type": "math_answer"})
    try:
        res = v.score(
            [
                {"prompt": r["prompt"], "completion": c, "reference": r["reference"]}
                for r, c in zip(rows, completions, strict=True)
            ]
        )
    finally:
        v.close()
    return [bool(s == 1.0) for s in res.scores]


def run_methods(model_dir: Path, rows: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    from safeladder.guidance import (
        BestOfNConfig,
        GuidedConfig,
        HFGenerator,
        SamplingConfig,
        StepConfig,
        VoteConfig,
        best_of_n,
        guided_search,
        vote,
    )

    prompts = [{"prompt": r["prompt"], "reference": r["reference"]} for r in rows]
    greedy = HFGenerator(str(model_dir), SamplingConfig(temperature=0.0))
    sampler = HFGenerator(str(model_dir), SamplingConfig(temperature=TEMPERATURE))
    reward = arith_reward()
    # Warm-up: one small call of each kind (allocations, tokenizer caches).
    best_of_n(sampler, reward, prompts[:2], BestOfNConfig(n=2), max_new_tokens=8)
    records: list[dict[str, Any]] = []

    def timed(name: str, gen: Any, fn: Any) -> list[Any]:
        before = gen.tokens_generated
        t0 = time.perf_counter()
        traces = fn()
        secs = time.perf_counter() - t0
        tokens = gen.tokens_generated - before
        ok = correct(rows, [t.completion for t in traces])
        scored = sum(len(t.candidates) + sum(len(s.candidates) for s in t.steps) for t in traces)
        rec: dict[str, Any] = {
            "dataset": dataset,
            "method": name,
            "problems": len(rows),
            "accuracy": round(sum(ok) / len(ok), 4),
            "correct": sum(ok),
            "seconds": round(secs, 3),
            "generated_tokens": tokens,
            "tokens_per_s": round(tokens / secs, 1),
            "candidates_scored": scored,
            "candidates_per_s": round(scored / secs, 1),
            "fallbacks": sum(t.fallback for t in traces),
        }
        records.append(rec)
        return traces

    timed(
        "greedy",
        greedy,
        lambda: best_of_n(
            greedy, reward, prompts, BestOfNConfig(n=1), max_new_tokens=MAX_NEW_TOKENS, seed=SEED
        ),
    )
    timed(
        "sample@1",
        sampler,
        lambda: best_of_n(
            sampler, reward, prompts, BestOfNConfig(n=1), max_new_tokens=MAX_NEW_TOKENS, seed=SEED
        ),
    )
    bon = timed(
        f"best_of_{N}",
        sampler,
        lambda: best_of_n(
            sampler, reward, prompts, BestOfNConfig(n=N), max_new_tokens=MAX_NEW_TOKENS, seed=SEED
        ),
    )
    for beams, cands in [(BEAMS, CANDIDATES), *GUIDED_EXTRA]:
        guided_cfg = GuidedConfig(
            beams=beams,
            candidates=cands,
            max_steps=MAX_STEPS,
            step=StepConfig(separator="\n\n", max_tokens=STEP_TOKENS),
        )
        timed(
            f"guided_b{beams}k{cands}",
            sampler,
            lambda cfg=guided_cfg: guided_search(
                sampler, reward, prompts, cfg, max_new_tokens=MAX_NEW_TOKENS, seed=SEED
            ),
        )
    voted = timed(
        f"vote_{N}",
        sampler,
        lambda: vote(
            sampler,
            prompts,
            VoteConfig(n=N, answer="math"),
            max_new_tokens=MAX_NEW_TOKENS,
            seed=SEED,
        ),
    )
    records[-1]["agrees_with_majority"] = round(
        sum(bool(t.agrees_with_majority) for t in voted) / len(voted), 4
    )
    records[-1]["note"] = "the model states no confidence, so the weighted vote is a majority vote"
    # Oracle: any of best-of-N's samples correct (the ceiling of any selection rule).
    flat_rows = [r for r, t in zip(rows, bon, strict=True) for _ in t.candidates]
    flat = correct(flat_rows, [c.text for t in bon for c in t.candidates])
    any_ok, k = [], 0
    for t in bon:
        any_ok.append(any(flat[k : k + len(t.candidates)]))
        k += len(t.candidates)
    records.append(
        {
            "dataset": dataset,
            "method": f"oracle@{N}",
            "problems": len(rows),
            "accuracy": round(sum(any_ok) / len(any_ok), 4),
            "correct": sum(any_ok),
            "mean_sample_accuracy": round(sum(flat) / len(flat), 4),
        }
    )
    base = next(r for r in records if r["method"] == f"best_of_{N}")
    for r in records:
        if "seconds" in r and r is not base:
            r["ratio_tokens_vs_best_of_n"] = round(
                r["generated_tokens"] / base["generated_tokens"], 3
            )
            r["ratio_tokens_per_s_vs_best_of_n"] = round(
                r["tokens_per_s"] / base["tokens_per_s"], 3
            )
    reward.close()
    return records


def print_table(title: str, records: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    cols = [
        "method",
        "accuracy",
        "correct",
        "seconds",
        "generated_tokens",
        "tokens_per_s",
        "candidates_per_s",
        "ratio_tokens_vs_best_of_n",
    ]
    print(" | ".join(f"{c:>16}" for c in cols))
    for r in records:
        print(" | ".join(f"{r.get(c, '')!s:>16}" for c in cols))


def gsm8k_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    with gzip.open(DATA / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            rows.append({"prompt": f"Q: {r['question']}\nA: ", "reference": r["answer"]})
            if len(rows) >= n:
                break
    return rows


def main() -> None:
    global TRAIN_STEPS, EVAL_PROBLEMS, GSM8K_PROBLEMS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 1 minute)")
    ap.add_argument(
        "--no-save", action="store_true", help="do not append to results/guidance.jsonl"
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append to")
    ap.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="keep the trained LM here and reuse it when it is already there (default: a temp dir)",
    )
    args = ap.parse_args()
    if args.quick:
        TRAIN_STEPS, EVAL_PROBLEMS, GSM8K_PROBLEMS = (
            QUICK[k] for k in ("TRAIN_STEPS", "EVAL_PROBLEMS", "GSM8K_PROBLEMS")
        )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import bench_env
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    torch.set_num_threads(THREADS)
    env = {**bench_env.environment(("torch", "transformers")), "torch_threads": THREADS}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-guidance-") as tmp:
        model_dir = args.model_dir or Path(tmp)
        info = model_dir / "bench_train.json"
        if info.is_file():
            train = json.loads(info.read_text(encoding="utf-8"))
            print(f"reusing the tiny LM in {model_dir}: {train}")
        else:
            print(f"training the tiny LM ({TRAIN_STEPS} steps)...")
            model_dir.mkdir(parents=True, exist_ok=True)
            train = train_tiny_lm(model_dir, TRAIN_STEPS, SEED)
            info.write_text(json.dumps(train), encoding="utf-8")
            print(f"  {train}")
        rng = random.Random(SEED + 1)  # held out: another stream than the training corpus
        synth = [make_problem(rng) for _ in range(EVAL_PROBLEMS)]
        records = run_methods(model_dir, synth, "synthetic_arithmetic")
        print_table(f"synthetic arithmetic, {EVAL_PROBLEMS} held-out problems", records)
        gsm = run_methods(model_dir, gsm8k_rows(GSM8K_PROBLEMS), "gsm8k_train_first_rows")
        print_table(
            f"GSM8K (first {GSM8K_PROBLEMS} train questions; the tiny LM never saw GSM8K)", gsm
        )
        records += gsm
    knobs = {
        "n": N, "beams": BEAMS, "candidates": CANDIDATES, "guided_extra": GUIDED_EXTRA,
        "max_steps": MAX_STEPS,
        "max_new_tokens": MAX_NEW_TOKENS, "step_tokens": STEP_TOKENS, "temperature": TEMPERATURE,
        "model": MODEL, "seed": SEED,
    }  # fmt: skip
    for r in records:
        r.update({"bench": "guidance", "train": train, "knobs": knobs, **env})
        r["model_note"] = "tiny Qwen2 trained here on synthetic arithmetic (not a pretrained LM)"
        if args.quick:
            r["quick"] = True
    if not args.no_save:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, default=str) + "\n")
        print(f"\n{len(records)} lines appended to {args.results}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
