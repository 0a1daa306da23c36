"""``NeuralVerifier``: the part every model-backed verifier shares.

A neural verifier is a config plus a scoring rule over the engine in ``safeladder.neural``. A
scoring call goes through three steps, each a method a subclass may override:

1. ``_prepare(batch) -> PreparedRows``: every row becomes a model input (token ids by default:
   ``encode_pairs`` with the verifier's ``RenderConfig``), or a result decided without the
   model (an abstention, an error naming the row, a fixed score);
2. ``_run(inputs) -> np.ndarray (rows, k)``: the engine runs the inputs (default:
   ``run_batched``: dedup, LRU cache keyed by the verifier fingerprint, length-sorted
   token-budget micro-batches, order restored) with ``_forward()``;
3. ``_rows_from_outputs(outputs) -> [(score, status, detail)]``: the scoring rule.

This class applies ``on_error`` to the model call (a ``ConfigError`` or ``VerifierError`` is
raised as it is; anything else is wrapped in a ``VerifierError`` naming the verifier), turns a
non-finite ``ok`` score into an error, and counts truncated rows: ``details[i]["truncated"] =
True`` on each, ``self.truncated_rows`` over the verifier's life, and one ``SafeladderWarning``
per call that truncated anything.

Vision-language checkpoints (``LoadedModel.processor`` set): ``_prepare`` builds one
``VisionRow`` per row instead (``_prepare_vision``): the row's images (``Sample.images`` plus
the image parts of a chat prompt) are decoded once per batch under the config's
``image_limits``, the prompt + completion rendered with the processor's chat template and run
through the processor; text longer than ``max_length`` tokens (image tokens included) is cut
as the text path cuts it (``vision.fit_vision_row``; images are never cut); an image that
cannot be read, or images that alone exceed ``max_length``, is that row's error under
``on_error``, never the batch's. Text-only rows go through the same path.

Subclasses: ``classifier``, ``reward_model``, ``label_judge``, ``embedding_head``,
``process_reward``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from safeladder.errors import ConfigError, InputError, SafeladderWarning, VerifierError
from safeladder.images import ImageLimits, ImageRef, image_key, load_batch_images
from safeladder.neural.batching import Forward, logits_forward, run_batched
from safeladder.neural.checkpoints import position_limit
from safeladder.neural.rendering import Encoded, RenderConfig, encode_pairs, final_answer
from safeladder.neural.runtime import LoadedModel, ModelKind, RuntimeConfig, load_model
from safeladder.neural.vision import VisionRow, fit_vision_row, row_image_refs
from safeladder.neural.vision_head import vision_logits_forward
from safeladder.types import SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig

__all__ = ["NeuralVerifier", "PreparedRows"]


@dataclass
class PreparedRows:
    """A batch made ready for the model.

    Attributes:
        inputs: per row, the model input (token ids, texts...); unused where ``results`` is set.
        results: per row, the result decided without the model, or None (the model scores it).
        truncated: ``(rows,)`` bool, True where the input was cut to fit the model.
        extra: per row, details added to the row's ``ok`` result (e.g. the template used).
    """

    inputs: list[Any]
    results: list[RowResult | None]
    truncated: np.ndarray
    extra: list[dict[str, Any]] = field(default_factory=list)


class NeuralVerifier(Verifier):
    """Base class of verifiers that score rows with a model run by ``safeladder.neural``.

    Subclasses that run a Hugging Face model call ``self._load(path, render, runtime)`` in
    ``__init__`` and implement ``_rows_from_outputs``; override ``_forward`` for anything but
    sequence-classification logits, ``_prepare`` / ``_run`` for other inputs or engines.
    """

    model_kind: ClassVar[ModelKind] = "sequence_classification"

    def __init__(self, config: VerifierConfig):
        super().__init__(config)
        #: Rows cut to fit the model since this verifier was built.
        self.truncated_rows = 0
        self._loaded: LoadedModel | None = None
        self._fp: str | None = None

    # -- set-up ------------------------------------------------------------------------------

    def _load(
        self,
        path: str,
        render: RenderConfig | None,
        runtime: RuntimeConfig,
        model_kwargs: dict[str, Any] | None = None,
    ) -> LoadedModel:
        """Load ``path`` through the process-wide cache; ``max_length`` = the render limit
        capped by the model's own position limit (``render`` None: the model's limit)."""
        if render is not None:
            self.render = render
        self.runtime = runtime
        self._loaded = load_model(path, self.model_kind, runtime, model_kwargs=model_kwargs)
        limit = position_limit(self._loaded)
        if render is not None:
            self.max_length = min(render.max_length, limit) if limit else render.max_length
            if self._loaded.processor is not None and render.template == "plain":
                raise ConfigError(
                    f"render.template: 'plain', but {path!r} is a vision-language model; its "
                    "images are placed by the processor's chat template (use 'auto' or 'chat')"
                )
        return self._loaded

    @property
    def reads_images(self) -> bool:
        """True for a vision-language checkpoint (it sees the rows' images)."""
        return self._loaded is not None and self._loaded.processor is not None

    @property
    def image_limits(self) -> ImageLimits:
        """Limits every image passes before it is decoded (the config's ``image_limits``)."""
        got = getattr(self.config, "image_limits", None)
        return got if isinstance(got, ImageLimits) else ImageLimits()

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

    # -- the three steps ---------------------------------------------------------------------

    def _prepare(self, batch: SampleBatch) -> PreparedRows:
        """Token ids per row from ``encode_pairs``; rows that render to no tokens abstain."""
        if self.loaded.processor is not None:
            return self._prepare_vision(batch)
        enc, rows = self._encode(batch)
        n = len(batch)
        if enc is None:
            return PreparedRows([None] * n, rows, np.zeros(n, dtype=bool))
        for i in range(n):
            if rows[i] is None and not enc.ids[i]:
                rows[i] = (float("nan"), "abstain", {"reason": "the row renders to no tokens"})
        return PreparedRows(list(enc.ids), rows, np.asarray(enc.truncated, dtype=bool))

    def _prepare_vision(self, batch: SampleBatch) -> PreparedRows:
        """One ``VisionRow`` per row (see the module docstring); failures are row errors."""
        n = len(batch)
        found = [
            self._guard(i, row_image_refs, batch.prompts[i], batch.images[i], i) for i in range(n)
        ]
        refs = [r if isinstance(r, list) else [] for r in found]
        decoded = load_batch_images(refs, self.image_limits)
        inputs: list[Any] = [None] * n
        results: list[RowResult | None] = [None] * n
        truncated = np.zeros(n, dtype=bool)
        for i in range(n):
            if not isinstance(found[i], list):
                results[i] = found[i]  # type: ignore[assignment]
                continue
            got = self._guard(i, self._vision_row, batch, i, refs[i], decoded[i])
            if isinstance(got[0], VisionRow):
                inputs[i], truncated[i] = got[0], bool(got[1])
            else:
                results[i] = got
        return PreparedRows(inputs, results, truncated)

    def _vision_row(
        self, batch: SampleBatch, i: int, refs: list[ImageRef], images: list[Any] | InputError
    ) -> tuple[VisionRow, bool]:
        """Row ``i`` rendered (prompt + completion as the assistant turn), processed and cut to
        ``max_length``: ``(row, truncated)``."""
        if isinstance(images, InputError):
            raise images
        completion = batch.completions[i]
        if self.render.judge_final_answer:
            completion = final_answer(completion)
        keys = [image_key(r, self.image_limits) for r in refs]
        return fit_vision_row(
            self.loaded.processor, batch.prompts[i], completion, images, keys, self.max_length, i
        )

    def _forward(self) -> Forward:
        if self.loaded.processor is not None:
            return vision_logits_forward(self.loaded.pad_id)
        return logits_forward(self.loaded.pad_id)

    def _batch_runtime(self) -> RuntimeConfig:
        """The runtime the engine batches with (a subclass may adapt the budgets)."""
        return self.runtime

    def _run(self, inputs: list[Any]) -> np.ndarray:
        """Model outputs ``(len(inputs), k)`` for the inputs of the rows the model scores."""
        return run_batched(
            inputs, self._forward(), self.loaded, self._batch_runtime(), cache_key=self.fingerprint
        )

    def _truncation_how(self) -> str:
        """How long inputs are cut, for the truncation warning."""
        return str(self.render.truncation)

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        """``(score, status, detail)`` per row from the outputs ``(rows, k)`` of ``_run``."""
        raise NotImplementedError

    # -- scoring -----------------------------------------------------------------------------

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
        prep = self._prepare(batch)
        rows = list(prep.results)
        todo = [i for i in range(n) if rows[i] is None]
        if todo:
            try:
                results = self._rows_from_outputs(self._run([prep.inputs[i] for i in todo]))
            except Exception as exc:
                if self.config.on_error == "raise":
                    if isinstance(exc, (ConfigError, VerifierError)):
                        raise
                    raise VerifierError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
                reason = f"{type(exc).__name__}: {exc}"
                results = [(float("nan"), "error", {"reason": reason}) for _ in todo]
            for i, r in zip(todo, results, strict=True):
                score, status, _ = r
                if status == "ok" and not math.isfinite(score):
                    r = (float("nan"), "error", {"reason": f"non-finite model output {score}"})
                elif status == "ok":
                    if prep.truncated[i]:
                        r[2]["truncated"] = True
                    if prep.extra and prep.extra[i]:
                        r[2].update(prep.extra[i])
                rows[i] = r
        n_trunc = 0
        for t in np.flatnonzero(prep.truncated):
            row = rows[int(t)]
            if row is not None:
                row[2]["truncated"] = True
                n_trunc += 1
        if n_trunc:
            self.truncated_rows += n_trunc
            warnings.warn(
                f"{self.name}: {n_trunc} of {n} rows were longer than {self.max_length} tokens "
                f"and were truncated ({self._truncation_how()}); see details[i]['truncated']",
                SafeladderWarning,
                stacklevel=4,
            )
        done = [r for r in rows if r is not None]
        assert len(done) == n, "every row gets a result"
        return ScoreBatch.from_rows(self.name, done)
