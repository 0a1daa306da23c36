"""``scoring_process``: the reward scored in a child process answers exactly as the thread
does, a dead child fails only its batch, and rewards it cannot carry are refused."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from safeladder.errors import ConfigError
from safeladder.rewards import load_reward
from safeladder.serving.process_scorer import ScoringProcess
from safeladder.serving.wire import WireSample
from tests.serving.support import openrlhf, run, serving

ROWS = [
    ("Q: 2+2?\nA:", " 2+2 = 4.\n#### 4", "4"),
    ("Q: 3*3?\nA:", " I think it is 10.\n#### 10", "9"),
    ("Q: hi\nA:", " I'm sorry, but I can't help with that.", None),
    ("Q: 5-1?\nA:", " the the the the the the the the #### 4", "4"),
]


def _answers(**settings: Any) -> tuple[list[Any], Any, str]:
    reward = load_reward(None)

    async def main() -> tuple[list[Any], Any, str]:
        async with serving(reward, default_meta={"task": "math"}, **settings) as c:
            singles = [
                (await c.post("/get_reward", json=openrlhf(p, x, y))).json() for p, x, y in ROWS
            ]
            body = {
                "samples": [
                    {"prompt": p, "completion": x, "reference": y, "meta": {"task": "math"}}
                    for p, x, y in ROWS
                ]
            }
            score = (await c.post("/score", json=body)).json()
            metrics = (await c.get("/metrics")).text
            return singles, score, metrics

    return run(main)


def test_the_child_answers_exactly_as_the_thread() -> None:
    thread = _answers()
    child = _answers(scoring_process=True)
    assert child[0] == thread[0]  # /get_reward, one sample per request (OpenRLHF)
    for a, b in zip(child[1]["results"], thread[1]["results"], strict=True):
        assert a == b  # /score: totals, per-term scores, statuses, details, routes
    # /metrics counts the rows per term and status the same way
    line = 'safeladder_term_rows_total{status="ok",term="math_correct"}'
    assert line in child[2] and line in thread[2]
    assert child[2].split(line)[1].split("\n")[0] == thread[2].split(line)[1].split("\n")[0]


def test_a_killed_child_fails_its_batch_and_the_next_one_restarts() -> None:
    reward = load_reward(None)
    scorer = ScoringProcess(reward, list(reward.term_names), [])
    samples = [WireSample(p, x, y, {"task": "math"}, ()) for p, x, y in ROWS]
    try:
        first = scorer.score(samples)
        assert (first[0].total, first[1].total) == (1.0, 0.0)  # right / wrong answer
        os.kill(scorer._proc.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"died \(exit code -9\)"):
            scorer.score(samples)
        again = scorer.score(samples)  # a new child
        assert [repr(r.total) for r in again] == [repr(r.total) for r in first]  # NaN too
    finally:
        scorer.close()
    assert scorer._proc is None


def test_a_child_that_cannot_build_the_reward_says_why() -> None:
    reward = load_reward(None)
    scorer = ScoringProcess(reward, list(reward.term_names), [])
    scorer._config = "not a config"  # the child's Reward(...) raises
    with pytest.raises(RuntimeError, match="could not build the reward"):
        scorer.score([])
    scorer.close()


def test_neural_and_stateful_rewards_are_refused() -> None:
    reward = load_reward(None)
    with pytest.raises(ConfigError, match=r"neural verifiers on \['cuda:0'\].*load twice"):
        ScoringProcess(reward, list(reward.term_names), ["cpu", "cuda:0"])
    adaptive = load_reward("configs/reward/calibrated_qa_adaptive.yaml")
    with pytest.raises(ConfigError, match="keeps state across batches"):
        ScoringProcess(adaptive, list(adaptive.term_names), [])
