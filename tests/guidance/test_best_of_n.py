"""pick_best on hand-made score tables; best_of_n with a scripted generator and known scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safeladder.guidance import BestOfNConfig, best_of_n, pick_best
from safeladder.guidance.config import DEFAULT_FALLBACK
from tests.guidance.fakes import EOS, MARKER, ScriptedGenerator, marker_reward

NAN = float("nan")


@pytest.mark.parametrize(
    ("scores", "gated", "expected"),
    [
        ([0.1, 0.7, 0.3], [False] * 3, 1),  # plain argmax
        ([0.5, 0.9, 0.9], [False] * 3, 1),  # tie: the earliest
        ([NAN, 0.2, NAN], [False] * 3, 1),  # NaN ranks below every score
        ([NAN, -5.0], [False] * 2, 1),  # ... even a very low one
        ([9.0, 0.1, 0.2], [True, False, False], 2),  # a vetoed one never wins
        ([NAN, NAN], [False, False], 0),  # nothing scored: the first unvetoed
        ([NAN, NAN], [True, False], 1),
        ([1.0, 2.0], [True, True], None),  # all vetoed: the caller falls back
        ([], [], None),
    ],
)
def test_pick_best(scores: list[float], gated: list[bool], expected: int | None) -> None:
    idx, why = pick_best(np.array(scores, dtype=np.float64), np.array(gated, dtype=bool))
    assert idx == expected
    assert why


def test_pick_best_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        pick_best(np.zeros(2), np.zeros(3, dtype=bool))


def test_best_of_n_picks_the_argmax_and_keeps_every_score() -> None:
    # v=12 would win on value but carries the marker: the gate sets its total to -1.
    opts = ["v=3" + EOS, "v=9" + EOS, f"v=12 {MARKER}" + EOS, "v=1" + EOS, "no value" + EOS]
    gen = ScriptedGenerator(lambda ctx: opts)
    with marker_reward() as reward:
        traces = best_of_n(gen, reward, ["p0", "p1"], BestOfNConfig(n=5))
    assert gen.calls == [(2, 5)]  # one batched call for both prompts
    for t in traces:
        assert [c.score for c in t.candidates] == [3.0, 9.0, -1.0, 1.0, None]
        assert [c.gated for c in t.candidates] == [False, False, True, False, False]
        assert t.candidates[2].gated_by == "safe"
        assert t.chosen == 1 and t.completion == "v=9" and t.score == 9.0
        assert not t.fallback and t.generated_tokens == 5
        assert all(c.finished for c in t.candidates)


def test_best_of_n_tie_goes_to_the_earliest_sample() -> None:
    gen = ScriptedGenerator(lambda ctx: ["v=2 a", "v=5 b", "v=5 c"])
    with marker_reward() as reward:
        (t,) = best_of_n(gen, reward, ["p"], BestOfNConfig(n=3))
    assert t.chosen == 1 and t.completion == "v=5 b"
    assert "tied" in t.reason


def test_best_of_n_falls_back_when_every_sample_is_vetoed() -> None:
    gen = ScriptedGenerator(lambda ctx: [f"v=4 {MARKER}", f"v=8 {MARKER}"])
    with marker_reward() as reward:
        (t,) = best_of_n(gen, reward, [{"prompt": "p", "reference": "r"}], BestOfNConfig(n=2))
    assert t.fallback and t.chosen is None
    assert t.completion == DEFAULT_FALLBACK
    assert t.score is None  # the fallback states no value: unscorable, never 0
    assert t.reference == "r"
    assert all(c.gated for c in t.candidates)


def test_best_of_n_with_nothing_scorable_returns_the_first_sample() -> None:
    gen = ScriptedGenerator(lambda ctx: ["none here", "nor here"])
    with marker_reward() as reward:
        (t,) = best_of_n(gen, reward, ["p"], BestOfNConfig(n=2))
    assert t.chosen == 0 and t.score is None and not t.fallback
    assert math.isnan(float("nan"))  # scores are None in the trace, not 0
    assert [c.score for c in t.candidates] == [None, None]
