"""``classifier``: a local Hugging Face sequence classifier; the score is a probability.

What it checks: whatever the classifier was trained to tell apart (e.g. safe vs unsafe).
Inputs: ``Sample.prompt`` and ``Sample.completion``, rendered by ``render`` (chat template or
plain text; only the text after ``</think>`` with ``render.judge_final_answer``);
``reference`` and ``meta`` are not read. Score range: [0, 1] (a probability of "good").

- Single-label (softmax heads): the score is P(``good_label``), e.g. P("safe"), so higher is
  better. A one-logit head (binary BCE training) scores sigmoid(logit).
- Multi-label (``problem_type: multi_label_classification`` in the model config, or
  ``multi_label: true``): every label gets a sigmoid probability (``details[i]["probs"]``).
  With ``label_polarity: bad`` (default: labels flag problems such as toxicity or privacy) a
  label's goodness is 1 − p; with ``good`` it is p. The score combines the goodness values by
  ``min`` (the worst dimension), ``mean``, or ``weights`` (weighted mean, label → weight).
- Calibration, applied before the score is read: ``temperature`` divides every logit by T
  (softmax / sigmoid after); ``isotonic`` maps a probability through stored breakpoints with
  linear interpolation (``np.interp``; clamped at the ends). Single-label isotonic maps
  P(good_label); multi-label maps each label's p (``per_label`` entries, else the shared x/y).

Calibration file ``safeladder_calibration.json`` in the model directory (written by training;
used when ``calibration: auto``, the default) has the same schema as the ``calibration`` block::

    {"kind": "temperature", "temperature": 1.7, "meta": {"ece_before": 0.08}}
    {"kind": "isotonic", "x": [0.0, 0.4, 1.0], "y": [0.0, 0.3, 1.0]}
    {"kind": "isotonic", "per_label": {"toxicity": {"x": [0, 1], "y": [0, 0.9]}}}

Vision-language checkpoints (Qwen2-VL / Qwen2.5-VL, LLaVA, Idefics3 / SmolVLM): transformers has no sequence
classifier for them, so ``path`` holds the safeladder format of ``safeladder.neural.vision_head``:
the VLM saved with its processor, plus ``safeladder_score_head.safetensors`` (``weight``
``[num_labels, hidden]``, optional ``bias``) applied to the final hidden state of the last
non-padding token, with ``id2label`` / ``problem_type`` in ``config.json``
(``save_vision_score_head`` writes both). Rows are rendered by the processor's chat template
with their images (``Sample.images`` and a chat prompt's image parts, decoded under
``image_limits``); everything above (labels, calibration, multi-label) applies unchanged. Image
tokens count in ``render.max_length``; longer text is cut as usual (images never are). An
unreadable image, or images that alone exceed ``max_length``, is that row's error under
``on_error``.

Example::

    {"type": "classifier", "path": "ckpt/safety-clf", "good_label": "safe",
     "render": {"judge_final_answer": true}, "runtime": {"device": "auto"}}

Long completions (``render.windows: {size: 256, stride: 192, aggregate: min}``, off by default):
the completion is cut into windows of ``size`` tokens every ``stride`` tokens (the last one
ending at its end), each window rendered with as much of the prompt as fits (trimmed from the
left, as ``truncation`` does); every window of every row is one row of the same engine call
(deduplicated and cached as usual), and the row's score is the worst window's (``min``) or the
windows' ``mean``. A completion that fits one window gets exactly the unwindowed score.

Details per row: ``probs`` (label → probability after calibration, before polarity; windowed:
of the worst window), ``windows`` and ``worst_window_offset`` (its first completion token)
when windowed, and ``truncated: true`` when the row was cut to fit ``render.max_length``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from safeladder.errors import ConfigError, VerifierError
from safeladder.images import ImageLimits
from safeladder.neural.activations import sigmoid, softmax
from safeladder.neural.rendering import RenderConfig, Windowed, encode_windows
from safeladder.neural.runtime import RuntimeConfig
from safeladder.types import SampleBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig
from safeladder.verifiers.neural_base import NeuralVerifier, PreparedRows

CALIBRATION_FILE = "safeladder_calibration.json"


class TemperatureCalibration(BaseModel):
    """Temperature scaling: logits / T before softmax or sigmoid (T > 1 softens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0, description="T > 0; logits are divided by it.")
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Free-form notes (data set, ECE before/after)."
    )


