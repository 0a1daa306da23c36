"""The verifier contract: a frozen, tagged pydantic config that ``build()``s a ``Verifier``.

Every verifier's ``score(samples, context=None) -> ScoreBatch`` returns one float32 score per
row (higher is better), NaN with a non-``ok`` status when it cannot score, and the same result
whether the rows come in one batch or one at a time.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from safeladder.errors import ConfigError, VerifierError
from safeladder.types import Sample, SampleBatch, ScoreBatch

RowResult = tuple[float, str, dict[str, Any]]
T = TypeVar("T")


def ok(score: float, **detail: Any) -> RowResult:
    """A scored row."""
    return (float(score), "ok", detail)


def abstain(reason: str, **detail: Any) -> RowResult:
    """A row the verifier declines to score (NaN + the reason)."""
    return (float("nan"), "abstain", {"reason": reason, **detail})


def timed_out(reason: str, **detail: Any) -> RowResult:
    """A row whose check ran past its wall-clock limit."""
    return (float("nan"), "timeout", {"reason": reason, **detail})


NestedSpec = dict[str, Any] | str


def check_nested_spec(value: NestedSpec, what: str) -> NestedSpec:
    """``value`` unchanged if it parses as a verifier config or preset name, else ValueError
    naming ``what`` (e.g. "the member verifier"): for verifiers built on other verifiers
    (``ensemble`` members, ``unwarranted_refusal`` judges), checked when their config is."""
    from safeladder.verifiers import parse_verifier_config  # the registry imports the verifiers

    try:
        parse_verifier_config(value)
    except ConfigError as exc:
        raise ValueError(f"{what} config is invalid: {exc}") from exc
    return value


class VerifierConfig(BaseModel):
    """Fields every verifier config has. Subclasses add ``type: Literal["<module name>"]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    name: str | None = Field(
        default=None, description="Display name of this verifier (defaults to its type)."
    )
    on_error: Literal["raise", "abstain"] = Field(
        default="raise",
        description=(
            "What an unexpected failure on a row does: 'raise' stops with a VerifierError naming "
            "the row; 'abstain' scores the row NaN with status 'error' and the message in details."
        ),
    )

    def build(self) -> Verifier:
        raise NotImplementedError(f"{type(self).__name__}.build")

    def display_name(self) -> str:
        return self.name or self.type


class Verifier(ABC):
    """Base class of every verifier.

    Subclasses implement ``_score_batch``; ``score`` handles input coercion and checks the output.
    ``score_range`` is the closed interval every finite score lies in.
    """

    score_range: ClassVar[tuple[float, float]] = (-np.inf, np.inf)
    #: Names of other reward terms this verifier reads from ``context`` (e.g. correctness).
    requires: tuple[str, ...] = ()
    #: Class default of ``reads_reference``.
    _reads_reference: ClassVar[bool] = False
    #: Class default of ``reads_images``.
    _reads_images: ClassVar[bool] = False

    def __init__(self, config: VerifierConfig):
        self.config = config

    @property
    def name(self) -> str:
        return self.config.display_name()

    @property
    def reads_reference(self) -> bool:
        """Whether scoring reads ``Sample.reference`` (answer checks do, a safety classifier
        does not). A reward reports rows whose reference no applied term reads."""
        return self._reads_reference

    @property
    def reads_images(self) -> bool:
        """Whether scoring looks at a row's images (``image_safety`` and vision-language
        checkpoints do, a text classifier does not). A reward reports image-bearing rows that
        no applied term looked at."""
        return self._reads_images

    @property
    def fingerprint(self) -> str:
        """Short stable hash of the config without its display name (neural verifiers add their checkpoint)."""
        payload = json.dumps(
            self.config.model_dump(mode="json", exclude={"name"}), sort_keys=True, default=str
        )
        payload += self._fingerprint_extra()
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _fingerprint_extra(self) -> str:
        return ""

    def score(
        self,
        samples: SampleBatch | Sample | Iterable[Sample | Mapping[str, Any]],
        context: Mapping[str, ScoreBatch] | None = None,
    ) -> ScoreBatch:
        """Score a batch.

        Args:
            samples: a ``SampleBatch``, a list of ``Sample`` (or sample dicts), or one ``Sample``.
            context: scores of other reward terms for the same rows (by term name), for
                verifiers that declare ``requires``.

        Returns:
            ``ScoreBatch`` with ``scores`` float32 of shape ``(len(samples),)``.
        """
        batch = SampleBatch.coerce(samples)
        result = self._score_batch(batch, context or {})
        if len(result) != len(batch):
            raise VerifierError(f"{self.name}: returned {len(result)} scores for {len(batch)} rows")
        result.name = self.name
        lo, hi = self.score_range
        s = result.scores
        bad = np.flatnonzero(~np.isnan(s) & ((s < lo) | (s > hi)))
        if bad.size:
            i = int(bad[0])
            raise VerifierError(
                f"{self.name}: row {i} scored {s[i]}, outside the declared range [{lo}, {hi}]"
            )
        return result

    @abstractmethod
    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        """Score every row of ``batch``; must return exactly ``len(batch)`` rows in order."""

    def _guard(self, i: int, fn: Callable[..., T], *args: Any) -> T | RowResult:
        """Run ``fn(*args)`` for row ``i`` under the ``on_error`` policy."""
        try:
            return fn(*args)
        except ConfigError:
            raise  # a broken setup (a missing model) is no row's fault: never a row outcome
        except Exception as exc:
            if self.config.on_error == "raise":
                raise VerifierError(f"{self.name}: row {i}: {type(exc).__name__}: {exc}") from exc
            return (float("nan"), "error", {"reason": f"{type(exc).__name__}: {exc}"})

    def close(self) -> None:
        """Release processes / models held by the verifier (idempotent)."""
        return None


class RuleVerifier(Verifier):
    """A verifier that is a pure function of one sample: implement ``score_row``."""

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        rows = [self._guard(i, self.score_row, sample) for i, sample in enumerate(batch)]
        return ScoreBatch.from_rows(self.name, rows)

    @abstractmethod
    def score_row(self, sample: Sample) -> RowResult:
        """``(score, status, detail)`` for one sample; use ``ok`` / ``abstain`` helpers."""
