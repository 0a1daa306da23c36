"""``ensemble``: several P(good) verifiers combined into one probability.

What it checks: whatever its members check (e.g. the MiniLM ``safety`` classifier and a TF-IDF
safety model), combined per row. Inputs: whatever the members read (the batch and the
``context`` are passed to each member as they are). Score range: [0, 1].

Each member is any verifier config or preset name whose declared ``score_range`` lies inside
[0, 1] (a probability of "good"; others are refused at build), with a ``weight`` > 0. The
members are built once with the ensemble and closed with it. ``combine``:

- ``mean``: the weighted mean of the members' scores.
- ``logit_mean``: sigmoid of the weighted mean of logit(score) (scores clipped to
  [1e-6, 1 - 1e-6]): a confident member moves the result more than under ``mean``.
- ``min`` / ``max``: the lowest / highest member score (weights are not used).

A member that does not score a row (abstain / timeout / error, or a non-finite score) is left
out of that row's combination, its status and reason kept in the row's details; a member that
raises is, under ``on_error: raise``, a ``VerifierError`` naming it, and under ``abstain`` left
out of every row. A row no member scores abstains (NaN) with every member's reason.

Example::

    {"type": "ensemble", "combine": "mean",
     "members": [{"verifier": "safety", "weight": 1.0},
                 {"verifier": {"type": "classifier", "path": "ckpt/other"}, "weight": 0.5}]}

Details per row: ``members``: member name → ``{score, status, weight}`` (plus ``reason`` for a
member left out), and ``scored``: how many members entered the combination.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from safeladder.errors import ConfigError, VerifierError
from safeladder.types import SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, check_nested_spec

#: Scores are clipped to [EPS, 1 - EPS] before the logit (logit(0) is -inf).
EPS = 1e-6


class EnsembleMember(BaseModel):
    """One member of an ensemble: a [0, 1] verifier and its weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verifier: dict[str, Any] | str = Field(
        description=(
            "The member: any verifier config (e.g. {type: classifier, path: ...}) or a preset "
            "name; its declared score range must lie inside [0, 1]."
        )
    )
    weight: float = Field(
        default=1.0, gt=0, description="Weight in mean / logit_mean (> 0; unused by min / max)."
    )

    @field_validator("verifier")
    @classmethod
    def _valid(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        return check_nested_spec(value, "the member verifier")


class EnsembleConfig(VerifierConfig):
    """Config of the ensemble verifier (see the module docstring)."""

    type: Literal["ensemble"] = "ensemble"
    members: list[EnsembleMember] = Field(
        min_length=1,
        description="The verifiers combined: [{verifier: <config or preset name>, weight: w}, ...].",
    )
    combine: Literal["mean", "logit_mean", "min", "max"] = Field(
        default="mean",
        description=(
            "How member scores make the row's score: weighted mean, weighted mean in logit "
            "space, min or max (over the members that scored the row)."
        ),
    )

    def build(self) -> Verifier:
        return EnsembleVerifier(self)


def combine_scores(scores: np.ndarray, weights: np.ndarray, how: str) -> float:
    """One row's combination of member scores ``(m,)`` with weights ``(m,)`` (m >= 1).

    >>> combine_scores(np.array([0.2, 0.8]), np.array([1.0, 3.0]), "mean")
    0.65
    >>> round(combine_scores(np.array([0.5, 0.9]), np.array([1.0, 1.0]), "logit_mean"), 4)
    0.75
    """
    if how == "min":
        return float(scores.min())
    if how == "max":
        return float(scores.max())
    w = weights / weights.sum()
    if how == "mean":
        return float(np.clip(scores @ w, 0.0, 1.0))
    p = np.clip(scores, EPS, 1.0 - EPS)
    z = float(np.log(p / (1.0 - p)) @ w)
    return 1.0 / (1.0 + math.exp(-z))


class EnsembleVerifier(Verifier):
    """Scores a batch with every member and combines their scores per row.

    Attributes:
        members: the built member verifiers, in config order.
        member_names: their names in details (``#k`` appended to repeated names).
    """

    score_range = (0.0, 1.0)

    def __init__(self, config: EnsembleConfig):
        super().__init__(config)
        self.cfg = config
        from safeladder.verifiers import parse_verifier_config

        self.members: list[Verifier] = []
        try:
            for k, m in enumerate(config.members):
                v = parse_verifier_config(m.verifier).build()
                self.members.append(v)
                lo, hi = (float(x) for x in v.score_range)
                if lo < 0.0 or hi > 1.0:
                    raise ConfigError(
                        f"members[{k}]: {v.name!r} declares the score range [{lo}, {hi}]; an "
                        "ensemble combines probabilities, so every member must score in [0, 1]"
                    )
        except BaseException:
            self.close()
            raise
        names = [v.name for v in self.members]
        self.member_names = [n if names.count(n) == 1 else f"{n}#{k}" for k, n in enumerate(names)]
        self.weights = np.array([m.weight for m in config.members], dtype=np.float64)
        self.requires = tuple(dict.fromkeys(r for v in self.members for r in v.requires))

    @property
    def reads_reference(self) -> bool:
        return any(v.reads_reference for v in self.members)

    @property
    def reads_images(self) -> bool:
        return any(v.reads_images for v in self.members)

    def _fingerprint_extra(self) -> str:
        return "members=" + ",".join(v.fingerprint for v in self.members)

    def _member_scores(
        self, v: Verifier, batch: SampleBatch, context: Mapping[str, ScoreBatch]
    ) -> ScoreBatch:
        try:
            return v.score(batch, context)
        except Exception as exc:
            if self.config.on_error == "raise":
                if isinstance(exc, ConfigError):
                    raise
                raise VerifierError(
                    f"{self.name}: member {v.name!r}: {type(exc).__name__}: {exc}"
                ) from exc
            reason = f"{type(exc).__name__}: {exc}"
            return ScoreBatch.from_rows(
                v.name, [(math.nan, "error", {"reason": reason})] * len(batch)
            )

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        if not self.members:
            raise VerifierError(f"{self.name}: the ensemble was closed; build it again")
        got = [self._member_scores(v, batch, context) for v in self.members]
        rows: list[RowResult] = []
        for i in range(len(batch)):
            members: dict[str, dict[str, Any]] = {}
            used: list[int] = []
            for k, (name, sb) in enumerate(zip(self.member_names, got, strict=True)):
                s, st = float(sb.scores[i]), str(sb.status[i])
                entry: dict[str, Any] = {"score": s, "status": st, "weight": float(self.weights[k])}
                if st == "ok" and math.isfinite(s):
                    used.append(k)
                else:
                    d = sb.details[i] if i < len(sb.details) else {}
                    entry["reason"] = str(d.get("reason", f"status {st}, score {s}"))
                members[name] = entry
            if not used:
                why = "; ".join(f"{n}: {e['reason']}" for n, e in members.items())
                rows.append(
                    (
                        math.nan,
                        "abstain",
                        {
                            "reason": f"no member scored the row ({why})",
                            "members": members,
                            "scored": 0,
                        },
                    )
                )
                continue
            scores = np.array([float(got[k].scores[i]) for k in used], dtype=np.float64)
            score = combine_scores(scores, self.weights[used], self.cfg.combine)
            rows.append((score, "ok", {"members": members, "scored": len(used)}))
        return ScoreBatch.from_rows(self.name, rows)

    def close(self) -> None:
        """Close every member (idempotent)."""
        members, self.members = self.members, []
        for v in members:
            v.close()
