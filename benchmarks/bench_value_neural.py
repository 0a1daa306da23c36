"""The fine-tuned `value` recipe under grouped 5-fold CV, with its learning curve (issue 13,
item 3: "if 1,312 pairs are the limit, say so with a learning curve").

``bench_value.py`` gives the cheap learners a CV figure on all 1,312 hh-rlhf harmless pairs;
the fine-tuned recipe (``configs/train/value.yaml``: MiniLM + LoRA, TRL RewardTrainer) had only
its own 262-pair dev split, where one standard error is ±3 points. This script trains that
recipe on each fold's 4/5 of the pairs and scores the held-out fifth, with the same folds as
``bench_value.py`` (``baseline.grouped_folds``, seed 0), so the figures compare pair for pair.

- View: what the model reads. ``reply`` (the reply alone, 128 tokens: the stop-23 variant, ~3
  min per fold on 2 threads) is the default; ``dialogue`` (the whole dialogue + reply, 256
  tokens, as shipped) is available; it reads twice the tokens per row (not timed here).
- Every run trains for the recipe's two epochs with no dev split, so no checkpoint is picked
  on the test fold (the shipped recipe picks its best epoch on its dev split; here the final
  model is scored).
- Learning curve: the same folds, the recipe refitted on 25 / 50 / 75 % of each training fold's
  prompts (``bench_value.learning_subset``: the same subsets as the cheap learners' curve).
- Ensemble: the fine-tuned margins and ``tfidf/resp+safety-pairs`` (``bench_value``'s best
  single cheap learner: reply TF-IDF Bradley–Terry with 1,694 extra GPTFuzz pairs), each
  divided by its RMS margin on its own training pairs, summed.

Each run's test and training margins are cached under ``out/value_neural/`` (the run is
resumable: rerun the command and finished folds are read back). One JSON line is appended to
``benchmarks/results/value_neural.jsonl``.

    python benchmarks/bench_value_neural.py                     # ~45 min on 2 CPU cores
    python benchmarks/bench_value_neural.py --fractions 1.0     # the CV figure alone, ~15 min
    python benchmarks/bench_value_neural.py --quick             # 150 pairs, 1 fold, < 2 min
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np
from bench_value import (
    FOLDS,
    SEED,
    Pairs,
    accuracy,
    learning_subset,
    load_pairs,
    safety_pairs,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "train" / "value.yaml"
CACHE = REPO / "out" / "value_neural"
RESULTS = REPO / "benchmarks" / "results" / "value_neural.jsonl"
#: view → (whether the model reads the dialogue, max tokens)
VIEWS = {"reply": (False, 128), "dialogue": (True, 256)}
THREADS = 2


def _texts(p: Pairs, with_prompt: bool) -> list[str]:
    return p.prompt if with_prompt else [""] * len(p)


def train_fold(
    p: Pairs,
    tr: np.ndarray,
    te: np.ndarray,
    view: str,
    tag: str,
    extra: tuple[list[str], list[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Train the recipe on pairs ``tr`` (plus the reply-only ``extra`` (chosen, rejected)
    pairs); (test margins ``(len(te),)``, margins of the ``tr`` pairs ``(len(tr),)``,
    seconds). Cached under ``CACHE/tag``."""
    cache = CACHE / f"{tag}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["test"], z["train"], float(z["seconds"])
    from safeladder import Sample, build_verifier
    from safeladder.training.common import PairRecord, TrainData
    from safeladder.training.config import load_train_config
    from safeladder.training.pairwise import PairwiseTrainConfig, train

    with_prompt, max_len = VIEWS[view]
    out = CACHE / tag
    cfg = load_train_config(
        RECIPE,
        [
            f"train.max_length={max_len}",
            f"train.num_threads={THREADS}",
            f"output_dir={out}",
            "normalize=null",
            "squash=none",
        ],
    )
    assert isinstance(cfg, PairwiseTrainConfig)
    prompts = _texts(p, with_prompt)
    rows = [
        PairRecord(
            row=int(i),
            source="hh",
            prompt=prompts[int(i)],
            chosen=p.chosen[int(i)],
            rejected=p.rejected[int(i)],
            group=p.group[int(i)],
        )
        for i in tr
    ]
    if extra is not None:
        if with_prompt:
            raise SystemExit(
                "--safety-pairs: the GPTFuzz pairs carry no dialogue; use --view reply"
            )
        rows += [
            PairRecord(row=-1 - k, source="gptfuzz", prompt="", chosen=c, rejected=r, group=f"g{k}")
            for k, (c, r) in enumerate(zip(*extra, strict=True))
        ]
    t0 = time.perf_counter()
    outcome = train(cfg, TrainData(train=rows, dev=[]), out, progress=False)
    seconds = time.perf_counter() - t0
    v = build_verifier(
        {
            **outcome.verifier,
            "path": str(out),
            "runtime": {"num_threads": THREADS, "device": "cpu"},
        }
    )

    def margins(idx: np.ndarray) -> np.ndarray:
        q = [prompts[int(i)] for i in idx]
        c = [Sample(prompt=a, completion=p.chosen[int(i)]) for a, i in zip(q, idx, strict=True)]
        r = [Sample(prompt=a, completion=p.rejected[int(i)]) for a, i in zip(q, idx, strict=True)]
        s = np.asarray(v.score(c + r).scores, dtype=np.float64)
        return s[: len(idx)] - s[len(idx) :]

    test, train_m = margins(te), margins(tr)
    v.close()
    np.savez(cache, test=test, train=train_m, seconds=seconds)
    return test, train_m, seconds


