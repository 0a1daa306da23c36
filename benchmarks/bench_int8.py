"""CPU dynamic int8 on the shipped ``safety`` verifier: speed and decision flips (issue 14, item 4).

Target: ``runtime.quantize: dynamic_int8`` at >= 1.8x the one-sample loop with <= 0.5 % of
decisions flipped at the shipped threshold; otherwise int8 stays off (it is off by default).

Rows (real text, labelled): a seeded sample of GPTFuzz's upstream ``evaluate`` split (its 20
questions are not in the split the shipped model trained on) and of the JailbreakBench artifacts
(an external distribution), half each, from ``../shared/data``; label 1 = unsafe.

Model: ``build_verifier("safety")`` as shipped (all-MiniLM-L6-v2 + its LoRA adapter merged at
load, 2-class head, temperature calibration, ``render.max_length`` 256, ``prompt_first``
truncation), on CPU with ``THREADS`` torch threads. A row is flagged when its score (P(safe)) is
below the shipped threshold (``safeladder_calibration.json`` ``meta.score_threshold``).

Methods, timed in the same run after a warm-up, round-robin over ``REPEATS`` rounds (the best
round per method is reported, so load from other processes hits all methods alike):

- ``loop``: what a hand-written reward function does, as ``bench_neural.py``'s ``loop``: per
  row, tokenize (the verifier's own rendering, ``encode_pairs``, so the ids are the same) and
  one forward of the fp32 model (the verifier's, LoRA merged), then the calibrated softmax;
- ``safeladder_fp32``: the verifier on the whole set (length-sorted token-budget micro-batches);
- ``safeladder_int8``: the same with ``runtime: {quantize: dynamic_int8}`` (torch.ao dynamic
  quantization of every ``nn.Linear``: int8 weights per output channel, int8 activations per
  tensor; per-tensor weights until the run of 2026-12-05, which measured both);
- explored variants (``EXPLORE``; not runtime options): the fp32 model quantized here another
  way and run by the same engine call the verifier makes (``encode_pairs`` + ``run_batched``
  + the verifier's calibration): ``int8_per_tensor`` (one weight scale per tensor: the runtime's
  quantization before 2026-12-05),
  ``int8_per_channel_keep_ffn_out`` (the FFN down-projections ``layer.N.output.dense``, pooler and
  classifier left fp32), and ``..._full_range`` (the same with 8-bit instead of fbgemm's default
  7-bit activations, ``reduce_range=False``: exact only on CPUs with VNNI, where fbgemm does not
  saturate int16 pair sums; this one measures what precision buys, it is not a safe default).

Per method: rows/s, tokens/s, ratios vs the loop and vs ``safeladder_fp32``; per quantized
method: decisions flipped vs ``safeladder_fp32`` (count, share, per source), max and mean |ΔP|,
and for every method F1 / precision / recall at the threshold and AUROC on the labels.
One JSON line per method is appended to ``benchmarks/results/int8.jsonl``.

    python benchmarks/bench_int8.py              # 600 rows, ~5-10 minutes on 2 shared CPUs
    python benchmarks/bench_int8.py --rows 1200  # more rows (flip counts are small numbers)
    python benchmarks/bench_int8.py --quick      # 60 rows, one round, < 1 minute, not recorded
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import json
import os
import random
import re
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

# --- knobs ----------------------------------------------------------------------------------
ROWS = 600  # half GPTFuzz evaluate, half JailbreakBench (seeded samples)
THREADS = 1  # torch intra-op threads (inter-op set to 1)
REPEATS = 3  # timed rounds over all methods, best per method reported
WARMUP_ROWS = 16
SEED = 0
TARGET_RATIO_VS_LOOP = 1.8
TARGET_MAX_FLIP_SHARE = 0.005
EXPLORE = (
    "int8_per_tensor",
    "int8_per_channel_keep_ffn_out",
    "int8_per_channel_keep_ffn_out_full_range",
)
QUICK = {"ROWS": 60, "REPEATS": 1, "WARMUP_ROWS": 4}

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SAFELADDER_BENCH_DATA") or REPO.parent / "shared" / "data")
RESULTS = REPO / "benchmarks" / "results" / "int8.jsonl"
SHIPPED = REPO / "safeladder" / "defaults" / "safety"
sys.path.insert(0, str(REPO))
#: BERT's FFN down-projection (``bert.encoder.layer.N.output.dense``), not attention's output.
FFN_OUT = re.compile(r"\.layer\.\d+\.output\.dense$")


# --- data -----------------------------------------------------------------------------------
def _read(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_rows(n: int) -> list[dict[str, Any]]:
    """``n`` labelled rows ``{prompt, response, label, source}``: GPTFuzz evaluate, then JBB."""
    gf = [r for r in _read("gptfuzz_labeled_responses.jsonl.gz") if r["split"] == "evaluate"]
    jbb = _read("jailbreakbench_artifacts.jsonl.gz")
    out = []
    for name, pool, k in (("gptfuzz_evaluate", gf, n // 2), ("jailbreakbench", jbb, n - n // 2)):
        pool = [r for r in pool if (r.get("response") or "").strip()]
        for r in random.Random(f"{SEED}:{name}").sample(pool, k):
            out.append(
                {
                    "prompt": r["prompt"] or "",
                    "response": r["response"],
                    "label": int(r["label"]),
                    "source": name,
                }
            )
    return out


# --- models ---------------------------------------------------------------------------------
def build(quantize: str) -> Any:
    """The shipped ``safety`` verifier on CPU, as shipped but for threads and quantization."""
    from safeladder import build_verifier
    from safeladder.verifiers import parse_verifier_config

    cfg: Any = parse_verifier_config("safety")
    rt = cfg.runtime.model_copy(
        update={"device": "cpu", "num_threads": THREADS, "quantize": quantize}
    )
    return build_verifier(cfg.model_copy(update={"runtime": rt}))


def quantized_copy(model: Any, variant: str) -> Any:
    """A deep copy of the fp32 ``model`` quantized the way ``variant`` (an ``EXPLORE`` name) says."""
    import torch
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    keep_ffn_out = "keep_ffn_out" in variant
    qconfig = default_dynamic_qconfig if "per_tensor" in variant else per_channel_dynamic_qconfig
    names = {
        name
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
        and not (keep_ffn_out and (FFN_OUT.search(name) or ".encoder." not in f".{name}."))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        q = quantize_dynamic(copy.deepcopy(model), dict.fromkeys(names, qconfig), torch.qint8)
    if variant.endswith("_full_range"):
        for mod in q.modules():
            if type(mod).__module__ == "torch.ao.nn.quantized.dynamic.modules.linear":
                mod.forward = types.MethodType(_full_range_forward, mod)
    return q.eval()


def _full_range_forward(self: Any, x: Any) -> Any:
    # torch.ao's DynamicQuantizedLinear.forward passes reduce_range=True (7-bit activations) so
    # that fbgemm's AVX2 u8 x s8 pair sums cannot saturate int16; VNNI CPUs do not need it.
    import torch

    y = torch.ops.quantized.linear_dynamic(
        x, self._packed_params._packed_params, reduce_range=False
    )
    return y.to(x.dtype)


# --- metrics --------------------------------------------------------------------------------
def decision_metrics(labels: np.ndarray, scores: np.ndarray, t_score: float) -> dict[str, Any]:
    """F1 / precision / recall at the shipped threshold (score < t flags) and AUROC (unsafe = 1)."""
    from safeladder.training.metrics import pointwise_metrics

    p_unsafe = 1.0 - scores
    t = float(np.nextafter(1.0 - t_score, np.inf))  # p_unsafe >= t  <=>  score < t_score
    m = pointwise_metrics(labels, p_unsafe, t, probabilities=False)
    return {k: round(float(m[k]), 4) for k in ("f1", "precision", "recall", "auroc")}


def flips(
    ref: np.ndarray, other: np.ndarray, t_score: float, sources: np.ndarray
) -> dict[str, Any]:
    flipped = (ref < t_score) != (other < t_score)
    diff = np.abs(ref - other)
    return {
        "flips": int(flipped.sum()),
        "flip_share": round(float(flipped.mean()), 5),
        "flips_by_source": {s: int(flipped[sources == s].sum()) for s in dict.fromkeys(sources)},
        "max_abs_diff_p": round(float(diff.max()), 5),
        "mean_abs_diff_p": round(float(diff.mean()), 5),
    }


def print_table(records: list[dict[str, Any]]) -> None:
    cols = (
        *("method", "samples_per_s", "ratio_vs_loop", "ratio_vs_fp32", "flips", "flip_share"),
        *("max_abs_diff_p", "f1", "auroc"),
    )
    print("\n" + " | ".join(f"{c:>14}" for c in cols))
    for r in records:
        cells = []
        for c in cols:
            v = r.get(c, r.get("metrics", {}).get(c, ""))
            cells.append(f"{v:>14.4f}" if isinstance(v, float) else f"{v!s:>14}")
        print(" | ".join(cells))


# --- the run --------------------------------------------------------------------------------
def run(n_rows: int, explore: bool) -> list[dict[str, Any]]:
    import torch

    from safeladder import Sample, SampleBatch
    from safeladder.neural.batching import logits_forward, run_batched
    from safeladder.neural.rendering import encode_pairs

    rows = load_rows(n_rows)
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    sources = np.array([r["source"] for r in rows])
    batch = SampleBatch.from_samples(
        [Sample(prompt=r["prompt"], completion=r["response"]) for r in rows]
    )
    warm = batch.take(range(min(WARMUP_ROWS, len(rows))))
    t_score = float(
        json.loads((SHIPPED / "safeladder_calibration.json").read_text(encoding="utf-8"))["meta"][
            "score_threshold"
        ]
    )
    fp32, int8 = build("none"), build("dynamic_int8")
    tok, render, max_len = fp32.loaded.tokenizer, fp32.render, fp32.max_length
    model, good = fp32.loaded.replicas[0], fp32.good_index
    lens = [len(x) for x in encode_pairs(batch.prompts, batch.completions, tok, render).ids]
    print(
        f"rows {len(rows)} ({', '.join(f'{s}: {int((sources == s).sum())}' for s in dict.fromkeys(sources))}), "
        f"unsafe {int(labels.sum())}; tokens per row min {min(lens)}, median "
        f"{int(np.median(lens))}, max {max(lens)} (render.max_length {max_len}); "
        f"threshold {t_score:.4f}",
        flush=True,
    )

    def loop(b: Any) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for p, c in zip(b.prompts, b.completions, strict=True):
                ids = encode_pairs([p], [c], tok, render, max_length=max_len).ids[0]
                logits = model(input_ids=torch.tensor([ids])).logits.float().numpy()
                out.append(fp32.probabilities(logits)[0, good])
        return np.array(out)

    def engine(loaded: Any) -> Callable[[Any], np.ndarray]:
        # What the verifier's score() runs, minus its bookkeeping: encode, batched forward,
        # calibrated P(good).
        def call(b: Any) -> np.ndarray:
            enc = encode_pairs(b.prompts, b.completions, tok, render, max_length=max_len)
            logits = run_batched(enc.ids, logits_forward(loaded.pad_id), loaded, fp32.runtime)
            return fp32.probabilities(logits)[:, good]

        return call

    methods: dict[str, Callable[[Any], np.ndarray]] = {
        "loop": loop,
        "safeladder_fp32": lambda b: np.asarray(fp32.score(b).scores, dtype=np.float64),
        "safeladder_int8": lambda b: np.asarray(int8.score(b).scores, dtype=np.float64),
    }
    if explore:
        for name in EXPLORE:
            loaded = replace(fp32.loaded, replicas=[quantized_copy(model, name)])
            methods[name] = engine(loaded)
    for fn in methods.values():
        fn(warm)
    times: dict[str, list[float]] = {k: [] for k in methods}
    scores: dict[str, np.ndarray] = {}
    for rnd in range(REPEATS):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            scores[name] = fn(batch)
            times[name].append(time.perf_counter() - t0)
            print(
                f"  round {rnd + 1} {name:42s} {times[name][-1]:7.2f} s "
                f"{len(rows) / times[name][-1]:7.2f} rows/s",
                flush=True,
            )
    rate = {k: len(rows) / min(v) for k, v in times.items()}
    ref = scores["safeladder_fp32"]
    loop_vs_fp32 = float(np.abs(scores["loop"] - ref).max())
    env = {
        **bench_env.environment(("torch", "transformers", "peft")),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "quantized_engine": torch.backends.quantized.engine,
    }
    knobs = {
        "repeats": REPEATS,
        "warmup_rows": WARMUP_ROWS,
        "seed": SEED,
        "score_threshold": t_score,
        "render_max_length": max_len,
        "target": {"ratio_vs_loop": TARGET_RATIO_VS_LOOP, "max_flip_share": TARGET_MAX_FLIP_SHARE},
    }
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    records = []
    for name in methods:
        rec: dict[str, Any] = {
            "benchmark": "int8",
            "timestamp": stamp,
            "section": "cpu_shipped_safety",
            "model": "safety (all-MiniLM-L6-v2 + LoRA merged, temperature-calibrated)",
            "method": name,
            "rows": len(rows),
            "rows_by_source": {s: int((sources == s).sum()) for s in dict.fromkeys(sources)},
            "tokens": sum(lens),
            "seconds": round(min(times[name]), 4),
            "samples_per_s": round(rate[name], 3),
            "tokens_per_s": round(sum(lens) / min(times[name]), 1),
            "ratio_vs_loop": round(rate[name] / rate["loop"], 3),
            "ratio_vs_fp32": round(rate[name] / rate["safeladder_fp32"], 3),
            "metrics": decision_metrics(labels, scores[name], t_score),
            "metrics_by_source": {
                s: decision_metrics(labels[sources == s], scores[name][sources == s], t_score)
                for s in dict.fromkeys(sources)
            },
        }
        if name == "loop":
            rec["max_abs_diff_vs_fp32"] = loop_vs_fp32
        if name not in ("loop", "safeladder_fp32"):
            rec.update(flips(ref, scores[name], t_score, sources))
            rec["meets_target"] = bool(
                rec["ratio_vs_loop"] >= TARGET_RATIO_VS_LOOP
                and rec["flip_share"] <= TARGET_MAX_FLIP_SHARE
            )
            rec["runtime_option"] = name == "safeladder_int8"
        records.append({**rec, **knobs, **env})
    print_table(records)
    print(f"  loop vs safeladder_fp32: max |diff| = {loop_vs_fp32:.2e}")
    for v in (fp32, int8):
        v.close()
    return records


def main() -> None:
    global REPEATS, WARMUP_ROWS, THREADS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=ROWS, help="rows (half GPTFuzz, half JBB)")
    ap.add_argument("--quick", action="store_true", help="60 rows, one round, not recorded")
    ap.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads")
    ap.add_argument("--no-explore", action="store_true", help="skip the explored int8 variants")
    ap.add_argument("--no-save", action="store_true", help="do not append to the results file")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append to")
    args = ap.parse_args()
    n_rows = args.rows
    if args.quick:
        n_rows, REPEATS, WARMUP_ROWS = QUICK["ROWS"], QUICK["REPEATS"], QUICK["WARMUP_ROWS"]
    THREADS = args.threads
    # 2 shared cores: the Rust tokenizer's thread pool would fight torch's thread.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    with contextlib.suppress(RuntimeError):  # already set by an earlier parallel op
        torch.set_num_interop_threads(1)
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    records = run(n_rows, explore=not args.no_explore)
    if args.quick:
        for r in records:
            r["quick"] = True
    if not args.no_save and not args.quick:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, default=str) + "\n")
        print(f"\n{len(records)} lines appended to {args.results}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
