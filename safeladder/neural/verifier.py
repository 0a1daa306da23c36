"""``NeuralVerifier``: the part every model-backed verifier shares.

A subclass sets ``model_kind``, builds its forward function, and turns the model outputs of the
scorable rows into ``(score, status, detail)`` triples (``_rows_from_outputs``). This base class
loads the model through the process-wide cache, renders and tokenizes the rows, abstains on rows
that render to no tokens, runs the batching engine (dedup, LRU cache keyed by the verifier
fingerprint, token-budget micro-batches), applies ``on_error``, and counts truncated rows:
``details[i]["truncated"] = True`` on each, ``self.truncated_rows`` over the verifier's life, and
one ``SafeladderWarning`` per call that truncated anything.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from safeladder.errors import SafeladderWarning, VerifierError
from safeladder.neural.batching import Forward, logits_forward, run_batched
from safeladder.neural.rendering import Encoded, RenderConfig, encode_pairs
from safeladder.neural.runtime import LoadedModel, ModelKind, RuntimeConfig, load_model
from safeladder.types import SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig

#: tokenizer.model_max_length values at or above this mean "no limit" (transformers' sentinel).
_NO_LIMIT = 10**8


def position_limit(loaded: LoadedModel) -> int | None:
    """The most tokens the model accepts, from its config and tokenizer (None = unknown)."""
    limits = []
    pos = getattr(loaded.config, "max_position_embeddings", None)
    if isinstance(pos, int) and pos > 0:
        limits.append(pos)
    tml = getattr(loaded.tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < _NO_LIMIT:
        limits.append(tml)  # e.g. RoBERTa: 514 positions but 512 usable tokens
    return min(limits) if limits else None


class NeuralVerifier(Verifier):
    """Base class of verifiers that run a Hugging Face model through ``safeladder.neural``.

    Subclasses call ``self._load(path, render, runtime)`` in ``__init__`` and implement
    ``_rows_from_outputs``; override ``_forward`` for anything but sequence-classification logits.
    """

    model_kind: ClassVar[ModelKind] = "sequence_classification"

    def __init__(self, config: VerifierConfig):
        super().__init__(config)
        self.truncated_rows = 0
        self._loaded: LoadedModel | None = None
        self._fp: str | None = None

    # -- set-up ------------------------------------------------------------------------------

    def _load(
        self,
        path: str,
        render: RenderConfig,
        runtime: RuntimeConfig,
        model_kwargs: dict[str, Any] | None = None,
    ) -> LoadedModel:
        self.render = render
        self.runtime = runtime
        self._loaded = load_model(path, self.model_kind, runtime, model_kwargs=model_kwargs)
        limit = position_limit(self._loaded)
        self.max_length = min(render.max_length, limit) if limit else render.max_length
        return self._loaded

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise VerifierError(f"{self.name}: the verifier was closed; build it again")
        return self._loaded

    @property
    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = super().fingerprint
        return self._fp

    def _fingerprint_extra(self) -> str:
        return f"|checkpoint:{self.loaded.fingerprint}|{self._fingerprint_state()}"

    def _fingerprint_state(self) -> str:
        """Settings read from files at build time (calibration, stats) that change the scores."""
        return ""

    def close(self) -> None:
        """Drop this verifier's reference to the model (freed once no other verifier holds it)."""
        self._loaded = None

    # -- scoring -----------------------------------------------------------------------------

    def _forward(self) -> Forward:
        return logits_forward(self.loaded.pad_id)

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        """``(score, status, detail)`` per row from float32 outputs ``(rows, k)``."""
        raise NotImplementedError

    def _encode(self, batch: SampleBatch) -> tuple[Encoded | None, list[RowResult | None]]:
        """Encode every row; under ``on_error: abstain`` a row whose rendering fails is an error."""
        tok = self.loaded.tokenizer
        try:
            return encode_pairs(
                batch.prompts, batch.completions, tok, self.render, max_length=self.max_length
            ), [None] * len(batch)
        except Exception as exc:
            if self.config.on_error == "raise":
                raise VerifierError(f"{self.name}: {exc}") from exc
        # Find the failing rows one by one; the rest still get scored.
        pre: list[RowResult | None] = [None] * len(batch)
        ok_rows = []
        for i in range(len(batch)):
            try:
                encode_pairs(
                    [batch.prompts[i]],
                    [batch.completions[i]],
                    tok,
                    self.render,
                    max_length=self.max_length,
                    first_row=i,
                )
                ok_rows.append(i)
            except Exception as exc:
                pre[i] = (float("nan"), "error", {"reason": f"{type(exc).__name__}: {exc}"})
        if not ok_rows:
            return None, pre
        sub = batch.take(ok_rows)
        enc = encode_pairs(
            sub.prompts, sub.completions, tok, self.render, max_length=self.max_length
        )
        full = Encoded(
            ids=[[] for _ in range(len(batch))],
            truncated=np.zeros(len(batch), dtype=bool),
            completion_start=[0] * len(batch),
            original_length=[0] * len(batch),
            chat=enc.chat,
        )
        for k, i in enumerate(ok_rows):
            full.ids[i] = enc.ids[k]
            full.truncated[i] = enc.truncated[k]
            full.completion_start[i] = enc.completion_start[k]
            full.original_length[i] = enc.original_length[k]
        return full, pre

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        n = len(batch)
        if n == 0:
            return ScoreBatch.from_rows(self.name, [])
        enc, rows = self._encode(batch)
        todo = [i for i in range(n) if rows[i] is None]
        if enc is not None:
            for i in list(todo):
                if not enc.ids[i]:
                    rows[i] = (float("nan"), "abstain", {"reason": "the row renders to no tokens"})
                    todo.remove(i)
        if todo and enc is not None:
            try:
                out = run_batched(
                    [enc.ids[i] for i in todo],
                    self._forward(),
                    self.loaded,
                    self.runtime,
                    cache_key=self.fingerprint,
                )
                results = self._rows_from_outputs(out)
            except Exception as exc:
                if self.config.on_error == "raise":
                    raise VerifierError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
                err = (float("nan"), "error", {"reason": f"{type(exc).__name__}: {exc}"})
                results = [(err[0], err[1], dict(err[2])) for _ in todo]
            for i, r in zip(todo, results, strict=True):
                score, status, _ = r
                if status == "ok" and not math.isfinite(score):
                    r = (float("nan"), "error", {"reason": f"non-finite model output {score}"})
                rows[i] = r
        n_trunc = 0
        if enc is not None:
            for t in np.flatnonzero(enc.truncated):
                rows_i = rows[int(t)]
                if rows_i is not None:
                    rows_i[2]["truncated"] = True
                    n_trunc += 1
        if n_trunc:
            self.truncated_rows += n_trunc
            warnings.warn(
                f"{self.name}: {n_trunc} of {n} rows were longer than {self.max_length} tokens "
                f"and were truncated ({self.render.truncation}); see details[i]['truncated']",
                SafeladderWarning,
                stacklevel=4,
            )
        done = [r for r in rows if r is not None]
        assert len(done) == n, "every row gets a result"
        return ScoreBatch.from_rows(self.name, done)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64 in, float64 out."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(rows, k)`` logits, float64."""
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
