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

One JSON line per measurement is appended to ``benchmarks/results/training.jsonl`` with the
environment record.

    python benchmarks/bench_training.py                       # held-out table, shipped models
    python benchmarks/bench_training.py --train               # retrain both (GPU: ~2 min)
    python benchmarks/bench_training.py --train --max-steps 20 --recipes safety   # CPU probe
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
METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "ece")


def _record(rec: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    env = bench_env.environment(("torch", "transformers", "trl", "peft", "scikit-learn"))
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"bench": "training", **rec, **env}) + "\n")


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


def held_out(verifier_dir: Path) -> dict[str, Any]:
    """Safety verifier vs TF-IDF + LR vs the refusal rule on GPTFuzz `evaluate`."""
    from safeladder import Sample, build_verifier
    from safeladder.training.baseline import tfidf_logreg_pointwise
    from safeladder.training.calibration import select_threshold
    from safeladder.training.config import load_train_config
    from safeladder.training.metrics import pointwise_metrics
    from safeladder.training.runner import _point_text, prepare_data, verifier_config

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
        + [f"{p['prompt']}\n{p['response']}" for p in probes],
    )
    tfidf_s = time.perf_counter() - t0
    n_dev, n_rows = len(dev_y), len(rows)
    p_dev, p_tfidf = probs[:n_dev], probs[n_dev : n_dev + n_rows]
    probe_tfidf = probs[n_dev + n_rows :]
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
    return {
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
        _record(held_out(safety_dir))


if __name__ == "__main__":
    main()
