"""``length``: an efficiency penalty on the completion's length, in [-1, 0] (0 = no penalty).

Two modes:

- ``overlong`` — DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, Eq. 13),
  with ``L = max_length`` and ``C = buffer``::

      score = 0                   if n ≤ L − C
              (L − C − n) / C     if L − C < n ≤ L      (linear from 0 down to −1 at n = L)
              −1                  if n > L

  The boundaries are those of TRL's ``get_soft_overlong_punishment`` (``trl/rewards/
  other_rewards.py``, huggingface/trl @ 01f8dc59): ``n = L − C`` is still free, ``n = L`` scores
  exactly −1. With ``buffer: 0`` it is a hard cut-off (0 up to L, −1 beyond). The defaults
  are DAPO's L = 20480, C = 4096 (tokens in the paper; set them for your unit and budget).

- ``budget`` — a penalty for missing a length budget ``T``, from ``target_length`` or per row from
  ``meta[target_key]`` (the row's value wins; rows without one fall back to ``target_length``, or
  abstain when there is none)::

      side: both   score = −min(1, |n − T| / T)        (hit the budget: too long or too short)
      side: over   score = −min(1, max(0, n − T) / T)  (only exceeding it costs)

  Design inspiration: L1 / LCPO (Aggarwal & Welleck 2025, arXiv 2503.04697), which puts the
  target length in the prompt and penalises |n_target − n| ("LCPO-Exact") or only overruns
  ("LCPO-Max"). Here the penalty is relative to T and saturates at −1 (at n = 0 or n ≥ 2T for
  ``both``, at n ≥ 2T for ``over``), so one scale fits short and long budgets; the weight sets
  the strength. Correctness is another term's job.

Length unit (``unit``): ``tokens`` via ``tokenizer`` (a local path, loaded once per verifier with
``transformers.AutoTokenizer``, counted without special tokens), ``words`` (whitespace-separated;
meaningless for Chinese / Japanese — use ``chars`` or ``tokens`` there) or ``chars``. Trainers
that hand over ``completion_ids`` count generated tokens; re-tokenizing the decoded text can
differ from that by a few tokens at the edges.

Rows never abstain in ``overlong`` mode; in ``budget`` mode a row abstains (NaN, reason in
details) when its ``meta[target_key]`` is missing and there is no ``target_length``, or is not a
positive number (a wrong target type is an abstention, not an error).

Inputs: ``completion`` (its length in ``unit``); in ``budget`` mode ``meta[target_key]``.
Score range: [-1, 0] (0 = no penalty); NaN with status ``abstain`` in ``budget`` mode when
the row has no usable target.

Example::

    {"type": "length", "mode": "overlong", "unit": "tokens", "tokenizer": "/models/qwen",
     "max_length": 4096, "buffer": 512}
    {"type": "length", "mode": "budget", "unit": "words", "target_key": "target_length",
     "side": "over"}
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from safeladder.errors import ConfigError
from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, abstain, ok


class LengthConfig(VerifierConfig):
    """Config of the length penalty."""

    type: Literal["length"] = "length"
    mode: Literal["overlong", "budget"] = Field(
        default="overlong",
        description=(
            "'overlong': DAPO soft overlong punishment (needs max_length, buffer); 'budget': penalty "
            "for missing a target length (needs target_length and/or target_key)."
        ),
    )
    unit: Literal["tokens", "words", "chars"] = Field(
        default="words",
        description="What is counted: 'tokens' (needs tokenizer), 'words' (whitespace split) or 'chars'.",
    )
    tokenizer: str | None = Field(
        default=None,
        description="Local path of a Hugging Face tokenizer, for unit 'tokens' (loaded on first use).",
    )
    max_length: int = Field(
        default=20480,
        gt=0,
        description="overlong: L_max, the length past which the score is -1 (default: DAPO's 20480).",
    )
    buffer: int = Field(
        default=4096,
        ge=0,
        description=(
            "overlong: L_cache, the soft zone (L_max - L_cache, L_max] where the penalty ramps to -1 "
            "(default: DAPO's 4096)."
        ),
    )
    target_length: float | None = Field(
        default=None,
        gt=0,
        description="budget: the target length T (fallback when the row's meta has no target_key).",
    )
    target_key: str | None = Field(
        default=None,
        min_length=1,
        description="budget: meta key holding a per-row target length (e.g. 'target_length').",
    )
    side: Literal["both", "over"] = Field(
        default="both",
        description="budget: 'both' penalises any deviation from T, 'over' only exceeding it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LengthConfig:
        if self.unit == "tokens" and not self.tokenizer:
            raise ValueError(
                "unit 'tokens' needs tokenizer: <local path>; or set unit: words / chars"
            )
        if self.tokenizer and self.unit != "tokens":
            raise ValueError(
                f"tokenizer is set but unit is {self.unit!r}; set unit: tokens (or drop the tokenizer)"
            )
        if self.mode == "overlong":
            if self.buffer > self.max_length:
                raise ValueError(
                    f"buffer ({self.buffer}) must not exceed max_length ({self.max_length})"
                )
            extra = [f for f in ("target_length", "target_key") if getattr(self, f) is not None]
            if extra or self.side != "both":
                raise ValueError(
                    f"{', '.join(extra) or 'side'} only applies to mode 'budget'; remove it or set "
                    "mode: budget"
                )
        else:
            if self.target_length is None and self.target_key is None:
                raise ValueError(
                    "mode 'budget' needs target_length (a fixed T) and/or target_key (a meta key)"
                )
            extra = [f for f in ("max_length", "buffer") if f in self.model_fields_set]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only applies to mode 'overlong'; remove it or set "
                    "mode: overlong"
                )
        return self

    def build(self) -> Verifier:
        return LengthVerifier(self)


def overlong_penalty(n: int, max_length: int, buffer: int) -> float:
    """DAPO soft overlong punishment of a length ``n`` (see the module docstring).

    >>> overlong_penalty(90, max_length=100, buffer=20)
    -0.5
    """
    free = max_length - buffer
    if n <= free:
        return 0.0
    if n <= max_length:
        return (free - n) / buffer
    return -1.0


def budget_penalty(n: float, target: float, side: str = "both") -> float:
    """Relative budget penalty of a length ``n`` against ``target`` (see the module docstring).

    >>> budget_penalty(150, 100), budget_penalty(50, 100, "over")
    (-0.5, 0.0)
    """
    gap = n - target if side == "over" else abs(n - target)
    return 0.0 - min(1.0, max(0.0, gap) / target)


class LengthVerifier(Verifier):
    """Length penalty in [-1, 0]; counts a whole batch at once when the unit is tokens."""

    score_range: ClassVar[tuple[float, float]] = (-1.0, 0.0)

    def __init__(self, config: LengthConfig):
        super().__init__(config)
        self.cfg = config
        self._tok: Any = None
        self._lock = threading.Lock()

    def _tokenizer(self) -> Any:
        with self._lock:
            if self._tok is None:
                from transformers import AutoTokenizer

                try:
                    self._tok = AutoTokenizer.from_pretrained(self.cfg.tokenizer)
                except Exception as exc:  # OSError, ValueError, … : all mean "not a tokenizer dir"
                    raise ConfigError(
                        f"{self.name}: tokenizer: cannot load a tokenizer from {self.cfg.tokenizer!r}: {exc}"
                    ) from exc
            return self._tok

    def lengths(self, texts: list[str]) -> list[int]:
        """Length of each text in ``unit``."""
        if self.cfg.unit == "chars":
            return [len(t) for t in texts]
        if self.cfg.unit == "words":
            return [len(t.split()) for t in texts]
        if not texts:
            return []
        ids = self._tokenizer()(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def _target(self, meta: Mapping[str, Any]) -> float | str:
        """The row's budget, or a reason to abstain."""
        key = self.cfg.target_key
        if key is not None and key in meta:
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, Real):
                return f"meta[{key!r}] is {type(value).__name__} {value!r:.40}, expected a positive number"
            if not (math.isfinite(float(value)) and float(value) > 0):
                return f"meta[{key!r}] is {value!r}, expected a positive number"
            return float(value)
        if self.cfg.target_length is not None:
            return self.cfg.target_length
        return f"meta has no {key!r} and target_length is not set"

    def _row(self, n: int, meta: Mapping[str, Any]) -> RowResult:
        if self.cfg.mode == "overlong":
            return ok(overlong_penalty(n, self.cfg.max_length, self.cfg.buffer), length=n)
        target = self._target(meta)
        if isinstance(target, str):
            return abstain(target, length=n)
        return ok(budget_penalty(n, target, self.cfg.side), length=n, target=target)

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        counts = self.lengths(list(batch.completions))
        rows = [
            self._guard(i, self._row, n, meta)
            for i, (n, meta) in enumerate(zip(counts, batch.metas, strict=True))
        ]
        return ScoreBatch.from_rows(self.name, rows)

    def score_row(self, sample: Sample) -> RowResult:
        """One row (the batch path counts tokens for all rows in one tokenizer call)."""
        return self._row(self.lengths([sample.completion])[0], sample.meta)
