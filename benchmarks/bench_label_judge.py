"""Label judging without generation: the three likelihood algorithms against ``generate`` and
the prefill-only rate of the same rows (issue 14, item 2).

Run from the repository root::

    python benchmarks/bench_label_judge.py          # CPU, small Qwen2 shape (~2 minutes)
    python benchmarks/bench_label_judge.py --gpu    # cuda:0, Qwen2.5-0.5B shape, bf16, sdpa

The judge is a random-init ``Qwen2ForCausalLM`` (weights are random: the cost of a forward
does not depend on them) with the tests' tiny in-memory tokenizer and chat template, saved
with ``save_pretrained`` and loaded by ``label_judge`` through the real loading code, with the
``safework_safety`` preset (SafeWork-R1's safety verifier prompt and its labels). Rows: GPTFuzz
prompts and responses (``../shared/data``), cut to a seeded length in ``[MIN_TOKENS,
MAX_TOKENS]`` judge tokens. Measured after one warm-up pass, the median of ``REPEATS`` passes,
the LRU cache off:

- ``label_<scoring>``: one ``score()`` over all rows for ``scoring`` = ``shared_prefix``
  (prefix once, labels over its KV cache, one cached pass per multi-token label),
  ``duplicate`` (every prefix + label pair) and ``tree`` (one forward: each prefix once with
  every label after it under a block mask);
- ``generate_<k>``: ``model.generate`` of ``k`` greedy tokens after the same judge inputs, in
  batches of ``GEN_BATCH`` left-padded rows (``k`` = the longest label, and 4);
- ``prefill``: one forward over each judge input, the last position's logits only, in the same
  batches: the floor a label judge could reach.

Each line reports rows/s and the ratios ``vs_generate_<k>`` and ``vs_prefill``; the label rows
also report ``max_abs_diff_p`` against ``shared_prefix`` and argmax agreement. One JSON line
per measurement is appended to ``benchmarks/results/label_judge.jsonl``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

REPEATS = 3
SEED = 0
SHAPES: dict[str, dict[str, Any]] = {
    "cpu": {
        "rows": 48,
        "min_tokens": 600,  # the SafeWork prompt alone is ~560 tokens under the test tokenizer
        "max_tokens": 1000,
        "gen_batch": 16,
        "config": {
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": None,  # the tokenizer's
        },
        "dtype": "float32",
    },
    "gpu": {
        "rows": 256,
        "min_tokens": 600,
        "max_tokens": 1000,
        "gen_batch": 128,
        "config": {  # Qwen2.5-0.5B
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
        },
        "dtype": "bfloat16",
    },
}
SCORINGS = ("shared_prefix", "duplicate", "tree")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "label_judge.jsonl"
sys.path.insert(0, str(REPO))


def build_judge(out: Path, shape: dict[str, Any]) -> Path:
    """Save a random-init Qwen2 causal LM of ``shape`` with the tests' chat tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from tests.helpers import _tiny_tokenizer_for

    tok = _tiny_tokenizer_for(out, chat=True, arch="qwen2")
    cfg = Qwen2Config(
        **{**shape["config"], "vocab_size": shape["config"]["vocab_size"] or len(tok)},
        max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(out))
    return out


def make_samples(n: int) -> list[Any]:
    from safeladder.types import Sample

    path = bench_env.SHARED_DATA / "gptfuzz_labeled_responses.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        pool = [json.loads(line) for line in f]
    rng = random.Random(SEED)
    rng.shuffle(pool)
    return [Sample(prompt=r["prompt"] or "", completion=r["response"] or "") for r in pool[:n]]