def tfidf_fold(
    p: Pairs, tr: np.ndarray, te: np.ndarray, extra: tuple[list[str], list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """``bench_value``'s ``tfidf/resp+safety-pairs``: (test margins, training margins)."""
    from safeladder.training.baseline import tfidf_logreg_pairwise

    idx = np.concatenate([te, tr])
    c, r = tfidf_logreg_pairwise(
        [p.chosen[int(i)] for i in tr] + extra[0],
        [p.rejected[int(i)] for i in tr] + extra[1],
        [p.chosen[int(i)] for i in idx],
        [p.rejected[int(i)] for i in idx],
        seed=SEED,
    )
    m = c - r
    return m[: len(te)], m[len(te) :]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) or 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--view", choices=sorted(VIEWS), default="reply")
    ap.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[1.0, 0.5, 0.25, 0.75],
        help="training-fold shares, run in this order (1.0 = the CV figure)",
    )
    ap.add_argument(
        "--safety-pairs",
        action="store_true",
        help="also train the fine-tuned model on the 1,694 GPTFuzz pairs (reply view only)",
    )
    ap.add_argument("--quick", action="store_true", help="150 pairs, one fold, not recorded")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args()
    from bench_value import DATA

    if not DATA.is_file():
        sys.exit(f"needs ../shared/data beside the checkout ({DATA} is missing)")
    from safeladder.training.baseline import grouped_folds

    t_start = time.perf_counter()
    p, _ = load_pairs(args.quick)
    folds = grouped_folds(p.group, seed=SEED, k=FOLDS)
    extra = safety_pairs()
    run_folds = range(1 if args.quick else FOLDS)
    prefix = ("quick-" if args.quick else "") + args.view + ("+sp" if args.safety_pairs else "")
    print(
        f"{len(p)} pairs, {len(set(p.group))} prompts; view {args.view}"
        + (f" + {len(extra[0])} GPTFuzz pairs in training" if args.safety_pairs else ""),
        flush=True,
    )
    table: dict[float, dict[str, Any]] = {}
    for frac in args.fractions:
        accs, tf_accs, ens_accs, secs, n_train = [], [], [], [], []
        for f in run_folds:
            tr_all, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            tr = learning_subset(p, tr_all, frac)
            test, train_m, s = train_fold(
                p,
                tr,
                te,
                args.view,
                f"{prefix}-{frac:g}-fold{f}",
                extra if args.safety_pairs else None,
            )
            tf_test, tf_train = tfidf_fold(p, tr, te, extra)
            ens = test / _rms(train_m) + tf_test / _rms(tf_train)
            accs.append(accuracy(test))
            tf_accs.append(accuracy(tf_test))
            ens_accs.append(accuracy(ens))
            secs.append(s)
            n_train.append(len(tr))
            print(
                f"  {frac:g} fold {f}: {len(tr)} train pairs, neural {accs[-1]:.3f}, "
                f"tfidf {tf_accs[-1]:.3f}, sum {ens_accs[-1]:.3f} ({s:.0f} s)",
                flush=True,
            )

        def stats(a: list[float]) -> dict[str, Any]:
            sd = float(np.std(a, ddof=1)) if len(a) > 1 else float("nan")
            return {"fold_acc": [round(x, 4) for x in a], "mean": float(np.mean(a)), "sd": sd}

        table[frac] = {
            "train_pairs": round(float(np.mean(n_train))),
            "neural": stats(accs),
            "tfidf/resp+safety-pairs": stats(tf_accs),
            "sum": stats(ens_accs),
            "train_seconds": round(float(np.mean(secs)), 1),
        }
    wall = time.perf_counter() - t_start
    print(
        f"\nhh-rlhf harmless, grouped {FOLDS}-fold CV ({len(p)} pairs), view {prefix}"
        " (+sp: the fine-tuned model also trained on the GPTFuzz pairs)"
    )
    print(f"{'train pairs':>11s} {'fine-tuned':>15s} {'tfidf+safety':>15s} {'sum':>15s}")
    for frac, row in table.items():
        cells = [row[k] for k in ("neural", "tfidf/resp+safety-pairs", "sum")]
        print(
            f"{row['train_pairs']:11d} "
            + " ".join(f"{c['mean']:8.3f} ± {c['sd']:.3f}" for c in cells)
            + f"   ({frac:g}, {row['train_seconds']:.0f} s per run)"
        )
    print(f"wall time {wall:.0f} s")
    if args.quick or args.no_record:
        return
    env = bench_env.environment(("torch", "transformers", "trl", "peft", "scikit-learn"))
    knobs = {
        "recipe": str(RECIPE.relative_to(REPO)),
        "view": args.view,
        "max_length": VIEWS[args.view][1],
        "folds": FOLDS,
        "seed": SEED,
        "threads": THREADS,
        "dev_split": None,
        "safety_pairs": len(extra[0]) if args.safety_pairs else 0,
    }
    rec = {
        "bench": "value_neural",
        "rows": {f"{k:g}": v for k, v in table.items()},
        "n": len(p),
        "knobs": knobs,
        "wall_s": round(wall, 1),
        **env,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(f"appended 1 line to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
