"""``confidence_calibration``: reward a stated confidence that matches correctness.

The reliability reward of Deliberative Searcher (arXiv 2507.16727; see
``reference/papers.md`` §2): be confident when correct, unsure when wrong. The model states a
confidence (the paper uses 0–10); this verifier parses the **last** stated confidence, normalises
it to c ∈ [0, 1], takes correctness from another verifier, and scores:

- ``mode: threshold`` — 1.0 if (correct and c ≥ ζ) or (wrong and c < ζ), else 0.0. ζ =
  ``threshold`` = 0.5, i.e. the paper's ζ = 5 on 0–10. Whether the paper counts c = ζ as
  confident (≥) or not (>) is not known (papers.md marks the rule as an assumption); ≥ is the
  default and ``threshold_inclusive: false`` gives >.
- ``mode: brier`` — 1 − (c − y)², y = 1 if correct else 0; in [0, 1], higher is better (a
  proper scoring rule: its expectation is maximised by the true probability of being correct).

Correctness (exactly one of):

- ``correctness_from: <term name>`` — a term of the same reward (e.g. ``qa_match`` named
  ``acc``). The verifier declares ``requires = (name,)`` and reads ``context[name]``: correct ⇔
  its score ≥ ``correct_threshold``. A row where that term did not score (abstain, timeout,
  error, or skipped by a route) abstains here, with the reason. Calling ``score`` without that
  term in ``context`` is a wiring mistake and raises ``ConfigError`` naming the term.
- ``correctness: {<verifier config>}`` — a nested verifier, built on first use and run on the
  batch (standalone use, e.g. ``{"type": "qa_match"}``).

A completion with no parseable confidence: ``missing: penalty`` (default) scores
``missing_score`` (default 0.0 — the worst score of both modes, so omitting the confidence never
pays), ``missing: abstain`` gives NaN.

What counts as a stated confidence (case-insensitive; ``parse_confidence``):
``<confidence>7</confidence>``, "Confidence: 7/10", "confidence: 0.8", "Confidence level: 85%",
"my confidence is 8 out of 10", "I am 90% confident" / "90% sure" / "90% certain", "with 90%
confidence", and Chinese "置信度：8" / "信心：80%" / "我有80%的把握". A bare percentage with no
confidence word ("GDP grew 85%") is **not** read as a confidence, nor is "95% confidence
interval". A number with an explicit scale ("7/10",
"85%", "8 out of 10") is read on that scale whatever ``scale`` says; a bare number is read on
``scale``: ``0-10`` (÷10), ``0-1``, ``percent`` (÷100), or ``auto`` (≤ 1 → as is, ≤ 10 → ÷10,
≤ 100 → ÷100; so under ``auto`` "Confidence: 1" means 1.0 — set the scale your prompt uses).
Values outside the scale count as missing.

Inputs: ``completion`` (the stated confidence), and correctness: ``context[correctness_from]``
(another term's scores) or what the nested ``correctness`` verifier reads (usually
``completion`` and ``reference``).
Score range: [0, 1]; NaN with status ``abstain`` when correctness is unknown for the row (or
the confidence is missing and ``missing: abstain``).

Adaptive λ (``adaptive_lambda: {...}``, see ``safeladder.verifiers.adaptive_lambda``): the
score becomes λ·r_reliab, where λ is the Lagrange multiplier of the paper's constraint "the
false-certain rate stays below ε", updated after every batch by projected dual ascent
``λ ← clip(λ + lr·(rate − target_rate), 0, lambda_max)``. Give the term weight 1.0: λ is the
weight. A row is false-certain when it is wrong and its stated confidence counts as confident
(≥ ζ, or > ζ with ``threshold_inclusive: false``, in both modes); the rate is over the rows
scored ``ok`` (a missing confidence under ``missing: penalty`` counts, as not false-certain;
abstentions do not count). The batch is scored with λ before its update. Each row's details
carry ``reliability`` (r_reliab), ``lambda``, ``false_certain`` and ``batch_metrics``
(``lambda``, ``lambda_next``, ``false_certain_rate``, ``lambda_step``), which
``RewardResult.log_dict`` reports as ``<prefix>/<term>/lambda`` and so on. The verifier is
stateful: ``state_dict()`` / ``load_state_dict()``, and ``Reward.save_state(dir)`` /
``load_state(dir)``. Because of that state, scoring the same rows twice gives different
scores once λ has moved: the usual "deterministic" contract holds for a given *sequence* of
batches.

Example::

    {"type": "confidence_calibration", "mode": "threshold", "scale": "0-10",
     "correctness_from": "acc"}
    # "<answer>Paris</answer><confidence>8</confidence>" with acc = 1 → 1.0; with acc = 0 → 0.0
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from pydantic import Field, field_validator, model_validator

from safeladder.errors import ConfigError
from safeladder.types import SampleBatch, ScoreBatch
from safeladder.verifiers.adaptive_lambda import AdaptiveLambda, AdaptiveLambdaConfig
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, abstain, ok

Scale = Literal["0-10", "0-1", "percent", "auto"]

# A number not glued to other digits ("1234%" is not read as "34%").
_NUM = r"(?<![\d.])(?P<num>\d{1,3}(?:\.\d{1,12})?|\.\d{1,12})(?![\d])"
# The explicit scale after a number: "%", "/10", "out of 10".
_UNIT = r"(?:\s{0,2}(?:(?P<pct>%|％|percent\b)|/\s{0,2}(?P<den>\d{1,3})|out\s+of\s+(?P<outof>\d{1,3})))?"
# Each form of a stated confidence; all quantifiers are bounded (no catastrophic backtracking).
_FORMS = [
    # <confidence> 7 </confidence>
    re.compile(rf"<confidence>\s{{0,8}}{_NUM}{_UNIT}\s{{0,8}}</confidence>", re.IGNORECASE),
    # Confidence: 7/10 · confidence level is 0.8 · my confidence = 85%
    re.compile(
        rf"\bconfidence(?:\s+(?:level|score|rating))?\s{{0,3}}(?:[:=]|is\b|of\b)?\s{{0,3}}"
        rf"(?:about\s+|around\s+|approximately\s+|~\s?)?{_NUM}{_UNIT}",
        re.IGNORECASE,
    ),
    # I am 90% confident · 90 percent sure · with 90% confidence · 我有80%的把握
    re.compile(
        rf"{_NUM}\s{{0,2}}(?P<pct>%|％|percent\b)\s{{0,2}}"
        r"(?:(?:confident|sure|certain|confidence(?!\s+intervals?))\b|的?(?:把握|信心))",
        re.IGNORECASE,
    ),
    # 置信度：8 · 信心：80% · 把握：7/10
    re.compile(rf"(?:置信度|信心|把握)\s{{0,2}}[:：=为是]?\s{{0,2}}{_NUM}{_UNIT}"),
]
_SCALES: tuple[str, ...] = get_args(Scale)


def _on_scale(value: float, denominator: float | None, scale: str) -> float | None:
    if denominator is not None:
        c = value / denominator
    elif scale == "0-10":
        c = value / 10
    elif scale == "0-1":
        c = value
    elif scale == "percent":
        c = value / 100
    elif value <= 1:
        c = value
    elif value <= 10:
        c = value / 10
    else:
        c = value / 100
    return c if 0.0 <= c <= 1.0 else None


def parse_confidence(text: str, scale: str = "auto") -> float | None:
    """The last stated confidence in ``text``, normalised to [0, 1]; None when there is none.

    Args:
        text: model output.
        scale: how a bare number is read: "0-10", "0-1", "percent" or "auto" (see the module
            docstring); explicit "/10", "out of 10" and "%" always win.

    >>> parse_confidence("Answer: Paris. Confidence: 7/10")
    0.7
    >>> parse_confidence("<confidence>3</confidence> ... <confidence>8</confidence>", "0-10")
    0.8
    >>> parse_confidence("I am 90% confident.")
    0.9
    >>> parse_confidence("Sales grew 85% last year.") is None
    True
    """
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    last: re.Match[str] | None = None
    for form in _FORMS:
        for m in form.finditer(text):
            if last is None or m.start() > last.start():
                last = m
    if last is None:
        return None
    found = last.groupdict()
    denominator: float | None = None
    if found.get("pct"):
        denominator = 100.0
    elif found.get("den") or found.get("outof"):
        denominator = float(found.get("den") or found["outof"])
        if denominator == 0:
            return None
    return _on_scale(float(found["num"]), denominator, scale)


class ConfidenceCalibrationConfig(VerifierConfig):
    """Config of the confidence-calibration reward."""

    type: Literal["confidence_calibration"] = "confidence_calibration"
    mode: Literal["threshold", "brier"] = Field(
        default="threshold",
        description=(
            "'threshold': 1 if (correct and confident) or (wrong and unsure) else 0; "
            "'brier': 1 - (confidence - correct)^2."
        ),
    )
    scale: Scale = Field(
        default="auto",
        description="How a bare stated number is read: '0-10', '0-1', 'percent' or 'auto'.",
    )
    threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="threshold mode: ζ on the [0, 1] scale (0.5 = the paper's 5 on 0-10).",
    )
    threshold_inclusive: bool = Field(
        default=True,
        description="threshold mode: a confidence equal to ζ counts as confident (>=); false means >.",
    )
    correctness_from: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the reward term whose score says whether the row is correct.",
    )
    correctness: dict[str, Any] | None = Field(
        default=None,
        description="A nested verifier config judging correctness (standalone use), e.g. {type: qa_match}.",
    )
    correct_threshold: float = Field(
        default=0.5,
        description="A row is correct when the correctness score is >= this.",
    )
    missing: Literal["penalty", "abstain"] = Field(
        default="penalty",
        description="No parseable confidence: 'penalty' scores missing_score, 'abstain' gives NaN.",
    )
    missing_score: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Score of a completion without a stated confidence when missing is 'penalty' (0 = worst).",
    )
    adaptive_lambda: AdaptiveLambdaConfig | None = Field(
        default=None,
        description=(
            "Score λ·r_reliab with λ adapted per batch to hold the false-certain rate under "
            "target_rate (Deliberative Searcher); null = the plain score (weight is a fixed λ). "
            "Fields: lambda_init, lr (η), target_rate (ε), lambda_max, min_rows, state_file "
            "(safeladder.verifiers.adaptive_lambda.AdaptiveLambdaConfig)."
        ),
    )

    @field_validator("correctness")
    @classmethod
    def _nested_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        # Imported here: the registry imports this module.
        from safeladder.verifiers import parse_verifier_config

        try:
            parse_verifier_config(value)
        except ConfigError as exc:
            raise ValueError(f"nested verifier config is invalid: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ConfidenceCalibrationConfig:
        if (self.correctness_from is None) == (self.correctness is None):
            raise ValueError(
                "set exactly one of correctness_from (a term of the same reward) and correctness "
                "(a nested verifier config such as {type: qa_match})"
            )
        return self

    def build(self) -> Verifier:
        if self.adaptive_lambda is not None:
            return AdaptiveConfidenceCalibrationVerifier(self)
        return ConfidenceCalibrationVerifier(self)


def is_confident(confidence: float, threshold: float, inclusive: bool) -> bool:
    """Whether a stated confidence in [0, 1] counts as "certain" against ζ = ``threshold``."""
    return confidence >= threshold if inclusive else confidence > threshold


def calibration_score(
    confidence: float, correct: bool, mode: str, threshold: float, inclusive: bool
) -> float:
    """The reward of one row (see the module docstring).

    >>> calibration_score(0.8, True, "threshold", 0.5, True)
    1.0
    >>> round(calibration_score(0.8, False, "brier", 0.5, True), 6)
    0.36
    """
    if mode == "brier":
        return 1.0 - (confidence - float(correct)) ** 2
    return 1.0 if is_confident(confidence, threshold, inclusive) == correct else 0.0


class ConfidenceCalibrationVerifier(Verifier):
    """Scores stated confidence against correctness from a sibling term or a nested verifier."""

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: ConfidenceCalibrationConfig):
        super().__init__(config)
        self.cfg = config
        self.requires = (config.correctness_from,) if config.correctness_from else ()
        self._inner: Verifier | None = None
        self._lock = threading.Lock()

    @property
    def reads_reference(self) -> bool:
        # A nested correctness verifier (an answer check) reads it; correctness_from reads
        # another term's scores, and that term reports for itself.
        return self.cfg.correctness is not None

    def _nested(self) -> Verifier:
        with self._lock:
            if self._inner is None:
                from safeladder.verifiers import parse_verifier_config

                assert self.cfg.correctness is not None
                self._inner = parse_verifier_config(self.cfg.correctness).build()
            return self._inner

    def _correctness(
        self, batch: SampleBatch, context: Mapping[str, ScoreBatch]
    ) -> tuple[ScoreBatch, str]:
        name = self.cfg.correctness_from
        if name is None:
            inner = self._nested()
            return inner.score(batch, context), f"nested verifier {inner.name!r}"
        if name not in context:
            available = ", ".join(sorted(context)) or "none"
            raise ConfigError(
                f"{self.name}: correctness_from={name!r} but the context has no term {name!r} "
                f"(available: {available}); add a term named {name!r} to the same reward, or use "
                "correctness: {<verifier config>} for standalone scoring"
            )
        sb = context[name]
        if len(sb) != len(batch):
            raise ConfigError(
                f"{self.name}: context term {name!r} has {len(sb)} rows for a batch of {len(batch)}"
            )
        return sb, f"term {name!r}"

    def _row(self, text: str, score: float, status: str, source: str) -> RowResult:
        if status != "ok" or math.isnan(score):
            return abstain(f"correctness from {source} has status {status!r} on this row")
        correct = bool(score >= self.cfg.correct_threshold)
        c = parse_confidence(text, self.cfg.scale)
        if c is None:
            if self.cfg.missing == "abstain":
                return abstain("no stated confidence found", correct=correct)
            return ok(self.cfg.missing_score, confidence=None, correct=correct, missing=True)
        value = calibration_score(
            c, correct, self.cfg.mode, self.cfg.threshold, self.cfg.threshold_inclusive
        )
        return ok(value, confidence=c, correct=correct)

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        sb, source = self._correctness(batch, context)
        scores = np.asarray(sb.scores, dtype=np.float64)
        rows = [
            self._guard(i, self._row, text, float(scores[i]), str(sb.status[i]), source)
            for i, text in enumerate(batch.completions)
        ]
        return ScoreBatch.from_rows(self.name, rows)


class AdaptiveConfidenceCalibrationVerifier(ConfidenceCalibrationVerifier):
    """``confidence_calibration`` with ``adaptive_lambda``: scores λ·r_reliab and updates λ.

    Stateful (see the module docstring): ``state_dict()`` / ``load_state_dict()`` carry λ and
    its counts. Each ``score`` call is one batch of the dual ascent; a reward that had to
    bisect a batch because a row raised (``on_error: raise``) makes one update per sub-batch
    that scored, so use ``on_error: abstain`` where that matters.
    """

    # λ has no upper bound unless lambda_max is set.
    score_range: ClassVar[tuple[float, float]] = (0.0, math.inf)
    stateful: ClassVar[bool] = True

    def __init__(self, config: ConfidenceCalibrationConfig):
        super().__init__(config)
        assert config.adaptive_lambda is not None
        self.lam = AdaptiveLambda(config.adaptive_lambda)

    def state_dict(self) -> dict[str, Any]:
        """λ, its number of updates and the cumulative counts (JSON-ready)."""
        return self.lam.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; ``ConfigError`` when it is malformed."""
        self.lam.load_state_dict(state)

    def metrics(self) -> dict[str, float]:
        """λ now, the last batch's and the overall false-certain rate (``AdaptiveLambda.metrics``)."""
        return self.lam.metrics()

    def _false_certain(self, detail: Mapping[str, Any]) -> bool:
        c = detail.get("confidence")
        return (
            detail.get("correct") is False
            and c is not None
            and is_confident(float(c), self.cfg.threshold, self.cfg.threshold_inclusive)
        )

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        base = super()._score_batch(batch, context)
        counted = [i for i, st in enumerate(base.status) if st == "ok"]
        flags = [self._false_certain(base.details[i]) for i in counted]
        step = self.lam.observe(flags)
        batch_metrics = step.metrics()
        scores = base.scores.astype(np.float64)
        details: list[dict[str, Any]] = [
            {**d, "batch_metrics": batch_metrics} for d in base.details
        ]
        for i, flag in zip(counted, flags, strict=True):
            details[i].update(
                reliability=float(scores[i]), false_certain=flag, **{"lambda": step.lam}
            )
            scores[i] = step.lam * scores[i]
        return ScoreBatch(self.name, scores.astype(np.float32), base.status, details)
