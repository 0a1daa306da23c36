"""A scripted generator and marker verifiers for the guidance tests (a fixture module, not tests).

``ScriptedGenerator`` answers every context from a function ``context -> options``; an option
ending in ``EOS`` is a finished continuation. The verifiers are ``custom`` row functions:
``no_marker`` (1.0 unless the completion contains the marker: the planted unsafe step) and
``stated_value`` (the number after the last ``v=``; None → abstain), so every score is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from safeladder.guidance.generator import Continuation
from safeladder.rewards import Reward, RewardConfig
from safeladder.types import Prompt, Sample, prompt_text

EOS = "<eos>"
MARKER = "UNSAFE"
CALLS: list[int] = []  # rows per stated_value call


def no_marker(sample: Sample, marker: str = MARKER) -> float:
    return 0.0 if marker in sample.completion else 1.0


def stated_value(sample: Sample) -> float | None:
    CALLS.append(1)
    found = re.findall(r"v=(-?\d+(?:\.\d+)?)", sample.completion)
    return float(found[-1]) if found else None


def marker_reward(gate: bool = True) -> Reward:
    """``value`` (stated_value, weight 1) + ``safe`` (no_marker, weight 0, gate below 0.5 → -1)."""
    safe: dict[str, Any] = {
        "name": "safe",
        "verifier": {"type": "custom", "target": "tests.guidance.fakes:no_marker"},
        "weight": 0.0,
    }
    if gate:
        safe["gate"] = {"below": 0.5, "value": -1.0}
    return Reward(
        RewardConfig.model_validate(
            {
                "name": "marker",
                "terms": [
                    {
                        "name": "value",
                        "verifier": {
                            "type": "custom",
                            "target": "tests.guidance.fakes:stated_value",
                        },
                    },
                    safe,
                ],
            }
        )
    )


class ScriptedGenerator:
    """Implements ``TextGenerator``; records ``calls`` as (number of contexts, n)."""

    def __init__(self, options: Callable[[str], Sequence[str]]):
        self.options = options
        self.calls: list[tuple[int, int]] = []

    def render(self, prompt: Prompt) -> str:
        return f"Q: {prompt_text(prompt)}\nA: "

    def generate(
        self,
        contexts: Sequence[str],
        n: int,
        *,
        max_new_tokens: int,
        stop: str | None = None,
        seed: int = 0,
    ) -> list[list[Continuation]]:
        self.calls.append((len(contexts), n))
        out: list[list[Continuation]] = []
        for ctx in contexts:
            opts = list(self.options(ctx))
            row = []
            for j in range(n):
                text = opts[j % len(opts)]
                row.append(Continuation(text.removesuffix(EOS), 1, text.endswith(EOS)))
            out.append(row)
        return out