class IsotonicMap(BaseModel):
    """Breakpoints of a monotone map [0, 1] → [0, 1]; interpolated linearly between them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    x: list[float] = Field(description="Input probabilities, non-decreasing, at least 2.")
    y: list[float] = Field(description="Output probabilities in [0, 1], one per x, non-decreasing.")

    @model_validator(mode="after")
    def _shape(self) -> IsotonicMap:
        if len(self.x) != len(self.y) or len(self.x) < 2:
            raise ValueError(
                f"isotonic x and y need the same length >= 2, got {len(self.x)} and {len(self.y)}"
            )
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("isotonic x must be non-decreasing")
        if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
            raise ValueError("isotonic y must be non-decreasing (an isotonic map)")
        if any(not 0.0 <= v <= 1.0 for v in self.y):
            raise ValueError("isotonic y values must lie in [0, 1]")
        return self

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self.x, self.y)


class IsotonicCalibration(BaseModel):
    """Isotonic calibration: probabilities mapped through breakpoints (shared and/or per label)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["isotonic"] = "isotonic"
    x: list[float] | None = Field(default=None, description="Shared breakpoints' inputs.")
    y: list[float] | None = Field(default=None, description="Shared breakpoints' outputs.")
    per_label: dict[str, IsotonicMap] = Field(
        default_factory=dict, description="Multi-label: label name → its own breakpoints."
    )
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Free-form notes (data set, ECE before/after)."
    )

    @model_validator(mode="after")
    def _some_map(self) -> IsotonicCalibration:
        if (self.x is None) != (self.y is None):
            raise ValueError("isotonic calibration: give both x and y, or neither")
        if self.x is None and not self.per_label:
            raise ValueError("isotonic calibration: give x and y, or per_label maps")
        if self.x is not None:
            IsotonicMap(x=self.x, y=self.y or [])
        return self

    def shared(self) -> IsotonicMap | None:
        return IsotonicMap(x=self.x, y=self.y) if self.x is not None and self.y else None


Calibration = Annotated[TemperatureCalibration | IsotonicCalibration, Field(discriminator="kind")]


def read_calibration(model_dir: str | Path) -> TemperatureCalibration | IsotonicCalibration | None:
    """The calibration saved in ``model_dir/safeladder_calibration.json``, or None."""
    from pydantic import TypeAdapter

    f = Path(model_dir) / CALIBRATION_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        return TypeAdapter(Calibration).validate_python(data)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"{f}: invalid calibration file: {exc}") from exc


