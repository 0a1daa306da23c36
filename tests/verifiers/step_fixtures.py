"""Inner verifiers for the step_scorer tests, so every per-step score is written in the text.

Used through ``{"type": "custom", "target": "tests.verifiers.step_fixtures:..."}``.
"""

from __future__ import annotations

import re
from collections import Counter

from safeladder.types import Sample, SampleBatch

#: calls per tag, and every prefix completion seen per tag (in call order).
CALLS: Counter[str] = Counter()
SEEN: dict[str, list[str]] = {}

_P = re.compile(r"p=(\S+)")


def last_p(sample: Sample) -> float | tuple[float, str, dict[str, str]] | None:
    """The last ``p=<value>`` on the prefix's last line (its last step for one-line steps).

    ``p=timeout`` reports a timeout, ``p=boom`` raises, and no ``p=`` abstains (None).
    """
    found = _P.findall(sample.completion.rsplit("\n", 1)[-1])
    if not found:
        return None
    value = found[-1]
    if value == "timeout":
        return (float("nan"), "timeout", {"reason": "fixture timeout"})
    if value == "boom":
        raise RuntimeError("fixture failure")
    return float(value)


def last_p_batch(batch: SampleBatch, tag: str = "") -> list[object]:
    """``last_p`` over a batch, recording the call and the prefixes under ``tag``."""
    CALLS[tag] += 1
    SEEN.setdefault(tag, []).extend(batch.completions)
    return [last_p(s) for s in batch]


def line_count(sample: Sample) -> float:
    """Number of lines of the prefix (``str.splitlines``)."""
    return float(len(sample.completion.splitlines()))
