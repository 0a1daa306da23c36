"""Required terms, row isolation, reference routing and unread references (issue 10, items 1-3).

The verifiers are ``fixture_verifiers`` functions whose scores come from each row's meta, so the
expected totals follow from the rules alone.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from safeladder import ConfigError, InputError, Sample, load_reward
from safeladder.errors import SafeladderWarning
from safeladder.rewards import parse_reward_config
from tests.helpers import REPO
from tests.rewards import fixture_verifiers as fx

FX = "tests.rewards.fixture_verifiers"
NAN = float("nan")


def term(name: str, key: str | None = None, weight: float = 1.0, **extra):  # type: ignore[no-untyped-def]
    return {
        "name": name,
        "verifier": {
            "type": "custom",
            "target": f"{FX}:meta_score",
            "kwargs": {"key": key or name},
            "reads_reference": False,
        },
        "weight": weight,
        **extra,
    }


def sample(reference: object = None, prompt: str = "p", **meta: object) -> Sample:
    return Sample(prompt=prompt, completion="c", reference=reference, meta=dict(meta))


# --------------------------------------------------------------------------- required terms


def test_required_term_that_does_not_score_makes_the_row_unscorable() -> None:
    # correct (required, w=1) + length (w=0.5). Row 0: 1 + 0.5·(-0.2) = 0.9. Row 1: correct
    # abstains → NaN, although length scored -0.2 (the old rule gave -0.1, a plausible number).
    cfg = {"terms": [term("correct", required=True), term("length", weight=0.5)]}
    res = load_reward(cfg).score(
        [sample(correct=1.0, length=-0.2), sample(correct=None, length=-0.2)]
    )
    assert res.total[0] == pytest.approx(0.9)
    assert math.isnan(res.total[1])
    assert res.unscorable.tolist() == [False, True]
    assert res.unscorable_reason[0] is None
    assert res.unscorable_reason[1] == (
        "required term 'correct': abstain (custom verifier returned None)"
    )
    rec = res.to_records()[1]
    assert rec["reward"] is None and rec["unscorable"].startswith("required term 'correct'")


def test_without_required_the_other_terms_still_make_a_total() -> None:
    cfg = {"terms": [term("correct"), term("length", weight=0.5)]}
    res = load_reward(cfg).score([sample(correct=None, length=-0.2)])
    assert res.total[0] == pytest.approx(-0.1)


def test_required_applies_only_where_the_term_is_routed() -> None:
    cfg = {
        "terms": [term("correct", required=True), term("style")],
        "routes": {"key": "task", "recipes": {"math": ["correct", "style"], "chat": ["style"]}},
    }
    res = load_reward(cfg).score(
        [sample(task="chat", style=0.5), sample(task="math", style=0.5, correct=None)]
    )
    assert res.total[0] == pytest.approx(0.5)
    assert math.isnan(res.total[1])


def test_a_gate_still_vetoes_a_row_a_required_term_left_unscorable() -> None:
    cfg = {
        "terms": [
            term("correct", required=True),
            term("safe", weight=0.0, gate={"below": 0.5, "value": -1.0}),
        ]
    }
    res = load_reward(cfg).score([sample(correct=None, safe=0.1), sample(correct=None, safe=0.9)])
    assert res.total[0] == -1.0 and res.gated[0] and res.unscorable_reason[0] is None
    assert math.isnan(res.total[1]) and not res.gated[1]


def test_nothing_scored_reason_lists_each_objective_term() -> None:
    res = load_reward({"terms": [term("a"), term("b")]}).score([sample(a=None, b=None)])
    assert res.unscorable_reason[0] == (
        "no objective term could score it [a: abstain (custom verifier returned None); "
        "b: abstain (custom verifier returned None)]"
    )


# --------------------------------------------------------------------------- row isolation


def boom_term(name: str = "a", **extra):  # type: ignore[no-untyped-def]
    return {
        "name": name,
        "verifier": {
            "type": "custom",
            "target": f"{FX}:raise_on_boom",
            "mode": "batch",
            "kwargs": {"key": name},
            "reads_reference": False,
        },
        **extra,
    }


def test_a_verifier_raising_on_one_row_does_not_take_the_batch_down() -> None:
    rows = [sample(a=float(i)) for i in range(16)]
    rows[5] = sample(a=5.0, boom="\ud800")
    rows[12] = sample(a=12.0, boom="x")
    fx.CALLS.clear()
    res = load_reward({"terms": [boom_term()]}).score(rows)
    expected = [NAN if i in (5, 12) else float(i) for i in range(16)]
    np.testing.assert_array_equal(res.total, np.array(expected, dtype=np.float32))
    assert res.raw["a"].status[5] == "error" and res.raw["a"].status[12] == "error"
    assert res.raw["a"].details[5] == {
        "reason": "ValueError: cannot handle '\\ud800'",
        "raised": True,
    }
    assert res.row_errors[5] == "term 'a': ValueError: cannot handle '\\ud800'"
    assert res.row_errors[0] is None and res.unscorable_reason[12].startswith("a verifier raised")
    # Bisection: the whole batch, then halves down to the two rows: far fewer than 16 calls each.
    assert fx.CALLS["boom"] <= 1 + 2 * 2 * math.ceil(math.log2(16))
    assert res.log_dict()["reward/row_error_rate"] == pytest.approx(2 / 16)


def test_isolation_leaves_the_other_terms_of_the_poisoned_row_alone() -> None:
    cfg = {"terms": [boom_term("a", weight=0.0), term("b")]}
    res = load_reward(cfg).score([sample(a=1.0, b=0.5, boom="x"), sample(a=1.0, b=0.5)])
    assert res.terms["b"].scores.tolist() == [0.5, 0.5]
    # a verifier raised on row 0: its total is unscorable, never a total without that term
    assert math.isnan(res.total[0]) and res.total[1] == pytest.approx(0.5)


def test_a_config_error_is_not_isolated() -> None:
    cfg = {
        "terms": [
            {
                "name": "a",
                "verifier": {"type": "custom", "target": f"{FX}:meta_batch", "mode": "batch"},
            }
        ]
    }
    reward = load_reward(cfg)

    def broken(*_a: object, **_k: object) -> object:
        raise ConfigError("model file missing")

    reward.verifier("a").score = broken  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="model file missing"):
        reward.score([sample(s=1.0)])


# --------------------------------------------------------------------------- routing


ROUTED = {
    "terms": [
        term("correct", required=True),
        term("general"),
        {
            "name": "check",
            "verifier": {"type": "qa_match"},
            "required": True,
        },
    ],
    "routes": {
        "key": "task",
        "recipes": {"math": ["correct"], "chat": ["general"], "answer": ["check"]},
        "sources": {"openai/gsm8k": "math", "aime*": "math"},
        "refuse_sources": {"apps": "code tests must be executed"},
        "with_reference": "answer",
        "default": "chat",
    },
}


def test_route_order_task_then_source_then_reference_then_default() -> None:
    reward = load_reward(ROUTED)
    res = reward.score(
        [
            sample(task="chat", data_source="openai/gsm8k", general=0.1),  # task wins
            sample(data_source="openai/gsm8k", correct=1.0),  # exact source
            sample(data_source="aime_2024", correct=0.0),  # pattern
            sample(reference="Paris", data_source="my_set"),  # unknown source + reference
            sample(reference="  ", general=0.3),  # a blank reference is none
            sample(general=0.2),  # nothing → default
        ]
    )
    assert res.route == ["chat", "math", "math", "answer", "chat", "chat"]


def test_refused_source_is_a_bad_row_with_the_reason() -> None:
    with pytest.raises(InputError, match="row 1: data_source 'apps': code tests must be executed"):
        load_reward(ROUTED).score([sample(general=1.0), sample(data_source="apps", reference="[]")])


def test_routes_validate_source_and_reference_recipes() -> None:
    bad = {**ROUTED, "routes": {**ROUTED["routes"], "sources": {"x": "nope"}}}
    with pytest.raises(ConfigError, match="routes.sources.x: 'nope' is not a recipe"):
        parse_reward_config(bad)
    bad = {**ROUTED, "routes": {**ROUTED["routes"], "with_reference": "nope"}}
    with pytest.raises(ConfigError, match="routes.with_reference: 'nope' is not a recipe"):
        parse_reward_config(bad)


# --------------------------------------------------------------------------- unread references


def test_rows_whose_reference_no_term_reads_are_counted_and_warned_once() -> None:
    reward = load_reward(ROUTED)
    rows = [
        sample(reference="42", task="chat", general=1.0),  # reference, but chat reads none
        sample(reference="Paris", task="answer"),  # read by the qa check
        sample(task="chat", general=1.0),  # no reference at all
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = reward.score(rows)
        reward.score(rows)
    assert res.reference_unread.tolist() == [True, False, False]
    assert res.to_records()[0]["reference_unread"] is True
    assert "reference_unread" not in res.to_records()[1]
    assert res.log_dict()["reward/reference_unread_rate"] == pytest.approx(1 / 3)
    mine = [w for w in caught if issubclass(w.category, SafeladderWarning)]
    assert len(mine) == 1
    assert "1 of 3 rows carry a reference that no term reads, e.g. row 0 (route 'chat')" in str(
        mine[0].message
    )


# --------------------------------------------------------------------------- group normalization


def test_group_zscore_falls_back_to_the_prompt_text() -> None:
    # rows 0,1 share prompt "q1" (0 → -1, 1 → +1); row 2 has its own prompt → 0; row 3 has an id
    cfg = {"terms": [term("a", normalize="group_zscore", group_key="pid")]}
    res = load_reward(cfg).score(
        [
            sample(prompt="q1", a=0.0),
            sample(prompt="q1", a=1.0),
            sample(prompt="q2", a=0.7),
            sample(prompt="q1", a=5.0, pid="g"),
        ]
    )
    np.testing.assert_allclose(res.total, [-1.0, 1.0, 0.0, 0.0], atol=1e-6)


def test_math_grpo_example_scores_the_demo_and_normalize_none_works_alone() -> None:
    path = REPO / "configs" / "reward" / "math_grpo.yaml"
    rows = [
        Sample(prompt="2+2?", completion="<think>4</think><answer>4</answer>", reference="4"),
        Sample(prompt="2+3?", completion="The answer is 6", reference="5"),
    ]
    with load_reward(path) as reward:
        res = reward.score(rows)
    assert res.terms["correct"].scores.tolist() == [1.0, 0.0]
    assert not res.unscorable.any()
    with load_reward(path, ["terms.1.normalize=none"]) as reward:
        res = reward.score(rows)
    assert res.terms["format"].scores.tolist() == [1.0, 0.0]
