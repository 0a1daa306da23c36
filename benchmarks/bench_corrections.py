"""A memory of corrections: held-out accuracy of two tiny policies with retrieval off vs on, and
search latency of the correction store at 100k records.

Quality. Two policies, each answering SEED_PROBLEMS problems *of its own training corpus*
greedily; every wrong answer becomes a stored correction in that policy's own store (prompt, the
policy's wrong solution, the gold solution, tagged with the problem kind):

- ``plain``: the tiny arithmetic policy of ``bench_guidance.py`` (the demo policy's recipe trained
  for TRAIN_STEPS); it only ever saw contexts that start with its one problem;
- ``context``: the same recipe and budget (``correction_policy.py``), but CONTEXT_SHARE of its
  training examples are preceded by one or two corrections of *other* training problems in the
  exact injected formats below (MiniLM-nearest problems, synthetic wrong solutions; in
  CONTEXT_RELEVANT of the blocks the first correction shows the problem's own first step), so it
  learns to read past, and where useful use, a correction block. Held-out problems are never seen.

Then, on EVAL_PROBLEMS held-out problems of the same kinds (another seed, none identical to a
training prompt), accuracy (``math_answer`` against the reference) with:

- ``greedy``: no retrieval;
- ``greedy+corr``: the nearest correction (top_k, min_similarity) injected in the documented
  default format (``safeladder.guidance.corrections``);
- ``greedy+corr(fewshot)``: the same correction in the policy's own format (``Q: ... A:
  <corrected>``), a template a user can set (``CorrectionsConfig.template``);
- ``greedy+oracle`` / ``greedy+oracle(fewshot)``: a control, not retrieval: a correction of a
  training problem whose solution starts with the held-out problem's own first step (what a
  perfect retriever over a perfect store would show);
- ``bon``: best-of-N under the ``arith_check`` process reward (never sees the reference);
- ``bon+corr``, ``bon+corr(fewshot)``, ``bon+oracle(fewshot)``: the same with a correction;
- ``bon+repeats``: best-of-N whose reward adds the ``repeats_correction`` verifier (weight
  REPEATS_WEIGHT) to ``arith_check``: retrieval used as a verifier instead of in the prompt.

Each row also counts the shown corrections of the problem's kind and those showing its first
step; the seed line counts held-out problems whose first step is in *some* stored correction.

Latency. A store of LATENCY_RECORDS synthetic random unit vectors (dim 384, MiniLM's width;
inserted through ``add_many`` with a random encoder): insert time, file size, first search
(loads the matrix from SQLite), then median / p95 of single-query and 64-query searches.

Measured (2 CPUs shared with a test run, one run, 2026-12-05, 341 s in all including both
trainings; 200 held-out problems, so ±0.03 is one standard error):

- plain (252 corrections): greedy 0.225 → 0.015 default / 0.040 few-shot; best-of-8 0.435 →
  0.020 / 0.025; oracle 0.035 / 0.085; best-of-8 with ``repeats_correction`` 0.420. (The
  2026-12-04 run, with a copy of this policy trained separately from the same recipe, gave
  greedy 0.265 and best-of-8 0.475; the cause of the difference was not investigated.)
- context (300 corrections): greedy 0.185 → 0.110 default / 0.140 few-shot; best-of-8 0.390 →
  0.340 / 0.320; oracle greedy 0.135 / 0.205, best-of-8 0.355; ``repeats_correction`` 0.345.

Training with correction blocks makes the policy *tolerate* them (greedy keeps 0.140 of 0.185
instead of 0.040 of 0.225) at the price of a weaker bare policy (0.185 vs 0.225), but retrieval
still does not help it: it loses 0.045-0.075 greedy and 0.05-0.07 best-of-8. Two causes, both
visible in the counts. (1) Retrieval finds nothing useful: of 200 shown corrections 147 are of
the problem's kind and 2 show its first step, although 76 held-out problems have their first
step in some stored correction: MiniLM ranks by names and items, not numbers. (2) Even the
oracle correction, which shows the answer's first step, helps by at most +0.02 (few-shot, within
noise) and hurts in the default format and under best-of-8 (0.355): at this budget (450 steps,
0.4 M parameters) the policy learns to read past a block, not to copy from it
(CONTEXT_RELEVANT 0.9 did no better in a trial run). So this
harness cannot show a gain; a number-aware retriever and a policy able to copy from context
(any instruction-tuned LM) are what the mechanism needs. Per-kind figures are in the table and
the JSON lines. 100k records: one query 6-22 ms median (exact numpy), 64 queries 44-193 ms,
first search after opening 0.25-0.8 s (matrix load), 458 MB file (three 384-d float32 vectors
per row).

Results: a table on stdout and one JSON line per row (``policy``, ``method``) appended to
``benchmarks/results/corrections.jsonl``.

    python benchmarks/bench_corrections.py                   # ~6-10 minutes on 2 CPUs
    python benchmarks/bench_corrections.py --policy context  # one policy only
    python benchmarks/bench_corrections.py --quick           # smoke run (~1 minute; 20 s once trained)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# --- knobs ----------------------------------------------------------------------------------
SEED = 0
TRAIN_STEPS = 450  # as bench_guidance.py: the policy is right only sometimes
SEED_PROBLEMS = 400  # training-corpus problems the policy answers to find its mistakes
EVAL_PROBLEMS = 200  # held-out problems
TOP_K = 1  # corrections injected per prompt (the tiny policy's context is short)
MIN_SIMILARITY = 0.6
N = 8  # best-of-N samples
TEMPERATURE = 0.8
MAX_NEW_TOKENS = 48
REPEATS_WEIGHT = 1.0
LATENCY_RECORDS = 100_000
LATENCY_DIM = 384
LATENCY_QUERIES = 50
CONTEXT_SHARE = 0.5  # context policy: training examples preceded by a correction block
CONTEXT_POOL = 4000  # context policy: training problems that get blocks (neighbours among them)
CONTEXT_RELEVANT = 0.5  # context policy: blocks led by a problem with the same first equation
THREADS = 1
QUICK = {
    "TRAIN_STEPS": 120,
    "SEED_PROBLEMS": 80,
    "EVAL_PROBLEMS": 24,
    "LATENCY_RECORDS": 5000,
    "CONTEXT_POOL": 300,
}

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "corrections.jsonl"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from safeladder.guidance.demo_policy import Recipe, make_problem  # noqa: E402

MODEL: dict[str, int] = {
    "hidden_size": 96,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
}


def reward(store: Path | None = None) -> Any:
    """``arith_check`` (the demo's process reward), plus ``repeats_correction`` with a store."""
    from safeladder.rewards import Reward, RewardConfig

    terms: list[dict[str, Any]] = [
        {
            "name": "arith",
            "verifier": {
                "type": "custom",
                "target": "safeladder.guidance.demo_policy:arith_check",
            },
        }
    ]
    if store is not None:
        terms.append(
            {
                "name": "repeats",
                "weight": REPEATS_WEIGHT,
                "verifier": {
                    "type": "repeats_correction",
                    "store": str(store),
                    "top_k": TOP_K,
                    "min_prompt_similarity": MIN_SIMILARITY,
                },
            }
        )
    return Reward(RewardConfig.model_validate({"name": "bench_corrections", "terms": terms}))


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


class RandomEncoder:
    """Random unit vectors (one per text, seeded): the latency store needs no real encoder."""

    encoder = "bench:random"
    encoder_name = "random"
    fingerprint = "bench-random-384"

    def __init__(self, dim: int, seed: int = 0):
        self.dim = dim
        self.rng = np.random.default_rng(seed)

    def encode(self, texts: Any, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, np.zeros(len(texts), dtype=bool)


def latency(records: int, dim: int) -> dict[str, Any]:
    from safeladder.corrections import CorrectionStore

    enc = RandomEncoder(dim)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.db"
        store = CorrectionStore(path, embedder=enc)
        rows = (
            {"prompt": f"synthetic prompt {i}", "wrong": f"w{i}", "corrected": f"c{i}"}
            for i in range(records)
        )
        t0 = time.perf_counter()
        store.add_many(rows, batch_size=5000)
        insert_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        q1 = enc.encode(["q"], True)[0]
        t0 = time.perf_counter()
        store.search_vectors(q1, 3)
        first_ms = (time.perf_counter() - t0) * 1000
        singles, batches = [], []
        for _ in range(LATENCY_QUERIES):
            q = enc.encode(["q"], True)[0]
            t0 = time.perf_counter()
            store.search_vectors(q, 3)
            singles.append((time.perf_counter() - t0) * 1000)
            qb = enc.encode(["q"] * 64, True)[0]
            t0 = time.perf_counter()
            store.search_vectors(qb, 3)
            batches.append((time.perf_counter() - t0) * 1000)
        store.close()
        reopened = CorrectionStore(path, embedder=enc)
        t0 = time.perf_counter()
        reopened.search_vectors(q1, 3)
        reopen_ms = (time.perf_counter() - t0) * 1000
        reopened.close()
    return {
        "records": records,
        "dim": dim,
        "insert_s": round(insert_s, 2),
        "file_mb": round(size_mb, 1),
        "first_search_ms": round(first_ms, 1),
        "reopen_first_search_ms": round(reopen_ms, 1),
        "search_1_median_ms": round(statistics.median(singles), 2),
        "search_1_p95_ms": round(float(np.percentile(singles, 95)), 2),
        "search_64_median_ms": round(statistics.median(batches), 2),
    }


class OracleMemory:
    """Control, not retrieval: shows each held-out problem a correction of a *training* problem
    whose gold solution starts with the same equation (of the same kind where one is; wrong
    solution: a perturbed gold one), in
    ``config``'s format; a problem with no such training problem gets none. It answers what a
    retriever that found the one useful correction would give (``prepare`` as
    ``CorrectionMemory``)."""

    def __init__(self, corpus: list[dict[str, Any]], held: list[dict[str, Any]], config: Any):
        from correction_policy import by_equation, first_equation

        index = by_equation(corpus)
        self.config = config
        self.found: dict[str, dict[str, Any]] = {}
        for h in held:
            match = index.get(first_equation(h), [])
            match = [i for i in match if corpus[i]["kind"] == h["kind"]] or match
            if match:
                self.found[h["prompt"]] = corpus[match[0]]

    def prepare(self, rows: Any) -> tuple[list[Any], list[list[Any]]]:
        from correction_policy import with_block

        from safeladder.guidance.trace import UsedCorrection

        prompts: list[Any] = []
        used: list[list[Any]] = []
        for row in rows:
            found = self.found.get(row.prompt)
            if found is None:
                prompts.append(row.prompt)
                used.append([])
            else:
                rng = random.Random(row.prompt)
                prompts.append(with_block({"prompt": row.prompt}, [found], self.config, rng))
                used.append([UsedCorrection(id="oracle", similarity=1.0)])
        return prompts, used

    def close(self) -> None:
        pass


def evaluate(
    policy: str,
    model_dir: Path,
    corpus: list[dict[str, Any]],
    seed_rows: list[dict[str, Any]],
    held: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Seed a store with ``model_dir``'s wrong greedy answers on ``seed_rows``, then measure
    held-out accuracy with retrieval off / on (and the ``OracleMemory`` control drawn from
    ``corpus``). Returns (one record per method, seed info)."""
    from correction_policy import first_equation

    from safeladder.corrections import CorrectionStore
    from safeladder.guidance import (
        BestOfNConfig,
        CorrectionMemory,
        CorrectionsConfig,
        HFGenerator,
        SamplingConfig,
        best_of_n,
    )

    greedy = HFGenerator(str(model_dir), SamplingConfig(temperature=0.0))
    sampler = HFGenerator(str(model_dir), SamplingConfig(temperature=TEMPERATURE, seed=SEED))
    plain = reward()
    one = BestOfNConfig(n=1)

    def run(gen: Any, rows: list[dict[str, Any]], cfg: Any, rw: Any, memory: Any) -> Any:
        prompts = [{"prompt": r["prompt"], "reference": r["reference"]} for r in rows]
        t0 = time.perf_counter()
        traces = best_of_n(
            gen, rw, prompts, cfg, max_new_tokens=MAX_NEW_TOKENS, seed=SEED, corrections=memory
        )
        return traces, time.perf_counter() - t0

    # 1. Find the policy's mistakes on its training problems; store them as corrections.
    traces, _ = run(greedy, seed_rows, one, plain, None)
    ok = correct(seed_rows, [t.completion for t in traces])
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-corrections-{policy}-"))
    store_path = tmp / "corrections.db"
    wrong = [
        {
            "prompt": r["prompt"],
            "wrong": t.completion,
            "corrected": r["solution"],
            "note": f"the answer is {r['reference']}",
            "tags": [r["kind"]],
            "author": "bench_corrections",
        }
        for r, t, good in zip(seed_rows, traces, ok, strict=True)
        if not good and t.completion.strip()
    ]
    with CorrectionStore(store_path) as store:
        t0 = time.perf_counter()
        store.add_many(wrong, on_duplicate="skip")
        embed_s = time.perf_counter() - t0
        stored = len(store)
        lines = {line for c in store.iter() for line in c.corrected.split("\n")}
    coverage = sum(first_equation(h) in lines for h in held)
    kinds = {k: sum(1 for w in wrong if w["tags"] == [k]) for k in ("add", "sub", "mul", "add_sub")}
    print(
        f"[{policy}] seed: {len(seed_rows)} training problems, greedy accuracy "
        f"{sum(ok) / len(ok):.3f}; {stored} corrections stored ({embed_s:.1f} s to embed), "
        f"by kind {kinds}; {coverage}/{len(held)} held-out problems have their first step in "
        "some stored correction"
    )

    default_cfg = CorrectionsConfig(
        store=str(store_path), top_k=TOP_K, min_similarity=MIN_SIMILARITY
    )
    fewshot_cfg = default_cfg.model_copy(
        update={"header": "", "template": "{prompt}{corrected}", "separator": "\n\n"}
    )
    records: list[dict[str, Any]] = []

    def measure(name: str, gen: Any, cfg: Any, rw: Any, corr: Any) -> None:
        memory = CorrectionMemory(corr) if isinstance(corr, CorrectionsConfig) else corr
        same_kind = relevant = 0  # of the first correction shown
        try:
            traces, secs = run(gen, held, cfg, rw, memory)
            for h, t in zip(held, traces, strict=True):
                if not t.corrections:
                    continue
                if isinstance(memory, OracleMemory):
                    shown = memory.found[h["prompt"]]
                    kind, text = shown["kind"], shown["solution"]
                else:
                    c = memory.store.get(t.corrections[0].id)
                    kind, text = (c.tags[0] if c.tags else ""), c.corrected
                same_kind += kind == h["kind"]
                relevant += first_equation(h) in text.split("\n")
        finally:
            if memory is not None:
                memory.close()
        good = correct(held, [t.completion for t in traces])
        by_kind: dict[str, list[bool]] = {}
        for r, g in zip(held, good, strict=True):
            by_kind.setdefault(r["kind"], []).append(g)
        with_corr = [t for t in traces if t.corrections]
        # rows where the repeats_correction term scored the chosen completion (not abstained)
        repeats_scored = sum(
            t.chosen is not None and t.candidates[t.chosen].terms.get("repeats") is not None
            for t in traces
        )
        rec = {
            "policy": policy,
            "method": name,
            "problems": len(held),
            "accuracy": round(sum(good) / len(good), 4),
            "correct": sum(good),
            "by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
            "prompts_with_correction": len(with_corr),
            "repeats_scored": repeats_scored,
            "shown_same_kind": same_kind,
            "shown_relevant": relevant,
            "mean_similarity": round(
                float(np.mean([t.corrections[0].similarity for t in with_corr])), 3
            )
            if with_corr
            else None,
            "seconds": round(secs, 1),
        }
        records.append(rec)
        print(
            f"  [{policy}] {name}: {rec['accuracy']:.3f} ({rec['correct']}/{len(held)}) "
            f"in {secs:.1f} s"
        )

    bon = BestOfNConfig(n=N)
    measure("greedy", greedy, one, plain, None)
    measure("greedy+corr", greedy, one, plain, default_cfg)
    measure("greedy+corr(fewshot)", greedy, one, plain, fewshot_cfg)
    measure("greedy+oracle", greedy, one, plain, OracleMemory(corpus, held, default_cfg))
    measure("greedy+oracle(fewshot)", greedy, one, plain, OracleMemory(corpus, held, fewshot_cfg))
    measure(f"bon{N}", sampler, bon, plain, None)
    measure(f"bon{N}+corr", sampler, bon, plain, default_cfg)
    measure(f"bon{N}+corr(fewshot)", sampler, bon, plain, fewshot_cfg)
    measure(f"bon{N}+oracle(fewshot)", sampler, bon, plain, OracleMemory(corpus, held, fewshot_cfg))
    with contextlib.closing(reward(store_path)) as with_repeats:
        measure(f"bon{N}+repeats", sampler, bon, with_repeats, None)
    plain.close()
    shutil.rmtree(tmp, ignore_errors=True)
    seed_info = {
        "seed_problems": len(seed_rows),
        "seed_greedy_accuracy": round(sum(ok) / len(ok), 4),
        "corrections": stored,
        "by_kind": kinds,
        "embed_seconds": round(embed_s, 1),
        "heldout_first_step_in_store": coverage,
    }
    return records, seed_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (small sizes)")
    ap.add_argument(
        "--policy",
        choices=("plain", "context", "both"),
        default="both",
        help="the demo policy (plain), the one trained with correction blocks (context), or both",
    )
    ap.add_argument("--no-save", action="store_true", help="do not append to the results file")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append to")
    args = ap.parse_args()
    if args.quick:
        globals().update(QUICK)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(THREADS)
    import bench_env
    import correction_policy

    from safeladder.guidance.demo_policy import demo_policy

    t_start = time.perf_counter()
    env = {**bench_env.environment(("torch", "transformers")), "torch_threads": THREADS}
    knobs = {
        k: globals()[k]
        for k in (
            "TRAIN_STEPS", "SEED_PROBLEMS", "EVAL_PROBLEMS", "TOP_K", "MIN_SIMILARITY", "N",
            "TEMPERATURE", "MAX_NEW_TOKENS", "REPEATS_WEIGHT", "LATENCY_RECORDS",
            "CONTEXT_SHARE", "CONTEXT_POOL", "CONTEXT_RELEVANT",
        )
    }  # fmt: skip
    recipe = Recipe(steps=TRAIN_STEPS, batch=32, lr=3e-3, seed=SEED, model=dict(MODEL))

    # The policies' training corpus (same seed and order as train_demo_policy draws it).
    rng = random.Random(recipe.seed)
    corpus = [make_problem(rng) for _ in range(recipe.corpus)]
    seen = {p["prompt"] for p in corpus}
    seed_rows = corpus[:SEED_PROBLEMS]
    held_rng = random.Random(SEED + 1)
    held: list[dict[str, Any]] = []
    while len(held) < EVAL_PROBLEMS:
        p = make_problem(held_rng)
        if p["prompt"] not in seen:
            held.append(p)

    records: list[dict[str, Any]] = []
    if args.policy in ("plain", "both"):
        model_dir = demo_policy(recipe=recipe, log=print)
        recs, seed_info = evaluate("plain", model_dir, corpus, seed_rows, held)
        records += [{**r, "seed": seed_info} for r in recs]
    if args.policy in ("context", "both"):
        crecipe = correction_policy.Recipe(
            steps=TRAIN_STEPS,
            batch=recipe.batch,
            lr=recipe.lr,
            seed=SEED,
            corpus=recipe.corpus,
            share=CONTEXT_SHARE,
            pool=CONTEXT_POOL,
            relevant=CONTEXT_RELEVANT,
            model=dict(MODEL),
        )
        cdir = correction_policy.context_policy(crecipe, log=print)
        train = correction_policy.training_info(cdir)
        recs, seed_info = evaluate("context", cdir, corpus, seed_rows, held)
        records += [{**r, "seed": seed_info, "train": train} for r in recs]
    lat = latency(LATENCY_RECORDS, LATENCY_DIM)
    total_s = time.perf_counter() - t_start
    print()
    print(
        "| policy | method | held-out accuracy | add | sub | mul | add_sub | prompts with a "
        "correction injected (same kind / shows the first step) | rows repeats_correction "
        "scored |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in records:
        k = r["by_kind"]
        print(
            f"| {r['policy']} | {r['method']} | {r['accuracy']:.3f} ({r['correct']}/{r['problems']}) | "
            + " | ".join(f"{k.get(x, float('nan')):.2f}" for x in ("add", "sub", "mul", "add_sub"))
            + f" | {r['prompts_with_correction']} ({r['shown_same_kind']} / "
            f"{r['shown_relevant']}) | {r['repeats_scored']} |"
        )
    print()
    print(
        "| records | insert s | file MB | first search ms | reopen+search ms | 1 query median / p95 ms | 64 queries median ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {lat['records']} | {lat['insert_s']} | {lat['file_mb']} | {lat['first_search_ms']} | "
        f"{lat['reopen_first_search_ms']} | {lat['search_1_median_ms']} / {lat['search_1_p95_ms']} | "
        f"{lat['search_64_median_ms']} |"
    )
    print(f"\ntotal {total_s:.0f} s")
    if not args.no_save:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a", encoding="utf-8") as fh:
            for r in [*records, {"method": "latency", **lat, "total_seconds": round(total_s, 1)}]:
                line = {"bench": "corrections", **r, "knobs": knobs, **env}
                fh.write(json.dumps(line, default=str) + "\n")
        print(f"appended {len(records) + 1} lines to {args.results}")


if __name__ == "__main__":
    main()
