"""confidence_calibration: Deliberative Searcher's "confident when correct, unsure when wrong"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.errors import ConfigError
from safeladder.rewards import Reward
from safeladder.rewards.config import RewardConfig
from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers import build_verifier
from safeladder.verifiers.confidence_calibration import parse_confidence
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    read_shared,
    same_scores,
    sample_strategy,
    text_strategy,
)

# (text, scale, expected c)
PARSE = [
    ("<confidence>7</confidence>", "0-10", 0.7),  # Deliberative Searcher's 0–10 scale
    ("<confidence> 7 </confidence>", "auto", 0.7),
    ("<confidence>0.7</confidence>", "0-1", 0.7),
    ("<confidence>70</confidence>", "percent", 0.7),
    ("<confidence>85%</confidence>", "0-10", 0.85),  # explicit % beats the scale
    ("Answer: Paris. Confidence: 7/10", "percent", 0.7),  # explicit /10 beats the scale
    ("confidence: 0.8", "auto", 0.8),
    ("Confidence level: 85%", "auto", 0.85),
    ("My confidence is 6.5", "0-10", 0.65),
    ("confidence = 8 out of 10", "auto", 0.8),
    ("Confidence score: 4/5", "auto", 0.8),
    ("I am 90% confident.", "auto", 0.9),
    ("I'm 75 percent sure it is Paris.", "auto", 0.75),
    ("with 60% confidence", "0-1", 0.6),
    ("Confidence: .75", "auto", 0.75),
    ("置信度：8", "0-10", 0.8),
    ("我有80%的把握", "auto", 0.8),
    ("信心：7/10", "auto", 0.7),
    # auto: ≤ 1 as is, ≤ 10 ÷ 10, ≤ 100 ÷ 100 — so "1" is 1.0 under auto, 0.1 under 0-10.
    ("Confidence: 1", "auto", 1.0),
    ("Confidence: 1", "0-10", 0.1),
    ("Confidence: 7", "auto", 0.7),
    ("Confidence: 85", "auto", 0.85),
    # Deliberative Searcher updates confidence after each read: the last statement wins.
    ("<confidence>3</confidence> read more... <confidence>8</confidence>", "0-10", 0.8),
    ("I am 95% sure. Later: Confidence: 2", "0-10", 0.2),
]


@pytest.mark.parametrize(("text", "scale", "expected"), PARSE)
def test_parse_confidence(text: str, scale: str, expected: float) -> None:
    assert parse_confidence(text, scale) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("The answer is Paris.", "auto"),
        ("Sales grew 85% last year.", "auto"),  # a bare percentage is not a confidence
        ("the 95% confidence interval is [2, 5]", "auto"),  # statistics, not a stated confidence
        ("confidence interval 95%", "auto"),
        ("I have high confidence.", "auto"),
        ("Confidence: 12", "0-10"),  # outside the scale
        ("Confidence: 150%", "auto"),
        ("Confidence: 1234", "auto"),  # not read as 123 or 234
        ("confidence 1234% sure", "auto"),
        ("Confidence: 7/0", "auto"),
        ("Confidence: 101", "auto"),
    ],
)
def test_parse_confidence_none(text: str, scale: str) -> None:
    assert parse_confidence(text, scale) is None


def test_parse_confidence_bad_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        parse_confidence("Confidence: 5", "0-100")


@settings(max_examples=200, deadline=None)
@given(text=text_strategy, scale=st.sampled_from(["0-10", "0-1", "percent", "auto"]))
def test_parse_confidence_never_raises(text: str, scale: str) -> None:
    c = parse_confidence(text + " confidence: " + text, scale)
    assert c is None or 0.0 <= c <= 1.0


def with_context(
    config: dict, texts: list[str], correct: list[float], status: list[str] | None = None
) -> ScoreBatch:
    v = build_verifier({"type": "confidence_calibration", "correctness_from": "acc", **config})
    status = status or ["ok"] * len(texts)
    acc = ScoreBatch("acc", np.array(correct, dtype=np.float32), np.array(status, dtype=object))
    return v.score([Sample(completion=t) for t in texts], context={"acc": acc})


# (confidence stated, correctness score, expected) for mode threshold, ζ = 5 of 10, >=.
THRESHOLD = [
    ("<confidence>8</confidence>", 1.0, 1.0),  # confident and correct
    ("<confidence>8</confidence>", 0.0, 0.0),  # confident and wrong: the false-certain case
    ("<confidence>2</confidence>", 1.0, 0.0),  # unsure but correct
    ("<confidence>2</confidence>", 0.0, 1.0),  # unsure and wrong
    ("<confidence>5</confidence>", 1.0, 1.0),  # c = ζ counts as confident (>=, an assumption)
    ("<confidence>5</confidence>", 0.0, 0.0),
    ("<confidence>8</confidence>", 0.5, 1.0),  # correct_threshold 0.5: score 0.5 is correct
    ("<confidence>8</confidence>", 0.49, 0.0),
]


@pytest.mark.parametrize(("text", "correct", "expected"), THRESHOLD)
def test_threshold_golden(text: str, correct: float, expected: float) -> None:
    res = with_context({"scale": "0-10"}, [text], [correct])
    assert (float(res.scores[0]), res.status[0]) == (expected, "ok")


def test_threshold_exclusive() -> None:
    res = with_context(
        {"scale": "0-10", "threshold_inclusive": False},
        ["<confidence>5</confidence>"] * 2,
        [1.0, 0.0],
    )
    assert res.scores.tolist() == [0.0, 1.0]  # with >, c = ζ is "unsure"


def test_custom_threshold() -> None:
    res = with_context({"threshold": 0.8}, ["Confidence: 70%", "Confidence: 80%"], [1.0, 1.0])
    assert res.scores.tolist() == [0.0, 1.0]


# Brier: 1 − (c − y)².
BRIER = [
    ("Confidence: 0.8", 1.0, 1 - 0.2**2),  # 0.96
    ("Confidence: 0.8", 0.0, 1 - 0.8**2),  # 0.36
    ("Confidence: 0", 0.0, 1.0),
    ("Confidence: 1", 0.0, 0.0),
    ("Confidence: 0.5", 1.0, 0.75),
    ("Confidence: 0.5", 0.0, 0.75),
    ("I am 90% confident", 1.0, 1 - 0.1**2),  # 0.99
]


@pytest.mark.parametrize(("text", "correct", "expected"), BRIER)
def test_brier_golden(text: str, correct: float, expected: float) -> None:
    res = with_context({"mode": "brier"}, [text], [correct])
    assert float(res.scores[0]) == pytest.approx(expected, abs=1e-6)
    assert res.details[0]["correct"] == bool(correct)


def test_missing_confidence() -> None:
    texts = ["Paris.", "Paris. Confidence: 9/10"]
    res = with_context({}, texts, [1.0, 1.0])
    assert res.scores.tolist() == [0.0, 1.0] and res.status.tolist() == ["ok", "ok"]
    assert res.details[0]["missing"] is True
    res = with_context({"missing_score": 0.25}, texts, [1.0, 1.0])
    assert res.scores.tolist() == [0.25, 1.0]
    res = with_context({"missing": "abstain"}, texts, [1.0, 1.0])
    assert math.isnan(res.scores[0]) and res.status[0] == "abstain"
    assert res.details[0]["reason"] == "no stated confidence found"


@pytest.mark.parametrize("status", ["abstain", "timeout", "error", "skipped"])
def test_correctness_not_scored_propagates_abstain(status: str) -> None:
    res = with_context(
        {}, ["Confidence: 9/10", "Confidence: 9/10"], [float("nan"), 1.0], [status, "ok"]
    )
    assert math.isnan(res.scores[0]) and res.status[0] == "abstain"
    assert "'acc'" in res.details[0]["reason"] and status in res.details[0]["reason"]
    assert res.scores[1] == 1.0


def test_missing_context_names_the_term() -> None:
    v = build_verifier({"type": "confidence_calibration", "correctness_from": "acc"})
    assert v.requires == ("acc",)
    with pytest.raises(ConfigError, match="correctness_from='acc'.*no term 'acc'"):
        v.score([Sample(completion="Confidence: 9/10")])
    other = ScoreBatch("fmt", np.array([1.0], dtype=np.float32), np.array(["ok"], dtype=object))
    with pytest.raises(ConfigError, match="available: fmt"):
        v.score([Sample(completion="Confidence: 9/10")], context={"fmt": other})


def test_context_length_mismatch() -> None:
    v = build_verifier({"type": "confidence_calibration", "correctness_from": "acc"})
    acc = ScoreBatch(
        "acc", np.array([1.0, 0.0], dtype=np.float32), np.array(["ok", "ok"], dtype=object)
    )
    with pytest.raises(ConfigError, match="2 rows for a batch of 1"):
        v.score([Sample(completion="x")], context={"acc": acc})


def test_context_batch_equals_rows() -> None:
    texts = [
        "<confidence>9</confidence>",
        "nothing",
        "Confidence: 30%",
        "<confidence>9</confidence>",
    ]
    acc = ScoreBatch(
        "acc",
        np.array([1.0, 0.0, np.nan, 0.0], dtype=np.float32),
        np.array(["ok", "ok", "abstain", "ok"], dtype=object),
    )
    v = build_verifier({"type": "confidence_calibration", "correctness_from": "acc"})
    batch = SampleBatch.from_samples([Sample(completion=t) for t in texts])
    whole = v.score(batch, context={"acc": acc})
    assert whole.status.tolist() == ["ok", "ok", "abstain", "ok"]
    assert whole.scores[[0, 1, 3]].tolist() == [1.0, 0.0, 0.0]
    for i in range(len(texts)):
        one = v.score(batch.take([i]), context={"acc": acc.take([i])})
        assert same_scores(one, whole.take([i]))


# Nested verifier: correctness judged by qa_match on the <answer> span.
NESTED = [
    ("<answer>Paris</answer><confidence>9</confidence>", "Paris", 1.0),  # correct, confident
    ("<answer>Lyon</answer><confidence>9</confidence>", "Paris", 0.0),  # wrong, confident
    ("<answer>Lyon</answer><confidence>2</confidence>", "Paris", 1.0),  # wrong, unsure
    ("<answer>Paris</answer><confidence>2</confidence>", "Paris", 0.0),  # correct, unsure
]


@pytest.mark.parametrize(("completion", "reference", "expected"), NESTED)
def test_nested_verifier(completion: str, reference: str, expected: float) -> None:
    v = build_verifier(
        {"type": "confidence_calibration", "scale": "0-10", "correctness": {"type": "qa_match"}}
    )
    assert v.requires == ()
    res = v.score([Sample(completion=completion, reference=reference)])
    assert float(res.scores[0]) == expected


def test_nested_abstain_propagates() -> None:
    v = build_verifier({"type": "confidence_calibration", "correctness": {"type": "qa_match"}})
    res = v.score([Sample(completion="<answer>Paris</answer> Confidence: 9/10", reference=None)])
    assert math.isnan(res.scores[0]) and res.status[0] == "abstain"
    assert "nested verifier 'qa_match'" in res.details[0]["reason"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "exactly one of correctness_from"),
        ({"correctness_from": "acc", "correctness": {"type": "qa_match"}}, "exactly one of"),
        ({"correctness": {"type": "nope"}}, "correctness"),
        ({"correctness": {"type": "qa_match", "mdoe": "f1"}}, "mdoe"),
        ({"correctness_from": "acc", "scale": "0-100"}, "scale"),
        ({"correctness_from": "acc", "threshold": 5}, "threshold"),  # ζ is on [0, 1]
        ({"correctness_from": "acc", "missing_score": 2}, "missing_score"),
        ({"correctness_from": "acc", "missing": "zero"}, "missing"),
        ({"correctness_from": "acc", "mode": "ece"}, "mode"),
        ({"correctness_from": "acc", "treshold": 0.5}, "treshold"),
        ({"correctness_from": ""}, "correctness_from"),
    ],
)
def test_config_errors(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_verifier({"type": "confidence_calibration", **config})


@pytest.mark.parametrize("mode", ["threshold", "brier"])
@settings(max_examples=120, deadline=None)
@given(
    samples=st.lists(sample_strategy, min_size=1, max_size=6),
    conf=st.lists(st.integers(-2, 120), min_size=6, max_size=6),
)
def test_properties(mode: str, samples: list[Sample], conf: list[int]) -> None:
    v = build_verifier(
        {
            "type": "confidence_calibration",
            "mode": mode,
            "correctness": {"type": "qa_match", "mode": "f1"},
        }
    )
    rows = [
        s.model_copy(update={"completion": f"{s.completion} Confidence: {c}%"}) if c % 3 else s
        for s, c in zip(samples, conf, strict=False)
    ]
    result = assert_batch_equals_rows(v, rows)
    assert_in_range_or_nan(v, result)


def test_inside_a_reward_with_correctness_from() -> None:
    # The shipped calibrated_qa recipe, reduced: acc (qa_match) feeds the reliability term.
    reward = Reward(
        RewardConfig(
            terms=[
                {"name": "acc", "verifier": {"type": "qa_match"}, "weight": 0.9},
                {
                    "name": "reliability",
                    "verifier": {
                        "type": "confidence_calibration",
                        "correctness_from": "acc",
                        "scale": "0-10",
                    },
                    "weight": 0.3,
                },
            ]
        )
    )
    res = reward.score(
        [
            Sample(
                completion="<answer>Paris</answer><confidence>9</confidence>", reference="Paris"
            ),
            Sample(completion="<answer>Lyon</answer><confidence>9</confidence>", reference="Paris"),
        ]
    )
    assert res.terms["reliability"].scores.tolist() == [1.0, 0.0]
    assert res.total.tolist() == pytest.approx([1.2, 0.0])


def test_truthfulqa_false_certain_rows() -> None:
    # TruthfulQA: a correct answer stated confidently, a wrong one confidently (false-certain,
    # the rate Deliberative Searcher drives from 54 % to 2 %) and a wrong one hedged.
    rows = read_shared("truthfulqa_questions.jsonl", limit=50)
    v = build_verifier(
        {"type": "confidence_calibration", "scale": "0-10", "correctness": {"type": "qa_match"}}
    )
    samples = []
    for r in rows:
        ref = {"correct_answers": r["correct_answers"]}
        samples += [
            Sample(
                completion=f"<answer>{r['best_answer']}</answer><confidence>9</confidence>",
                reference=ref,
            ),
            Sample(
                completion=f"<answer>{r['incorrect_answers'][0]}</answer><confidence>9</confidence>",
                reference=ref,
            ),
            Sample(
                completion=f"<answer>{r['incorrect_answers'][0]}</answer><confidence>3</confidence>",
                reference=ref,
            ),
        ]
    scores = v.score(samples).scores.reshape(-1, 3)
    assert scores[:, 0].tolist() == [1.0] * len(rows)
    assert scores[:, 1].tolist() == [0.0] * len(rows)
    assert scores[:, 2].tolist() == [1.0] * len(rows)
