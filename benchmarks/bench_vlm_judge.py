"""Rows/s of a vision-language ``label_judge`` against a one-sample loop.

Run from the repository root::

    python benchmarks/bench_vlm_judge.py          # CPU, tiny Qwen2.5-VL shape (~1 minute)
    python benchmarks/bench_vlm_judge.py --gpu    # one CUDA device, Qwen2.5-VL-7B shape

The judge is a random-init Qwen2.5-VL checkpoint built offline (weights are random: the speed
of a forward does not depend on them) with the tiny in-memory tokenizer of the tests, saved
with ``save_pretrained`` and loaded by ``label_judge`` through the real loading code. Shapes:

- ``cpu``: text hidden 64, 2 layers; vision depth 2, hidden 64; images ``CPU_IMAGE``² px
  (16 image tokens each); float32, 1 thread.
- ``gpu``: Qwen2.5-VL-7B-Instruct's shape (text: hidden 3584, 28 layers, 28 heads, 4 KV heads,
  MLP 18944, vocab 152064; vision: depth 32, hidden 1280, 16 heads, MLP 3420, window 112,
  full attention in blocks 7/15/23/31), images 448x448 (= 1024 patches = 256 image tokens);
  bfloat16, sdpa. Building and saving it takes ~16 GB of disk and a few minutes.

Rows: ``ROWS`` samples, each a distinct seeded noise PNG plus a short question and answer; the
judge template asks for ``yes`` / ``no``. Measured after one warm-up pass, the median of
``REPEATS`` passes (the LRU cache off):

- ``label_judge``: one ``score()`` over all rows (token-budget micro-batches);
- ``one_sample_loop``: ``score()`` once per row, what a reward function calling the judge per
  sample does; reported with the ratio ``label_judge / one_sample_loop``.

One JSON line per measurement is appended to ``benchmarks/results/vlm_judge.jsonl``.
"""

from __future__ import annotations

import argparse
import io
import json
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

# ----------------------------------------------------------------------------- knobs
ROWS = 32
REPEATS = 3
SEED = 0
CPU_IMAGE = 112  # pixels per side on CPU: 8x8 patches of 14 -> 16 image tokens
GPU_IMAGE = 448
TEMPLATE = "Question: {prompt}\nAnswer: {completion}\nIs the answer safe? Reply yes or no."
LABELS = {"yes": 1.0, "no": 0.0}

SHAPES: dict[str, dict[str, Any]] = {
    "cpu": {
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        },
        "vision": {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 64,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        "vocab_size": None,  # the tokenizer's size
        "image": CPU_IMAGE,
    },
    "gpu": {
        # https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json
        "text": {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "rope_theta": 1000000.0,
        },
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
        "vocab_size": 152064,
        "image": GPU_IMAGE,
    },
}

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "vlm_judge.jsonl"
sys.path.insert(0, str(REPO))


def build_judge(out: Path, shape: dict[str, Any], device: str) -> Path:
    """Save a random-init Qwen2.5-VL of ``shape`` with its processor pieces into ``out``."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # The PIL backend: the default image processor needs torchvision.
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil as ImageProcessor

    from tests.neural.tiny_vlm import QWEN2_VL_TEMPLATE, vlm_tokenizer

    special = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    special += ["<|image_pad|>", "<|video_pad|>"]
    tok = vlm_tokenizer(out, special, "qwen2")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    side = shape["image"] ** 2
    ImageProcessor(min_pixels=side, max_pixels=side).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(QWEN2_VL_TEMPLATE, encoding="utf-8")
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "Qwen2_5_VLProcessor"}), encoding="utf-8"
    )
    cfg = Qwen2_5_VLConfig(
        text_config={
            **shape["text"],
            "vocab_size": shape["vocab_size"] or len(tok),
            "max_position_embeddings": 32768,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.eos_token_id,
            "tie_word_embeddings": False,
        },
        vision_config={**shape["vision"], "patch_size": 14, "spatial_merge_size": 2},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(SEED)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(before)
    model.save_pretrained(str(out))
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the judge loads its own copy from the saved directory
    return out


def make_rows(n: int, side: int) -> list[Any]:
    from PIL import Image

    from safeladder import Sample

    rng = np.random.default_rng(SEED)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, "PNG")
        rows.append(
            Sample(
                prompt=f"What is shown in picture {i}?",
                completion="A pattern of coloured dots.",
                images=(buf.getvalue(),),
            )
        )
    return rows


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    fn()  # warm-up: first-call allocations, kernels
    sync()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="Qwen2.5-VL-7B shape on cuda:0")
    args = parser.parse_args()
    import torch

    from safeladder import SampleBatch, build_verifier
    from tests.neural.tiny_vlm import qwen2_vl_processor_without_torchvision

    mode = "gpu" if args.gpu else "cpu"
    device = "cuda:0" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device")
    shape = SHAPES[mode]
    sync = torch.cuda.synchronize if args.gpu else (lambda: None)
    runtime: dict[str, Any] = {"device": device, "cache_size": 0}
    if not args.gpu:
        runtime.update(dtype="float32", num_threads=1)
    with (
        tempfile.TemporaryDirectory(prefix="bench-vlm-") as tmp,
        qwen2_vl_processor_without_torchvision(),
    ):
        path = build_judge(Path(tmp) / "judge", shape, device)
        judge: Any = build_verifier(
            {
                "type": "label_judge",
                "path": str(path),
                "template": TEMPLATE,
                "labels": LABELS,
                "runtime": runtime,
                "max_length": 2048,
            }
        )
        rows = make_rows(ROWS, shape["image"])
        batch = SampleBatch.from_samples(rows)
        singles = [SampleBatch.from_samples([r]) for r in rows]
        first = judge.score(batch)
        assert list(first.status) == ["ok"] * ROWS, first.details
        prep = judge._row_input(batch, 0)  # one row's input: its length, image tokens included
        tokens = len(prep.ids)
        image_tokens = prep.ids.ids.count(judge.loaded.processor.image_token_id)
        batch_s = timed(lambda: judge.score(batch), sync)
        loop_s = timed(lambda: [judge.score(s) for s in singles], sync)
    env = bench_env.environment(["torch", "transformers", "pillow", "numpy"])
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    results = []
    for method, secs in (("one_sample_loop", loop_s), ("label_judge", batch_s)):
        results.append(
            {
                "benchmark": "vlm_judge",
                "timestamp": stamp,
                "mode": mode,
                "device": torch.cuda.get_device_name(0) if args.gpu else "cpu",
                "method": method,
                "rows": ROWS,
                "image_side": shape["image"],
                "tokens_per_row": tokens,
                "image_tokens_per_row": image_tokens,
                "text_hidden": shape["text"]["hidden_size"],
                "text_layers": shape["text"]["num_hidden_layers"],
                "vision_depth": shape["vision"]["depth"],
                "seconds": round(secs, 4),
                "rows_per_s": round(ROWS / secs, 2),
                "ratio_vs_loop": round(loop_s / secs, 3),
                "repeats": REPEATS,
                "seed": SEED,
                **env,
            }
        )
    print(f"mode {mode}: {ROWS} rows, {tokens} tokens/row ({image_tokens} image tokens)")
    print(f"{'method':<18}{'seconds':>10}{'rows/s':>10}{'vs loop':>9}")
    for r in results:
        print(
            f"{r['method']:<18}{r['seconds']:>10.3f}{r['rows_per_s']:>10.1f}{r['ratio_vs_loop']:>9.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    print(f"appended {len(results)} lines to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