def cut_to_lengths(judge: Any, samples: list[Any], lo: int, hi: int) -> list[Any]:
    """Shorten each sample's response so its judge input has a seeded length in [lo, hi]."""
    from safeladder.types import Sample, SampleBatch

    rng = random.Random(SEED + 1)
    out = []
    for s in samples:
        target = rng.randint(lo, hi)
        text = s.completion
        while True:
            cand = Sample(prompt=s.prompt[:400], completion=text)
            got = judge._row_input(SampleBatch.from_samples([cand]), 0)
            n = len(got.ids) if hasattr(got, "ids") else hi + 1
            if n <= target or len(text) < 20:
                break
            text = text[: int(len(text) * max(0.5, target / n))]
        while n < lo:  # too short: repeat the response
            text = text + " " + text
            cand = Sample(prompt=s.prompt[:400], completion=text)
            n = len(judge._row_input(SampleBatch.from_samples([cand]), 0).ids)
        out.append(cand)
    return out


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    result = fn()  # warm-up
    sync()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def batches(prefixes: list[list[int]], size: int) -> list[list[list[int]]]:
    order = sorted(prefixes, key=len)  # similar lengths together, as the engine does
    return [order[i : i + size] for i in range(0, len(order), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="Qwen2.5-0.5B shape on cuda:0")
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    import torch

    from safeladder.neural.label_likelihood import left_pad
    from safeladder.types import SampleBatch
    from safeladder.verifiers import build_verifier

    kind = "gpu" if args.gpu else "cpu"
    shape = SHAPES[kind]
    n_rows = args.rows or shape["rows"]
    device = "cuda" if args.gpu else "cpu"
    if not args.gpu:
        torch.set_num_threads(1)

    def sync() -> None:
        if args.gpu:
            torch.cuda.synchronize()

    env = bench_env.environment(["torch", "transformers"])
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_judge(Path(tmp), shape)
        runtime = {"device": device, "dtype": shape["dtype"], "cache_size": 0}
        judges = {
            s: build_verifier(
                {
                    "type": "label_judge",
                    "path": str(path),
                    "preset": "safework_safety",
                    "scoring": s,
                    "max_length": 2048,
                    "runtime": runtime,
                }
            )
            for s in SCORINGS
        }
        base = judges["shared_prefix"]
        samples = cut_to_lengths(
            base, make_samples(n_rows), shape["min_tokens"], shape["max_tokens"]
        )
        batch = SampleBatch.from_samples(samples)
        prefixes = [list(base._row_input(batch, i).ids) for i in range(len(samples))]
        label_lens = [len(lab) for lab in base.label_ids]
        tokens = sum(len(p) for p in prefixes)
        print(
            f"{kind}: {len(samples)} rows, {tokens} judge tokens (mean {tokens / len(samples):.0f}), "
            f"{len(label_lens)} labels of {label_lens} tokens"
        )
        rates: dict[str, float] = {}
        extra: dict[str, dict[str, Any]] = {}
        probs: dict[str, np.ndarray] = {}
        for s, judge in judges.items():
            secs, sb = timed(lambda j=judge: j.score(batch), sync)
            rates[f"label_{s}"] = len(samples) / secs
            probs[s] = np.array(
                [[d["label_probs"][n] for n in judge.label_names] for d in sb.details]
            )
        model = base.loaded.replicas[0]
        pad = base.loaded.pad_id
        groups = batches(prefixes, shape["gen_batch"])

        def prefill() -> None:
            with torch.inference_mode():
                for g in groups:
                    ids, mask, pos = left_pad(g, pad, device)
                    model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)

        secs, _ = timed(prefill, sync)
        rates["prefill"] = len(samples) / secs
        for k in sorted({max(label_lens), 4}):

            def gen(k: int = k) -> None:
                with torch.inference_mode():
                    for g in groups:
                        ids, mask, _ = left_pad(g, pad, device)
                        model.generate(
                            input_ids=ids,
                            attention_mask=mask,
                            max_new_tokens=k,
                            min_new_tokens=k,
                            do_sample=False,
                            pad_token_id=pad,
                        )

            secs, _ = timed(gen, sync)
            rates[f"generate_{k}"] = len(samples) / secs
        ref = probs["shared_prefix"]
        for s in SCORINGS:
            extra[f"label_{s}"] = {
                "max_abs_diff_p": float(np.abs(probs[s] - ref).max()),
                "argmax_agreement": float(np.mean(probs[s].argmax(1) == ref.argmax(1))),
            }
        gens = sorted(k for k in rates if k.startswith("generate_"))
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        print(
            f"{'method':<22} {'rows/s':>9} {'vs prefill':>11} "
            + " ".join(f"{'vs ' + g:>14}" for g in gens)
        )
        for method, rate in rates.items():
            rec: dict[str, Any] = {
                "benchmark": "label_judge",
                "timestamp": stamp,
                "shape": kind,
                "method": method,
                "rows": len(samples),
                "judge_tokens": tokens,
                "label_tokens": label_lens,
                "rows_per_s": round(rate, 2),
                "vs_prefill": round(rate / rates["prefill"], 3),
                **{f"vs_{g}": round(rate / rates[g], 3) for g in gens},
                **extra.get(method, {}),
                "repeats": REPEATS,
                "dtype": shape["dtype"],
                "gen_batch": shape["gen_batch"],
                **env,
            }
            records.append(rec)
            print(
                f"{method:<22} {rate:>9.1f} {rec['vs_prefill']:>11.3f} "
                + " ".join(f"{rec[f'vs_{g}']:>14.3f}" for g in gens)
            )
        for s in SCORINGS:
            print(f"label_{s}: {extra[f'label_{s}']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    print(f"appended {len(records)} lines to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