class WindowConfig(BaseModel):
    """Score a long completion as overlapping windows of its tokens (``render.windows``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(
        default=256,
        ge=1,
        description=(
            "Completion tokens per window (at most what max_length leaves beside the special "
            "tokens); the prompt fills the rest of each window, trimmed from the left."
        ),
    )
    stride: int = Field(
        default=192, ge=1, description="Completion tokens between window starts (<= size)."
    )
    aggregate: Literal["min", "mean"] = Field(
        default="min",
        description="Row score from its window scores: 'min' (the worst window) or 'mean'.",
    )
    max_windows: int = Field(
        default=16,
        ge=1,
        description=(
            "Windows per row at most; a completion longer than size + (max_windows - 1) x "
            "stride tokens keeps its end and the row counts as truncated."
        ),
    )

    @model_validator(mode="after")
    def _stride_within_size(self) -> WindowConfig:
        if self.stride > self.size:
            raise ValueError(
                f"windows.stride: {self.stride} > size {self.size} would skip tokens between "
                "windows; use a stride <= size"
            )
        return self


class ClassifierRenderConfig(RenderConfig):
    """``RenderConfig`` plus ``windows``; left out of dumps (and fingerprints) when unset."""

    windows: WindowConfig | None = Field(
        default=None,
        description=(
            "Score the completion as windows {size, stride, aggregate: min|mean, max_windows} "
            "of its tokens, each with as much of the prompt as fits, in one engine pass; "
            "null = one row cut to max_length."
        ),
    )

    @model_serializer(mode="wrap")
    def _drop_unset_windows(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if self.windows is None and isinstance(out, dict):
            out.pop("windows", None)
        return out


class ClassifierConfig(VerifierConfig):
    """Config of a sequence-classifier verifier; see the module docstring."""

    type: Literal["classifier"] = "classifier"
    path: str = Field(
        description="Local Hugging Face sequence-classification directory (no Hub downloads)."
    )
    good_label: str | int | None = Field(
        default=None,
        description=(
            "Single-label: the label whose probability is the score (name from the model's "
            "id2label, or index). Required when the head has 2+ labels; unused for multi-label."
        ),
    )
    multi_label: bool | None = Field(
        default=None,
        description=(
            "Per-label sigmoid probabilities instead of a softmax; null = from the model "
            "config's problem_type (multi_label_classification)."
        ),
    )
    label_polarity: Literal["bad", "good"] = Field(
        default="bad",
        description=(
            "Multi-label: 'bad' = each label flags a problem (goodness 1 - p); 'good' = each "
            "label is a wanted quality (goodness p)."
        ),
    )
    combine: Literal["min", "mean", "weights"] = Field(
        default="min",
        description="Multi-label: how the per-label goodness values make the score.",
    )
    weights: dict[str, float] | None = Field(
        default=None,
        description="Multi-label with combine: weights — label name → weight (>= 0).",
    )
    calibration: Literal["auto", "none"] | Calibration = Field(
        default="auto",
        description=(
            "'auto' = the model dir's safeladder_calibration.json when present; 'none'; or "
            "{kind: temperature, temperature: T} / {kind: isotonic, x: [...], y: [...]}."
        ),
    )
    render: ClassifierRenderConfig = Field(
        default_factory=ClassifierRenderConfig,
        description="How rows become the model's input text (plus optional windows).",
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="Device, dtype, batching and caching."
    )
    image_limits: ImageLimits = Field(
        default_factory=ImageLimits,
        description=(
            "Vision-language checkpoints: limits every image of a row passes before it is "
            "decoded (count, pixels, bytes, root, http); a refused image is that row's error."
        ),
    )

    @field_validator("render", mode="before")
    @classmethod
    def _plain_render(cls, v: Any) -> Any:
        if isinstance(v, RenderConfig) and not isinstance(v, ClassifierRenderConfig):
            return v.model_dump()
        return v

    @field_validator("path")
    @classmethod
    def _path_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("path: give the local directory of the classifier")
        return v

    @model_validator(mode="after")
    def _weights_match_combine(self) -> ClassifierConfig:
        if self.combine == "weights" and not self.weights:
            raise ValueError("combine: 'weights' needs weights: {label: weight, ...}")
        if self.weights is not None and self.combine != "weights":
            raise ValueError("weights: given but combine is not 'weights'; set combine: weights")
        if self.weights:
            if any(w < 0 for w in self.weights.values()):
                raise ValueError("weights: every weight must be >= 0")
            if sum(self.weights.values()) <= 0:
                raise ValueError("weights: at least one weight must be > 0")
        return self

    def build(self) -> Verifier:
        return ClassifierVerifier(self)


class ClassifierVerifier(NeuralVerifier):
    """Scores rows with a sequence classifier; ``score_range`` is [0, 1]."""

    score_range = (0.0, 1.0)

    def __init__(self, config: ClassifierConfig):
        super().__init__(config)
        self.cfg = config
        loaded = self._load(config.path, config.render, config.runtime)
        mc = loaded.config
        n = int(getattr(mc, "num_labels", 0) or len(getattr(mc, "id2label", {}) or {}))
        id2label = {int(k): str(v) for k, v in (getattr(mc, "id2label", None) or {}).items()}
        self.labels = [id2label.get(i, f"LABEL_{i}") for i in range(n)]
        self.multi = (
            config.multi_label
            if config.multi_label is not None
            else getattr(mc, "problem_type", None) == "multi_label_classification"
        )
        self.good_index: int | None = None
        if not self.multi:
            self.good_index = self._resolve_good_label(config.good_label)
        self.weight_vec: np.ndarray | None = None
        if self.multi and config.combine == "weights":
            assert config.weights is not None
            unknown = sorted(set(config.weights) - set(self.labels))
            if unknown:
                raise ConfigError(
                    f"weights: unknown labels {unknown}; the model's labels are {self.labels}"
                )
            self.weight_vec = np.array([config.weights.get(lab, 0.0) for lab in self.labels])
        if config.calibration == "auto":
            self.calibration = read_calibration(loaded.path)
        elif config.calibration == "none":
            self.calibration = None
        else:
            self.calibration = config.calibration
        if isinstance(self.calibration, IsotonicCalibration):
            unknown = sorted(set(self.calibration.per_label) - set(self.labels))
            if unknown:
                raise ConfigError(
                    f"calibration.per_label: unknown labels {unknown}; labels are {self.labels}"
                )
        self.windows = config.render.windows
        if self.windows is not None and loaded.processor is not None:
            raise ConfigError(
                f"render.windows: {config.path!r} is a vision-language model; windows apply to "
                "text classifiers only (remove render.windows)"
            )

    def _fingerprint_state(self) -> str:
        cal = self.calibration
        return "calibration:" + (cal.model_dump_json() if cal is not None else "none")

    def _resolve_good_label(self, good: str | int | None) -> int:
        labels = self.labels
        if len(labels) == 1:
            if good not in (None, 0, labels[0]):
                raise ConfigError(
                    f"good_label: {good!r}, but {self.cfg.path!r} has one output "
                    f"({labels[0]!r}, scored as sigmoid(logit)); leave good_label unset"
                )
            return 0
        if good is None:
            raise ConfigError(
                f"good_label: required for the {len(labels)}-label classifier {self.cfg.path!r}; "
                f"one of {labels} (or an index)"
            )
        if isinstance(good, int):
            if not 0 <= good < len(labels):
                raise ConfigError(
                    f"good_label: index {good} out of range for {len(labels)} labels {labels}"
                )
            return good
        if good in labels:
            return labels.index(good)
        folded = [lab.lower() for lab in labels]
        if good.lower() in folded and folded.count(good.lower()) == 1:
            return folded.index(good.lower())
        raise ConfigError(f"good_label: {good!r} is not one of the model's labels {labels}")

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(rows, num_labels)`` float64 from raw logits."""
        z = np.asarray(logits, dtype=np.float64)
        if isinstance(self.calibration, TemperatureCalibration):
            z = z / self.calibration.temperature
        probs = sigmoid(z) if self.multi or z.shape[1] == 1 else softmax(z)
        if isinstance(self.calibration, IsotonicCalibration):
            shared = self.calibration.shared()
            if self.multi:
                for j, lab in enumerate(self.labels):
                    m = self.calibration.per_label.get(lab, shared)
                    if m is not None:
                        probs[:, j] = m(probs[:, j])
            elif shared is not None:
                assert self.good_index is not None
                probs[:, self.good_index] = shared(probs[:, self.good_index])
        return probs

    def _good(self, probs: np.ndarray) -> np.ndarray:
        """Scores ``(rows,)`` float64 in [0, 1] from calibrated probabilities."""
        if self.multi:
            good = probs if self.cfg.label_polarity == "good" else 1.0 - probs
            if self.cfg.combine == "min":
                scores = good.min(axis=1)
            elif self.cfg.combine == "mean":
                scores = good.mean(axis=1)
            else:
                assert self.weight_vec is not None
                scores = good @ self.weight_vec / self.weight_vec.sum()
        else:
            assert self.good_index is not None
            scores = probs[:, self.good_index]
        return np.clip(scores, 0.0, 1.0)

    # -- windows: every window of every row is one engine row ---------------------------------

    def _truncation_how(self) -> str:
        win = self.windows
        if win is None:
            return super()._truncation_how()
        # Under windows the whole completion is read; "truncated" mostly means a long prompt
        # lost its beginning, and the warning should not read as if answers were cut.
        return (
            f"windows: the prompt keeps the last tokens that fit beside {win.size} completion "
            f"tokens; only a completion longer than {win.max_windows} windows loses its "
            "beginning"
        )

    def _prepare(self, batch: SampleBatch) -> PreparedRows:
        win = self.windows
        if win is None:
            return super()._prepare(batch)
        n = len(batch)
        inputs: list[Any] = [None] * n
        rows: list[RowResult | None] = [None] * n
        truncated = np.zeros(n, dtype=bool)
        for i, got in enumerate(self._encode_windows(batch)):
            if not isinstance(got, Windowed):
                rows[i] = got
            elif not got.ids[0][0]:
                rows[i] = (float("nan"), "abstain", {"reason": "the row renders to no tokens"})
            else:
                inputs[i] = (got.ids[0], got.offsets[0])
                truncated[i] = bool(got.truncated[0])
        return PreparedRows(inputs, rows, truncated)

    def _encode_windows(self, batch: SampleBatch) -> list[Windowed | RowResult]:
        """One one-row ``Windowed`` per row; under ``on_error: abstain`` a row whose rendering
        fails is an error result, the others are still encoded."""
        win = self.windows
        assert win is not None

        def enc(ps: Any, cs: Any, first: int) -> Windowed:
            return encode_windows(
                ps,
                cs,
                self.loaded.tokenizer,
                self.render,
                size=win.size,
                stride=win.stride,
                max_windows=win.max_windows,
                max_length=self.max_length,
                first_row=first,
            )

        try:
            whole = enc(batch.prompts, batch.completions, 0)
            return [
                Windowed([whole.ids[i]], [whole.offsets[i]], whole.truncated[i : i + 1])
                for i in range(len(batch))
            ]
        except Exception as exc:
            if self.config.on_error == "raise":
                raise VerifierError(f"{self.name}: {exc}") from exc
        out: list[Windowed | RowResult] = []
        for i in range(len(batch)):
            try:
                out.append(enc([batch.prompts[i]], [batch.completions[i]], i))
            except Exception as exc:
                out.append((float("nan"), "error", {"reason": f"{type(exc).__name__}: {exc}"}))
        return out

    def _run(self, inputs: list[Any]) -> np.ndarray:
        """Windowed: all windows in one engine call; per row ``[score, windows, worst offset,
        worst window's logits...]`` (float64). Otherwise the logits per row."""
        win = self.windows
        if win is None:
            return super()._run(inputs)
        flat = [w for ids, _ in inputs for w in ids]
        logits = np.asarray(super()._run(flat), dtype=np.float64)
        scores = self._good(self.probabilities(logits))
        out = np.empty((len(inputs), 3 + logits.shape[1]), dtype=np.float64)
        at = 0
        for r, (ids, offsets) in enumerate(inputs):
            part = scores[at : at + len(ids)]
            worst = int(np.argmin(part))
            agg = part[worst] if win.aggregate == "min" else part.mean()
            out[r, :3] = (agg, len(ids), offsets[worst])
            out[r, 3:] = logits[at + worst]
            at += len(ids)
        return out

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        windowed = self.windows is not None
        logits = outputs[:, 3:] if windowed else outputs
        probs = self.probabilities(logits)
        scores = np.clip(outputs[:, 0], 0.0, 1.0) if windowed else self._good(probs)
        rows: list[RowResult] = []
        for k, (s, row) in enumerate(zip(scores, probs, strict=True)):
            detail: dict[str, Any] = {
                "probs": {lab: float(p) for lab, p in zip(self.labels, row, strict=True)}
            }
            if windowed:
                detail["windows"] = int(outputs[k, 1])
                detail["worst_window_offset"] = int(outputs[k, 2])
            rows.append((float(s), "ok", detail))
        return rows
