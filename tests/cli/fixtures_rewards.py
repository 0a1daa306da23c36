"""Tiny reward functions for the CLI tests, used through ``{type: custom, target: ...}``.

Not a test module (no ``test_`` prefix): the score command imports these by name, both in
process and in the subprocesses of the resume tests.
"""

from __future__ import annotations

import time
from typing import Any

from safeladder.types import Sample, SampleBatch


def word_count(sample: Sample) -> float:
    """Number of whitespace-separated words of the completion."""
    return float(len(sample.completion.split()))


def word_count_or_abstain(sample: Sample) -> float | None:
    """Like ``word_count``, but an empty completion is an abstention."""
    return float(len(sample.completion.split())) if sample.completion.strip() else None


def is_math_task(sample: Sample) -> float:
    """1.0 when the row's meta says ``task: math`` (checks that meta carries input fields)."""
    return 1.0 if sample.meta.get("task") == "math" else 0.0


def matches_reference(sample: Sample) -> float | None:
    """1.0 / 0.0 exact match against the reference; abstains without one."""
    if sample.reference is None:
        return None
    return 1.0 if sample.completion.strip() == str(sample.reference).strip() else 0.0


def lengths(batch: SampleBatch) -> list[float]:
    """Batch mode, as cheap as a reward gets: completion length in characters."""
    return [float(len(c)) for c in batch.completions]


def slow_lengths(batch: SampleBatch, delay: float = 0.05) -> list[float]:
    """``lengths`` after sleeping ``delay`` seconds per batch (lets a test kill a run mid-way)."""
    time.sleep(delay)
    return lengths(batch)


def explode_on(sample: Sample, word: str = "boom") -> float:
    """Raises on completions containing ``word`` (a buggy reward)."""
    if word in sample.completion:
        raise ValueError(f"cannot handle {word!r}")
    return 1.0


def broken_model(sample: Sample) -> float:
    """Fails like a verifier whose checkpoint is missing: not any row's fault."""
    from safeladder.errors import ConfigError

    raise ConfigError("model directory /nowhere does not exist")


def reward_config(target: str, **verifier: Any) -> dict[str, Any]:
    """A one-term reward config around ``tests.cli.fixtures_rewards:<target>``."""
    return {
        "terms": [
            {
                "name": "score",
                "verifier": {
                    "type": "custom",
                    "target": f"tests.cli.fixtures_rewards:{target}",
                    **verifier,
                },
                "weight": 1.0,
            }
        ]
    }
