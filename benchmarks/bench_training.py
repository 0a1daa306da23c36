"""Train the shipped defaults (`safety`, `value`) from their recipes; report time and metrics.

For each recipe (``configs/train/safety.yaml``, ``configs/train/value.yaml``):

- **train** (``--train``): runs the recipe end to end (data → LoRA fine-tune → calibrate →
  report → self-check) into ``--out-root`` and records wall time, device and the dev-split
  metrics next to the TF-IDF + logistic-regression baseline the runner trains on the same split.
  ``--max-steps N`` stops training after N optimizer steps: a throughput probe on CPU, where the
  full safety recipe takes on the order of an hour (samples/s and the full-run estimate are
  recorded, clearly labelled as an estimate).
- **held-out** (always, safety only): the verifier (the shipped one, or the one just trained)
  on GPTFuzz's upstream ``evaluate`` split (1,540 human-labelled responses; never used in
  training) at the threshold chosen on the dev split, next to (a) TF-IDF + LR trained on the
  recipe's own training split with its threshold chosen on the same dev split, and (b) the
  ``refusal`` rule verifier ("flag anything that is not a refusal").
- **shift matrix** (with the held-out step; ``--no-matrix`` skips it): the same three models on
  every safety shift column of ``safeladder.training.shift_sets`` (GPTFuzz ``evaluate``,
  JailbreakBench by attack, AdvBench / StrongREJECT pairs, ToxiGen) and their false-flag rate
  on benign answers, at the same thresholds: the table and record of
  ``safeladder eval VERIFIER --metrics matrix`` (``eval_matrix``); columns the safety recipe
  trained on are marked (``seen`` / ``source``). ``--matrix-limit N`` samples N rows per column.

One JSON line per measurement is appended to ``benchmarks/results/training.jsonl`` with the
environment record.

    python benchmarks/bench_training.py                       # held-out table, shipped models
    python benchmarks/bench_training.py --train               # retrain both (GPU: ~2 min)
    python benchmarks/bench_training.py --train --max-steps 20 --recipes safety   # CPU probe
    python benchmarks/bench_training.py --recipes safety --matrix-limit 100      # quicker matrix
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "training.jsonl"
SHARED = REPO.parent / "shared" / "data"
PROBES = REPO / "tests" / "training" / "fixtures" / "safety_behaviour_probes.jsonl"
SCARY = REPO / "configs" / "train" / "data" / "safety_benign_scary.jsonl"
METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "ece")


def _record(rec: dict[str, Any]) -> None:
    from safeladder.jsonsafe import jsonable

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    env = bench_env.environment(("torch", "transformers", "trl", "peft", "scikit-learn"))
    with RESULTS.open("a", encoding="utf-8") as fh:
        # NaN (an undefined metric) is written as null.
        fh.write(json.dumps(jsonable({"bench": "training", **rec, **env})) + "\n")


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def train(recipe: str, out_root: Path, max_steps: int | None) -> dict[str, Any]:
    """Run one recipe; returns the measurement record."""
    from safeladder.training.config import load_train_config
    from safeladder.training.runner import run_training

    overrides = [f"output_dir={out_root / recipe}"]
    if max_steps:
        overrides.append(f"train.max_steps={max_steps}")
    cfg = load_train_config(REPO / "configs" / "train" / f"{recipe}.yaml", overrides)
    t0 = time.perf_counter()
    summary = run_training(cfg, progress=False, overwrite=True)
    wall = time.perf_counter() - t0
    rec: dict[str, Any] = {
        "kind": "train",
        "recipe": recipe,
        "device": _device(),
        "wall_s": round(wall, 1),
        "train_s": round(summary.seconds, 1),
        "split": summary.split,
        "metrics": summary.metrics,
        "baseline_metrics": summary.baseline_metrics,
        "max_steps": max_steps,
        "output_dir": str(summary.output_dir),
    }
    if max_steps:
        # Training steps only: the trainer's runtime minus its dev evaluations.
        history = json.loads((summary.output_dir / "metrics.json").read_text())["history"]
        runtime = sum(h.get("train_runtime", 0.0) for h in history)
        evals = sum(h.get("eval_runtime", 0.0) for h in history)
        batch = cfg.train.batch_size * cfg.train.grad_accum
        per_s = max_steps * batch / max(runtime - evals, 1e-9)
        sequences = summary.split["train"] * (2 if recipe == "value" else 1)  # pairs: 2 forwards
        rec["train_steps_s"] = round(runtime - evals, 1)
        rec["samples_per_s"] = round(per_s, 2)
        rec["estimated_full_training_s"] = round(sequences * cfg.train.epochs / per_s, 0)
        rec["note"] = (
            "throughput probe: samples/s over the training steps only (dev evaluation excluded); "
            "the metrics are of an undertrained model"
        )
    return rec


def held_out(verifier_dir: Path, matrix: bool, matrix_limit: int | None) -> list[dict[str, Any]]:
    """Safety verifier vs TF-IDF + LR vs the refusal rule on GPTFuzz `evaluate`, and (``matrix``)
    on the safety shift matrix; the records (held-out, then one per matrix model)."""
    from safeladder import Sample, build_verifier
    from safeladder.training.baseline import tfidf_logreg_pointwise
    from safeladder.training.calibration import select_threshold
    from safeladder.training.config import load_train_config
    from safeladder.training.metrics import pointwise_metrics
    from safeladder.training.runner import _point_text, prepare_data, verifier_config
    from safeladder.training.shift_sets import load_shift_sets

    sets = (
        load_shift_sets(SHARED, SCARY, test_limit=matrix_limit, benign_limit=matrix_limit)
        if matrix
        else None
    )
    matrix_rows = sets.rows() if sets is not None else []

    with gzip.open(SHARED / "gptfuzz_labeled_responses.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [r for r in map(json.loads, fh) if r["split"] == "evaluate"]
    y = np.array([r["label"] for r in rows], dtype=np.int64)
    samples = [Sample(prompt=r["prompt"], completion=r["response"]) for r in rows]
    cal = json.loads((verifier_dir / "safeladder_calibration.json").read_text())
    t_score = float(cal["meta"]["score_threshold"])

    t0 = time.perf_counter()
    v = build_verifier(verifier_config(verifier_dir))
    p_model = 1.0 - np.asarray(v.score(samples).scores, dtype=np.float64)
    v.close()
    model_s = time.perf_counter() - t0

    cfg = load_train_config(REPO / "configs" / "train" / "safety.yaml")
    data, _, _ = prepare_data(cfg)
    texts = [_point_text(r) for r in data.train]
    labels = np.array([r.label for r in data.train], dtype=np.int64)
    dev_y = np.array([r.label for r in data.dev], dtype=np.int64)
    probes = [json.loads(line) for line in PROBES.read_text(encoding="utf-8").splitlines()]
    pv = build_verifier(verifier_config(verifier_dir))
    probe_model = 1.0 - np.asarray(
        pv.score([Sample(prompt=p["prompt"], completion=p["response"]) for p in probes]).scores,
        dtype=np.float64,
    )
    pv.close()
    t0 = time.perf_counter()
    probs = tfidf_logreg_pointwise(
        texts,
        labels,
        [_point_text(r) for r in data.dev]
        + [f"{r['prompt']}\n{r['response']}" for r in rows]
        + [f"{p['prompt']}\n{p['response']}" for p in probes]
        + [f"{r.prompt}\n{r.response}" for r in matrix_rows],
    )
    tfidf_s = time.perf_counter() - t0
    n_dev, n_rows = len(dev_y), len(rows)
    p_dev, p_tfidf = probs[:n_dev], probs[n_dev : n_dev + n_rows]
    probe_tfidf = probs[n_dev + n_rows : n_dev + n_rows + len(probes)]
    matrix_tfidf = probs[n_dev + n_rows + len(probes) :]
    t_tfidf = float(select_threshold(dev_y, p_dev, "max_f1")["threshold"])

    refusal = build_verifier("refusal")
    p_refusal = 1.0 - np.asarray(refusal.score(samples).scores, dtype=np.float64)

    cols = {
        "safety (shipped)"
        if verifier_dir.parent.name == "defaults"
        else "safety": pointwise_metrics(y, p_model, float(np.nextafter(1.0 - t_score, np.inf))),
        "tfidf+logreg (same train data)": pointwise_metrics(y, p_tfidf, t_tfidf),
        "refusal rule": pointwise_metrics(y, p_refusal, 0.5),
    }
    print(f"\nGPTFuzz `evaluate` split: {len(rows)} rows, {int(y.sum())} harmful (label 1)")
    names = list(cols)
    print(f"{'metric':<10}" + "".join(f"{n:>32}" for n in names))
    for m in (*METRICS, "threshold"):
        print(f"{m:<10}" + "".join(f"{cols[n][m]:>32.4f}" for n in names))
    behaviour = {
        "safety": _behaviour(probes, probe_model, 1.0 - t_score),
        "tfidf+logreg": _behaviour(probes, probe_tfidf, t_tfidf),
    }
    print("\nBehaviour probes (tests/training/fixtures, never trained on):")
    for name, b in behaviour.items():
        print(f"  {name:<14} " + ", ".join(f"{k} {v}" for k, v in b.items()))
    rec = {
        "kind": "held_out",
        "behaviour_probes": behaviour,
        "data": "gptfuzz evaluate split",
        "n": len(rows),
        "verifier_dir": str(verifier_dir),
        "columns": cols,
        "seconds": {
            "verifier_scoring": round(model_s, 1),
            "tfidf_fit_and_score": round(tfidf_s, 1),
        },
        "device": _device(),
    }
    if sets is None:
        return [rec]
    return [rec, *shift_matrix(verifier_dir, sets, matrix_tfidf, t_tfidf, matrix_limit)]


def shift_matrix(
    verifier_dir: Path, sets: Any, p_tfidf: np.ndarray, t_tfidf: float, limit: int | None
) -> list[dict[str, Any]]:
    """The safety verifier, TF-IDF + LR (``p_tfidf``: its P(unsafe) over ``sets.rows()``) and
    the refusal rule on every shift column; prints each table, returns one record per model."""
    from safeladder.training.eval_matrix import (
        MatrixJob,
        format_matrix,
        matrix_cells,
        matrix_record,
        run_matrix,
        training_marks,
    )
    from safeladder.training.eval_scoring import resolve_verifier

    out = []
    for spec in (str(verifier_dir), "refusal"):
        t0 = time.perf_counter()
        job = MatrixJob(spec, SHARED, SCARY, limit_per_column=limit, progress=False)
        record = run_matrix(job).record
        record["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(record)
    # TF-IDF + LR learned the safety recipe's data: the same columns are marked as for it.
    marks, run_file = training_marks(resolve_verifier(str(verifier_dir))[0])
    cells = matrix_cells(sets, p_tfidf, t_tfidf, marks)
    tfidf = matrix_record(
        "tfidf+logreg (same train data; score = P(unsafe))",
        cells,
        shared=SHARED,
        limit=limit,
        score_means=1,  # its score is P(unsafe)
        score_threshold=t_tfidf,
        threshold_source="max F1 on the recipe's dev split",
        p1_threshold=t_tfidf,
        run_file=run_file,
    )
    out.insert(1, tfidf)
    print("\nSafety shift matrix (safeladder eval VERIFIER --metrics matrix):")
    for record in out:
        print("\n" + format_matrix(record))
    return [{"kind": "shift_matrix", "device": _device(), **record} for record in out]


def _behaviour(probes: list[dict[str, Any]], p_unsafe: np.ndarray, t: float) -> dict[str, str]:
    """Counts on the hand-written probes: P(unsafe) > t flags a response."""
    kinds = [p["kind"] for p in probes]

    def sel(kind: str) -> np.ndarray:
        return np.array([p_unsafe[i] for i, k in enumerate(kinds) if k == kind])

    answered, refused = sel("benign_answer"), sel("benign_refused")
    complied, declined = sel("harmful_compliance"), sel("harmful_refused")
    return {
        "benign answers flagged": f"{int((answered > t).sum())}/{len(answered)}",
        "benign refusals ranked below the answer": f"{int((refused > answered).sum())}/{len(answered)}",
        "harmful compliance flagged": f"{int((complied > t).sum())}/{len(complied)}",
        "harmful refusals flagged": f"{int((declined > t).sum())}/{len(declined)}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", action="store_true", help="retrain the recipes first")
    ap.add_argument(
        "--recipes", nargs="+", default=["safety", "value"], choices=["safety", "value"]
    )
    ap.add_argument("--max-steps", type=int, default=None, help="throughput probe: stop early")
    ap.add_argument("--out-root", type=Path, default=None, help="where retrained runs go")
    ap.add_argument("--no-held-out", action="store_true", help="skip the held-out evaluation")
    ap.add_argument("--no-matrix", action="store_true", help="skip the safety shift matrix")
    ap.add_argument(
        "--matrix-limit", type=int, default=None, help="rows per shift column (default: all)"
    )
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"needs ../shared/data beside the checkout ({SHARED} is missing)")
    out_root = args.out_root or Path(tempfile.mkdtemp(prefix="safeladder-bench-train-"))
    safety_dir = REPO / "safeladder" / "defaults" / "safety"
    if args.train:
        for recipe in args.recipes:
            rec = train(recipe, out_root, args.max_steps)
            _record(rec)
            print(json.dumps({k: v for k, v in rec.items() if k != "metrics"}, indent=1))
            if recipe == "safety" and not args.max_steps:
                safety_dir = Path(rec["output_dir"])
    if not args.no_held_out and "safety" in args.recipes and not args.max_steps:
        for rec in held_out(safety_dir, not args.no_matrix, args.matrix_limit):
            _record(rec)


if __name__ == "__main__":
    main()
