"""``custom``: a user verifier named by an import path.

``target: "pkg.module:attr"`` names one of:
- a ``Verifier`` subclass: built as ``cls(config)`` (its own config class is not required);
- any other class: instantiated with ``kwargs``; its ``score(batch)`` is called;
- a function: with ``mode: row`` called as ``fn(sample, **kwargs)`` per row; with
  ``mode: batch`` called once as ``fn(batch, **kwargs)``.

Whatever it returns per row: a number is a score, ``None`` / NaN is an abstention, a
``(score, status, detail)`` triple is passed through, anything else is an error naming the row.

Inputs: whatever the target reads: the whole ``Sample`` (``mode: row``) or ``SampleBatch``
(``mode: batch``); ``reads_reference`` / ``reads_images`` declare whether that includes ``reference`` /
``images``.
Score range: the config's ``score_range`` when given (scores outside it are an error), else
unbounded; ``None`` / NaN from the target is an abstention.

Example::

    {"type": "custom", "target": "my_rewards:has_citation", "kwargs": {"min_refs": 2}}
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from safeladder.errors import ConfigError
from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig


class CustomConfig(VerifierConfig):
    """Config of a user verifier loaded from ``target``."""

    type: Literal["custom"] = "custom"
    target: str = Field(
        description="Import path 'package.module:attribute' of a function or class."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the target."
    )
    mode: Literal["row", "batch"] = Field(
        default="row",
        description="For a function target: 'row' calls it per sample, 'batch' once per batch.",
    )
    score_range: tuple[float, float] | None = Field(
        default=None,
        description="Declared [min, max] of the scores; scores outside it are an error.",
    )
    reads_reference: bool = Field(
        default=True,
        description=(
            "Whether the target reads Sample.reference; set false for a reference-free check "
            "so rows whose reference no term reads are reported."
        ),
    )
    reads_images: bool = Field(
        default=True,
        description=(
            "Whether the target looks at Sample.images (or image parts of a chat prompt); set "
            "false for a text-only check so image-bearing rows no term looks at are reported."
        ),
    )

    @model_validator(mode="after")
    def _target_shape(self) -> CustomConfig:
        mod, sep, attr = self.target.partition(":")
        if not sep or not mod or not attr:
            raise ValueError(
                f"target must look like 'package.module:attribute', got {self.target!r}"
            )
        return self

    def build(self) -> Verifier:
        obj = _import_target(self.target)
        if isinstance(obj, type) and issubclass(obj, Verifier):
            return obj(self)
        return CustomVerifier(self, obj)


def _import_target(target: str) -> Any:
    mod_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(
            f"custom verifier target {target!r}: cannot import module {mod_name!r}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"custom verifier target {target!r}: {mod_name} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    return obj


def _to_row(value: Any, i: int) -> RowResult:
    if isinstance(value, tuple) and len(value) == 3:
        score, status, detail = value
        return (float("nan") if score is None else float(score), str(status), dict(detail or {}))
    if value is None:
        return (float("nan"), "abstain", {"reason": "custom verifier returned None"})
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(
            f"row {i}: expected a number or None, got {type(value).__name__} {value!r:.60}"
        )
    f = float(value)
    if math.isnan(f):
        return (f, "abstain", {"reason": "custom verifier returned NaN"})
    return (f, "ok", {})


class CustomVerifier(Verifier):
    """Wraps a user function or object; see the module docstring for the call conventions."""

    def __init__(self, config: CustomConfig, target: Any):
        super().__init__(config)
        self.cfg = config
        if config.score_range is not None:
            # The range of a user verifier is only known per instance, from its config.
            self.score_range = (float(config.score_range[0]), float(config.score_range[1]))  # type: ignore[misc]
        if isinstance(target, type):
            self._obj = target(**config.kwargs)
            if not callable(getattr(self._obj, "score", None)):
                raise ConfigError(
                    f"custom verifier target {config.target!r}: class has no score(batch) method"
                )
            self._fn: Callable[..., Any] | None = None
        elif callable(target):
            self._obj = None
            self._fn = target
        else:
            raise ConfigError(
                f"custom verifier target {config.target!r} is neither a function nor a class"
            )

    @property
    def reads_reference(self) -> bool:
        return self.cfg.reads_reference

    @property
    def reads_images(self) -> bool:
        return self.cfg.reads_images

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        if self._obj is not None:
            out = self._obj.score(batch)
            if isinstance(out, ScoreBatch):
                return out
            return self._rows_from_values(out, batch)
        assert self._fn is not None
        if self.cfg.mode == "batch":
            try:
                values = self._fn(batch, **self.cfg.kwargs)
            except Exception as exc:
                if self.cfg.on_error == "raise":
                    raise
                return ScoreBatch.from_rows(
                    self.name,
                    [(float("nan"), "error", {"reason": f"{type(exc).__name__}: {exc}"})]
                    * len(batch),
                )
            return self._rows_from_values(values, batch)
        fn = self._fn
        kwargs = self.cfg.kwargs

        def one(s: Sample, i: int) -> RowResult:
            return _to_row(fn(s, **kwargs), i)

        return ScoreBatch.from_rows(
            self.name, [self._guard(i, one, s, i) for i, s in enumerate(batch)]
        )

    def _rows_from_values(self, values: Any, batch: SampleBatch) -> ScoreBatch:
        values = list(values)
        if len(values) != len(batch):
            raise ConfigError(
                f"custom verifier {self.cfg.target!r} returned {len(values)} values for {len(batch)} rows"
            )
        return ScoreBatch.from_rows(
            self.name, [self._guard(i, _to_row, v, i) for i, v in enumerate(values)]
        )
