"""Verifiers for reward tests whose scores are written into each row's meta, so every expected
total can be computed by hand. Used through ``{"type": "custom", "target": "tests.rewards.fixture_verifiers:..."}``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np

from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers.base import Verifier

#: rows scored per tag, to check that each verifier ran once and only on the rows it needed.
ROWS_SEEN: Counter[str] = Counter()
CALLS: Counter[str] = Counter()


def meta_score(sample: Sample, key: str = "s", tag: str = "") -> float | None:
    """The score stored in ``meta[key]``; None (or absent) abstains."""
    if tag:
        ROWS_SEEN[tag] += 1
    return sample.meta.get(key)


def raise_on_boom(batch: SampleBatch, key: str = "s") -> list[float | None]:
    """A batch verifier that raises when any row's meta has ``boom`` (a poisoned row)."""
    CALLS["boom"] += 1
    for m in batch.metas:
        if m.get("boom"):
            raise ValueError(f"cannot handle {m['boom']!r}")
    return [m.get(key) for m in batch.metas]


def meta_batch(batch: SampleBatch, key: str = "s", tag: str = "") -> list[float | None]:
    if tag:
        CALLS[tag] += 1
        ROWS_SEEN[tag] += len(batch)
    return [m.get(key) for m in batch.metas]


class CopyTimesTwo(Verifier):
    """Reads the term named in ``kwargs['needs']`` from context and returns twice its score."""

    def __init__(self, config):  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.requires = (config.kwargs["needs"],)

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        dep = context[self.requires[0]]
        assert len(dep) == len(batch)
        scores = dep.scores * 2
        status = np.where(np.isnan(scores), "abstain", "ok")
        return ScoreBatch(self.name, scores, status)
