"""qa_match: SQuAD-style normalized exact match / token F1 / containment against references."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.errors import ConfigError
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers.qa_match import answer_tokens, final_answer, normalize_answer, token_f1
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    read_shared,
    sample_strategy,
)


def score_one(config: dict, completion: str, reference: object) -> tuple[float, str, dict]:
    res = build_verifier({"type": "qa_match", **config}).score(
        [Sample(completion=completion, reference=reference)]
    )
    return float(res.scores[0]), str(res.status[0]), res.details[0]


# (mode, completion, reference, expected); F1 values worked out by hand in the comment.
GOLDEN = [
    # SQuAD normalization: case, punctuation, articles (Rajpurkar et al. 2016, evaluate-v1.1.py).
    ("exact", "Paris", "paris", 1.0),
    ("exact", "The Eiffel Tower.", "Eiffel Tower", 1.0),
    ("exact", "an apple", "apple", 1.0),
    ("exact", "U.S.A.", "USA", 1.0),  # SQuAD deletes punctuation, it does not split on it
    ("exact", "Paris, France", "Paris", 0.0),
    ("exact", "  paris\n", ["London", "Paris"], 1.0),  # best over references
    ("exact", "42", 42, 1.0),  # numeric reference
    ("exact", "北京。", "北京", 1.0),  # Chinese punctuation is punctuation too
    # Final answer only: the thinking part is not judged.
    ("exact", "<think>Lyon? no.</think><answer>Paris</answer>", "Paris", 1.0),
    ("exact", "<think>Paris</think> Lyon", "Paris", 0.0),
    ("exact", "<answer>Paris", "Paris", 1.0),  # unclosed <answer>: the text after it
    # F1: pred [eiffel, tower, in, paris] vs gold [eiffel, tower]: P = 2/4, R = 1 → 2/3.
    ("f1", "Eiffel Tower in Paris", "the Eiffel Tower", 2 / 3),
    # vs "paris city": P = 1, R = 1/2 → 2/3; vs "London": 0 → best 2/3.
    ("f1", "Paris", ["London", "Paris city"], 2 / 3),
    # CJK per character: [北, 京, 是, 首, 都] vs [北, 京]: P = 2/5, R = 1 → 4/7.
    ("f1", "北京是首都", "北京", 4 / 7),
    # Bag of tokens: [paris, paris] vs [paris]: common = 1, P = 1/2, R = 1 → 2/3 (repeating
    # the answer does not raise F1).
    ("f1", "the the the Paris Paris", "Paris", 2 / 3),
    ("f1", "Berlin", "Paris", 0.0),
    ("f1", "", "Paris", 0.0),  # an empty answer is a real, wrong answer
    # contains: whole-token span.
    ("contains", "I think the answer is Paris, France.", "Paris", 1.0),
    ("contains", "Parisian food is great", "Paris", 0.0),
    # The known hack of containment rewards: list every candidate. exact is not fooled.
    ("contains", "London Paris Rome Berlin Madrid", "Rome", 1.0),
    ("exact", "London Paris Rome Berlin Madrid", "Rome", 0.0),
    # SQuAD (HF datasets) shape and TruthfulQA shape (truthfulqa-000).
    (
        "exact",
        "Denver Broncos",
        {"answers": {"text": ["Denver Broncos"], "answer_start": [177]}},
        1.0,
    ),
    (
        "exact",
        "Nothing happens",
        {"correct_answers": ["Nothing happens", "You eat watermelon seeds"]},
        1.0,
    ),
]


@pytest.mark.parametrize(("mode", "completion", "reference", "expected"), GOLDEN)
def test_golden(mode: str, completion: str, reference: object, expected: float) -> None:
    score, status, _ = score_one({"mode": mode}, completion, reference)
    assert status == "ok"
    assert score == pytest.approx(expected, abs=1e-6)


def test_judge_final_answer_off_reads_everything() -> None:
    # With the tags kept, "<think>x</think>Paris" normalizes to "thinkxthinkparis".
    assert score_one({"judge_final_answer": False}, "<think>x</think>Paris", "Paris")[0] == 0.0
    assert score_one({"judge_final_answer": True}, "<think>x</think>Paris", "Paris")[0] == 1.0


def test_detail_names_best_reference() -> None:
    _, _, detail = score_one({"mode": "f1"}, "Paris", ["London", "Paris city"])
    assert detail["best_reference"] == "Paris city"


@pytest.mark.parametrize(
    ("reference", "reason_part"),
    [
        (None, "no reference"),
        ("", "empty after normalization"),
        ("The.", "empty after normalization"),  # only an article and punctuation
        ([], "empty after normalization"),
        ([{"text": "Paris"}], "reference item 0 is a dict"),
        ({"foo": "Paris"}, "neither 'answers' nor 'correct_answers'"),
        ({"answers": [1, None]}, "reference['answers']: reference item 1"),
        (True, "reference of type bool"),
    ],
)
def test_unusable_reference_abstains(reference: object, reason_part: str) -> None:
    score, status, detail = score_one({}, "Paris", reference)
    assert math.isnan(score) and status == "abstain"
    assert reason_part in detail["reason"]


def test_helpers() -> None:
    assert normalize_answer("The  U.S.A., of course!") == "usa of course"
    assert answer_tokens("An 东京 trip") == ["东", "京", "trip"]
    assert final_answer("<think>a</think>b<answer> c </answer>d") == " c "
    assert token_f1([], []) == 1.0 and token_f1(["a"], []) == 0.0


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"mdoe": "f1"}, "mdoe"),
        ({"mode": "fuzzy"}, "mode"),
        ({"judge_final_answer": "maybe"}, "judge_final_answer"),
    ],
)
def test_config_errors_name_the_field(config: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_verifier({"type": "qa_match", **config})


@pytest.mark.parametrize("mode", ["exact", "f1", "contains"])
@settings(max_examples=120, deadline=None)
@given(samples=st.lists(sample_strategy, min_size=1, max_size=6))
def test_properties(mode: str, samples: list[Sample]) -> None:
    v = build_verifier({"type": "qa_match", "mode": mode})
    result = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, result)


def test_truthfulqa_rows() -> None:
    rows = read_shared("truthfulqa_questions.jsonl", limit=100)
    exact = build_verifier({"type": "qa_match"})
    f1 = build_verifier({"type": "qa_match", "mode": "f1"})
    ref = [{"correct_answers": r["correct_answers"]} for r in rows]
    # The best answer is one of the correct answers: exact match 1 on every row.
    best = exact.score(
        [Sample(completion=r["best_answer"], reference=x) for r, x in zip(rows, ref, strict=True)]
    )
    assert list(best.status) == ["ok"] * len(rows) and float(best.scores.min()) == 1.0
    # An incorrect answer never matches exactly (no answer is listed as both, per the README) ...
    wrong = [
        Sample(completion=r["incorrect_answers"][0], reference=x)
        for r, x in zip(rows, ref, strict=True)
    ]
    assert float(exact.score(wrong).scores.max()) == 0.0
    # ... but it often shares words with a correct one ("You digest the watermelon seeds" vs "You
    # will not digest the watermelon seeds"): F1 is partial (mean 0.54, max 0.94 measured on
    # these 100 rows), never the best answers' 1.0 — why F1 is a shaping signal, not a verdict.
    f1_wrong = f1.score(wrong).scores
    assert 0.3 < float(f1_wrong.mean()) < 0.75
    assert float(f1_wrong.max()) < 1.0
