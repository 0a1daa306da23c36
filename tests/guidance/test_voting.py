"""Confidence-weighted voting against hand-computed tallies."""

from __future__ import annotations

import pytest

from safeladder.guidance import VoteConfig, read_answer, same_answer, tally, vote
from tests.guidance.fakes import ScriptedGenerator, marker_reward


def test_hand_computed_math_vote() -> None:
    texts = [
        "so 12\n#### 12\nConfidence: 9/10",  # 12: 0.9
        "#### 7\nConfidence: 4/10",  # 7: 0.4
        "it is 7.0\n#### 7.0\nconfidence: 0.3",  # 7 (numerically equal): 0.3
        "#### 7\nI am 10% sure",  # 7: 0.1
        "I don't know.",  # no answer: in neither vote
        "<think>maybe 7</think>\n#### 12\nConfidence: 50%",  # 12: 0.5 (after </think>)
    ]
    out = tally(texts, VoteConfig(answer="math"))
    assert out.answers == ["12", "7", "7.0", "7", None, "12"]
    assert out.confidences == pytest.approx([0.9, 0.4, 0.3, 0.1, None, 0.5])
    summary = [(g["answer"], g["count"], g["members"]) for g in out.groups]
    assert summary == [("12", 2, [0, 5]), ("7", 3, [1, 2, 3])]
    # Totals: 12 → 0.9 + 0.5 = 1.4; 7 → 0.4 + 0.3 + 0.1 = 0.8.
    assert out.groups[0]["confidence"] == pytest.approx(1.4)
    assert out.groups[1]["confidence"] == pytest.approx(0.8)
    assert out.winner_answer == "12"
    assert out.majority_answer == "7"
    assert out.agrees is False
    assert out.chosen == 0  # the most confident member of the winning group


def test_missing_confidences_make_it_a_majority_vote() -> None:
    texts = ["#### 3", "#### 5", "#### 5", "#### 3", "#### 5"]
    out = tally(texts)  # missing_confidence 0: all totals 0 → the count decides
    assert out.winner_answer == "5" and out.agrees is True
    assert out.chosen == 1


def test_missing_confidence_weight_and_ties() -> None:
    # 3: 0.5 + 0.5 (two missing at 0.5) = 1.0; 5: 1.0 stated once → tie on confidence; 3 has
    # the larger count.
    texts = ["#### 3", "#### 5\nConfidence: 10/10", "#### 3"]
    out = tally(texts, VoteConfig(missing_confidence=0.5))
    assert out.winner_answer == "3"
    # Full tie (confidence and count): the answer seen first wins both votes.
    out = tally(["#### 8\nConfidence: 5/10", "#### 9\nConfidence: 5/10"])
    assert out.winner_answer == "8" and out.majority_answer == "8"


def test_no_answers() -> None:
    out = tally(["nothing", "still nothing"], VoteConfig(answer="choice"))
    assert out.groups == [] and out.winner is None and out.agrees is None


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("The answer is (C).", "choice", "C"),
        ("A or B", "choice", None),  # several letters: no single answer
        ("<answer>The Eiffel Tower!</answer>", "qa", "eiffel tower"),
        ("\\boxed{\\frac{1}{2}}", "math", "\\frac{1}{2}"),
    ],
)
def test_read_answer_reuses_the_answer_verifiers(
    text: str, kind: str, expected: str | None
) -> None:
    assert read_answer(text, kind) == expected


def test_same_answer() -> None:
    assert same_answer("\\frac{1}{2}", "0.5", "math")
    assert same_answer("50%", "0.5", "math")
    assert not same_answer("2", "3", "math")
    assert same_answer("x + 1", "x+1", "math")
    assert not same_answer("paris", "lyon", "qa")


def test_choice_vote_and_qa_vote() -> None:
    out = tally(
        ["(A) Confidence: 20%", "B. Confidence: 90%", "answer: A confidence 30%"],
        VoteConfig(answer="choice"),
    )
    assert [g["answer"] for g in out.groups] == ["A", "B"]
    assert out.winner_answer == "B" and out.majority_answer == "A"


def test_vote_end_to_end_with_a_scripted_generator() -> None:
    opts = [
        "v=1 #### 4\nConfidence: 9/10",
        "v=2 #### 5\nConfidence: 2/10",
        "v=3 #### 5\nConfidence: 3/10",
    ]
    gen = ScriptedGenerator(lambda ctx: opts)
    with marker_reward() as reward:
        traces = vote(gen, ["p", "q"], VoteConfig(n=3), reward=reward)
    assert gen.calls == [(2, 3)]
    for t in traces:
        assert t.completion == opts[0] and t.chosen == 0 and t.score == 1.0
        assert t.majority == "5" and t.agrees_with_majority is False
        assert [(v["answer"], v["count"]) for v in t.votes] == [("4", 1), ("5", 2)]
        assert [c.answer for c in t.candidates] == ["4", "5", "5"]
        assert t.candidates[1].confidence == pytest.approx(0.2)
    (t,) = vote(ScriptedGenerator(lambda ctx: ["no answer"]), ["p"], VoteConfig(n=2))
    assert t.chosen == 0 and t.majority is None and t.score is None
