"""Guided search with a scripted generator: planted unsafe steps are pruned, never returned."""

from __future__ import annotations

import random

import pytest

from safeladder.guidance import GuidedConfig, StepConfig, guided_search
from safeladder.guidance.config import DEFAULT_FALLBACK
from tests.guidance.fakes import EOS, MARKER, ScriptedGenerator, marker_reward


def _answer_part(ctx: str) -> str:
    return ctx.split("\nA: ", 1)[1]


def test_a_gate_prunes_the_planted_unsafe_step() -> None:
    # Step 0: the unsafe step states the highest value, so only the gate can stop it.
    def options(ctx: str) -> list[str]:
        done = _answer_part(ctx)
        if not done:
            return [f"v=100 {MARKER}\n\n", "v=2\n\n", "v=1\n\n"]
        return ["v=5 end" + EOS]

    gen = ScriptedGenerator(options)
    cfg = GuidedConfig(beams=2, candidates=3, max_steps=4)
    with marker_reward() as reward:
        (t,) = guided_search(gen, reward, ["q"], cfg)
    first = t.steps[0]
    assert [c.text for c in first.candidates] == [f"v=100 {MARKER}\n\n", "v=2\n\n", "v=1\n\n"]
    assert first.candidates[0].gated
    assert "gate" in (first.candidates[0].pruned or "") and "safe" in (
        first.candidates[0].pruned or ""
    )
    assert first.kept == [1, 2]
    assert MARKER not in t.completion
    assert t.completion in ("v=2\n\nv=5 end", "v=1\n\nv=5 end") and t.score == 5.0
    assert t.chosen == 0  # tie at 5.0 → the earlier finished beam (from v=2)
    assert not t.fallback


def test_every_candidate_vetoed_backs_off_to_the_fallback() -> None:
    gen = ScriptedGenerator(lambda ctx: [f"v=1 {MARKER}\n\n", f"v=2 {MARKER}\n\n"])
    cfg = GuidedConfig(beams=2, candidates=2, fallback="I can't help with that.")
    with marker_reward() as reward:
        (t,) = guided_search(gen, reward, ["q"], cfg)
    assert t.fallback and t.chosen is None
    assert t.completion == "I can't help with that."
    assert t.steps[-1].fallback and t.steps[-1].kept == []
    assert len(t.steps) == 1  # nothing left to extend
    assert t.candidates == []


def test_vetoed_later_steps_keep_a_finished_safe_beam() -> None:
    # One branch finishes safely at step 0; the other can only continue unsafely.
    def options(ctx: str) -> list[str]:
        if not _answer_part(ctx):
            return ["v=1 short" + EOS, "v=3\n\n"]
        return [f"v=50 {MARKER}" + EOS]

    gen = ScriptedGenerator(options)
    with marker_reward() as reward:
        (t,) = guided_search(gen, reward, ["q"], GuidedConfig(beams=2, candidates=2))
    assert not t.fallback
    assert t.completion == "v=1 short"
    assert all(MARKER not in c.text for c in t.candidates)


@pytest.mark.parametrize("seed", range(12))
def test_guided_search_never_returns_a_gated_completion(seed: int) -> None:
    rng = random.Random(seed)
    table: dict[str, list[str]] = {}

    def options(ctx: str) -> list[str]:
        key = _answer_part(ctx)
        if key not in table:
            depth = key.count("\n\n")
            table[key] = [
                f"v={rng.randint(0, 9)}{' ' + MARKER if rng.random() < 0.5 else ''}"
                + (EOS if depth >= 2 or rng.random() < 0.3 else "\n\n")
                for _ in range(3)
            ]
        return table[key]

    gen = ScriptedGenerator(options)
    with marker_reward() as reward:
        traces = guided_search(gen, reward, ["a", "b", "c"], GuidedConfig(beams=2, candidates=3))
    for t in traces:
        if t.fallback:
            assert t.completion == DEFAULT_FALLBACK
            assert any(s.fallback for s in t.steps)
            assert all(c.pruned for s in t.steps if s.fallback for c in s.candidates)
        else:
            assert MARKER not in t.completion
            assert t.chosen is not None and not t.candidates[t.chosen].gated
        for s in t.steps:
            for k in s.kept:
                assert not s.candidates[k].gated


def test_prompts_and_beams_share_one_generator_call_and_one_reward_call_per_step() -> None:
    from tests.guidance import fakes

    def options(ctx: str) -> list[str]:
        n = _answer_part(ctx).count("\n\n")
        return [f"v={n}a\n\n", f"v={n + 1}b\n\n"] if n < 2 else ["v=9" + EOS]

    gen = ScriptedGenerator(options)
    fakes.CALLS.clear()
    with marker_reward() as reward:
        traces = guided_search(
            gen, reward, ["p", "q", "r"], GuidedConfig(beams=2, candidates=2, max_steps=5)
        )
    # Step 0: 3 prompts x 1 beam; then 3 x 2 beams, each call with n=2.
    assert gen.calls == [(3, 2), (6, 2), (6, 2)]
    assert all(len(t.steps) == 3 for t in traces)
    # value verifier rows: 6 + 12 + 12 step candidates, then 3 x 2 finished beams (distinct texts).
    assert len(fakes.CALLS) == 6 + 12 + 12 + 6


def test_max_steps_ends_unfinished_beams_and_duplicates_are_pruned() -> None:
    gen = ScriptedGenerator(lambda ctx: ["v=1\n\n", "v=1\n\n"])
    with marker_reward() as reward:
        (t,) = guided_search(gen, reward, ["q"], GuidedConfig(beams=2, candidates=2, max_steps=2))
    assert len(t.steps) == 2
    assert t.steps[0].candidates[1].pruned == "duplicate of candidate 0"
    assert t.completion == "v=1\n\nv=1\n\n"
    assert not t.candidates[0].finished


def test_token_budget_finishes_a_beam() -> None:
    gen = ScriptedGenerator(lambda ctx: ["v=1\n\n"])  # 1 token per step
    cfg = GuidedConfig(beams=1, candidates=1, max_steps=10, step=StepConfig(max_tokens=4))
    with marker_reward() as reward:
        (t,) = guided_search(gen, reward, ["q"], cfg, max_new_tokens=3)
    assert len(t.steps) == 3 and t.generated_tokens == 3


def test_separate_step_reward_prunes_and_final_reward_chooses() -> None:
    # The step reward gates on "BAD"; the final reward has no gate and scores the value.
    from safeladder.rewards import Reward, RewardConfig

    step = Reward(
        RewardConfig.model_validate(
            {
                "terms": [
                    {
                        "name": "ok",
                        "verifier": {
                            "type": "custom",
                            "target": "tests.guidance.fakes:no_marker",
                            "kwargs": {"marker": "BAD"},
                        },
                        "gate": {"below": 0.5, "value": -1.0},
                    }
                ]
            }
        )
    )
    gen = ScriptedGenerator(lambda ctx: ["v=7 BAD" + EOS, "v=3" + EOS, "v=4" + EOS])
    with marker_reward(gate=False) as final, step:
        (t,) = guided_search(
            gen, final, ["q"], GuidedConfig(beams=3, candidates=3), step_reward=step
        )
    assert t.steps[0].candidates[0].pruned is not None
    assert t.completion == "v=4" and t.score == 4.0
