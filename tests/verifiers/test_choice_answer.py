"""``choice_answer``: letter extraction by priority, hedging = wrong, prose is not a letter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder import ConfigError, Sample
from safeladder.verifiers import build_verifier
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    read_shared,
    sample_strategy,
    text_strategy,
)

CHOICE = {"type": "choice_answer"}


def run(
    config: dict, completion: str, reference: object = "B", meta: dict | None = None
) -> tuple[float, dict]:
    sb = build_verifier(config).score(
        [Sample(completion=completion, reference=reference, meta=meta or {})]
    )
    assert sb.status[0] == "ok", sb.details[0]
    return float(sb.scores[0]), sb.details[0]


# (completion, expected score against gold "B", deciding kind or None) — sources in comments.
GOLDEN = [
    # the forms named in the spec
    ("The answer is (B).", 1.0, "statement"),
    ("Answer: B", 1.0, "statement"),
    ("**B**", 1.0, "line_start"),
    ("B) Paris is the capital.", 1.0, "line_start"),
    ("\\boxed{B}", 1.0, "boxed"),
    ("<answer>B</answer>", 1.0, "answer_tag"),
    ("I would pick (B) here.", 1.0, "delimited"),
    ("B", 1.0, "line_start"),
    # common model phrasings
    ("**Answer:** (B)", 1.0, "statement"),
    ("The correct answer is option B.", 1.0, "statement"),
    ("Final answer:\n\nB", 1.0, "statement"),
    ("So the answer would be B) 4.", 1.0, "statement"),
    ("$\\boxed{\\text{(B)}}$", 1.0, "boxed"),
    ("<answer> B) Paris </answer>", 1.0, "answer_tag"),
    ("- B. Paris", 1.0, "line_start"),
    ("The answer is C.", 0.0, "statement"),
    ("\\boxed{D}", 0.0, "boxed"),
    # Visual-RFT #79: several different letters as the answer are wrong, whatever the gold
    ("The answer is A, B, C", 0.0, "statement"),
    ("The answer is B or C.", 0.0, "statement"),
    ("The answers are B and D.", 0.0, "statement"),
    ("\\boxed{A}\\boxed{B}", 0.0, "boxed"),
    ("\\boxed{B, C}", 0.0, "boxed"),
    ("<answer>B</answer><answer>C</answer>", 0.0, "answer_tag"),
    ("A or B", 0.0, "lone"),
    ("A) 1\nB) 2\nC) 3", 0.0, "line_start"),  # restating the options is not choosing one
    # the same letter repeated is one answer
    ("The answer is B. Yes, the answer is (B).", 1.0, "statement"),
    # priority: an explicit statement beats a box, a box beats tags, tags beat line starts
    ("\\boxed{C}\nThe answer is B.", 1.0, "statement"),
    ("<answer>C</answer> \\boxed{B}", 1.0, "boxed"),
    ("C) maybe\n<answer>B</answer>", 1.0, "answer_tag"),
    # reasoning before </think> is not read (strip_think)
    ("<think>The answer is A? Or \\boxed{C}?</think>The answer is B.", 1.0, "statement"),
    # ordinary English: the article / pronoun is not a choice
    ("A train leaves at noon.", 0.0, None),
    ("Answer: A train leaves at noon.", 0.0, None),
    ("I think so.", 0.0, None),
    ("The answer is Because of gravity.", 0.0, None),
    ("Paris", 0.0, None),
    ("", 0.0, None),
]


@pytest.mark.parametrize(("completion", "expected", "via"), GOLDEN)
def test_golden(completion: str, expected: float, via: str | None) -> None:
    got, detail = run(CHOICE, completion)
    assert got == expected
    assert detail.get("via") == via


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The answer is A because the others are wrong.", 1.0),  # "A because": not an article
        ("Answer: A is correct.", 1.0),
        ("The answer is A few large producers.", 0.0),  # MMLU option text starting with "A"
        ("**A** train", 1.0),  # emphasis makes it a letter
        ("Answer: (A) A train leaves", 1.0),
        ("The answer is I.", 0.0),  # gold is A; I is a letter here (A-J)
    ],
)
def test_article_and_pronoun(completion: str, expected: float) -> None:
    assert run(CHOICE, completion, reference="A")[0] == expected


def test_letters_limit_what_counts() -> None:
    cfg = {**CHOICE, "letters": "ABCD"}
    assert run(cfg, "The answer is E.", reference="D") == (
        0.0,
        {"gold": "D", "reason": "no choice letter found"},
    )
    assert run(cfg, "The answer is (D).", reference=3)[0] == 1.0


def test_strip_think_off_reads_the_reasoning_too() -> None:
    text = "<think>The answer is A.</think>The answer is B."
    assert run(CHOICE, text)[0] == 1.0
    got, detail = run({**CHOICE, "strip_think": False}, text)
    assert got == 0.0 and "several different letters offered: A, B" in detail["reason"]


@pytest.mark.parametrize(
    "reference",
    [
        "B",
        "b",
        " (B) ",
        1,
        np.int64(1),
        {"answer": "B"},
        {"answer_index": 1},
        {"answer": "B", "answer_index": 1},
        {"answer": 1},
    ],
)
def test_reference_forms(reference: object) -> None:
    assert run(CHOICE, "The answer is (B).", reference=reference) == (
        1.0,
        {"pred": "B", "gold": "B", "via": "statement"},
    )


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        (None, "no reference"),
        ("K", "not one of the letters"),
        ("BC", "not one of the letters"),
        ("", "not one of the letters"),
        (10, "outside 0..9"),
        (-1, "outside 0..9"),
        (True, "is a bool"),
        (1.0, "got float"),
        (["B"], "got list"),
        ({}, "neither 'answer' nor 'answer_index'"),
        ({"answer": "B", "answer_index": 2}, "disagree"),
        ({"answer": "Paris"}, "answer: reference 'Paris'"),
    ],
)
def test_abstains_on_bad_reference(reference: object, reason: str) -> None:
    sb = build_verifier(CHOICE).score([Sample(completion="The answer is B.", reference=reference)])
    assert sb.status[0] == "abstain" and math.isnan(sb.scores[0])
    assert reason in sb.details[0]["reason"]


def test_match_text() -> None:
    cfg = {**CHOICE, "match_text": True}
    row = {"answer": "B", "choices": ["Lyon", "Paris", "Nice", "Lille"]}
    assert run(cfg, "The answer is Paris.", row) == (1.0, {"pred": "B", "gold": "B", "via": "text"})
    assert run(cfg, "\\boxed{\\text{paris}}", row)[0] == 1.0
    assert run(cfg, "<answer> **Paris** </answer>", row)[0] == 1.0
    assert run(cfg, "Paris", row)[0] == 1.0
    assert run(cfg, "The answer is Lyon.", row)[0] == 0.0
    assert run(cfg, "Paris or Lyon", row)[0] == 0.0  # exact text only, no substring credit
    assert (
        run(cfg, "The answer is Paris. Answer: Lyon", row)[0] == 0.0
    )  # every statement must agree
    assert run(cfg, "The answer is (C).", row)[0] == 0.0  # a letter, when given, decides
    # choice texts may come from meta when the reference is a bare letter
    assert run(cfg, "Paris", "B", meta={"choices": row["choices"]})[0] == 1.0
    assert run(cfg, "Paris", "B", meta={"answer_text": "Paris"})[0] == 1.0
    # off by default, and without choice texts it is letters only
    assert run(CHOICE, "Paris", row)[0] == 0.0
    assert run(cfg, "Paris", "B")[0] == 0.0


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"leters": "ABCD"}, "leters: unknown key"),
        ({"letters": "abcd"}, "upper-case"),
        ({"letters": ""}, "upper-case"),
        ({"letters": "ABCA"}, "repeated letter"),
        ({"match_text": "perhaps"}, "match_text"),
    ],
)
def test_config_errors(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_verifier({**CHOICE, **config})


# --- real MMLU rows -----------------------------------------------------------------------------

MMLU = read_shared("mmlu_mc.jsonl")


def test_mmlu_rows_letters() -> None:
    v = build_verifier({**CHOICE, "letters": "ABCD"})
    rows = MMLU[::10]
    for template in (
        "The answer is ({}).",
        "Answer: {}",
        "\\boxed{{{}}}",
        "<answer>{}</answer>",
        "{}",
    ):
        right = v.score(
            [Sample(completion=template.format(r["answer"]), reference=r) for r in rows]
        )
        assert set(right.scores.tolist()) == {1.0}, template
        wrong = [
            Sample(completion=template.format("ABCD"[(r["answer_index"] + 1) % 4]), reference=r)
            for r in rows
        ]
        assert set(v.score(wrong).scores.tolist()) == {0.0}, template
    hedged = [
        Sample(completion="\\boxed{A}\\boxed{B}\\boxed{C}\\boxed{D}", reference=r) for r in rows
    ]
    assert set(v.score(hedged).scores.tolist()) == {0.0}
    # the gold letter followed by its option text, as models often answer
    full = [Sample(completion=f"{r['answer']}) {r['answer_text']}", reference=r) for r in rows]
    assert set(v.score(full).scores.tolist()) == {1.0}


def test_mmlu_rows_text() -> None:
    v = build_verifier({**CHOICE, "letters": "ABCD", "match_text": True})
    # option texts that read as letters ("A and D", "B") or span lines are not answer texts
    rows = [
        r
        for r in MMLU[::5]
        if "\n" not in r["answer_text"] and not v.extract(f"Answer: {r['answer_text']}")[0]
    ]
    assert len(rows) > 850
    sb = v.score(
        [Sample(completion=f"The answer is {r['answer_text']}.", reference=r) for r in rows]
    )
    assert set(sb.scores.tolist()) == {1.0}
    others = [
        Sample(
            completion=f"The answer is {r['choices'][(r['answer_index'] + 1) % 4]}.", reference=r
        )
        for r in rows
        if r["choices"][(r["answer_index"] + 1) % 4].strip().casefold()
        != r["answer_text"].strip().casefold()
    ]
    assert float(np.mean(v.score(others).scores)) < 0.01


# --- properties ---------------------------------------------------------------------------------

_choice_text = st.lists(
    st.sampled_from(
        [
            "A",
            "B",
            "C",
            "(B)",
            "**",
            " or ",
            ", ",
            "The answer is ",
            "Answer: ",
            "\\boxed{",
            "}",
            "<answer>",
            "</answer>",
            "</think>",
            "\n",
            " train",
            " ",
            ".",
        ]
    ),
    max_size=30,
).map("".join)
_choice_samples = st.builds(
    Sample,
    completion=st.one_of(_choice_text, text_strategy),
    reference=st.one_of(
        st.sampled_from(["A", "B", "c", 2, 11, None, {"answer": "B", "choices": ["x", "y"]}]),
        text_strategy,
    ),
)


@pytest.mark.parametrize(
    "config", [CHOICE, {**CHOICE, "match_text": True, "letters": "ABC", "strip_think": False}]
)
@settings(max_examples=150, deadline=None)
@given(samples=st.lists(st.one_of(sample_strategy, _choice_samples), min_size=1, max_size=4))
def test_properties(config: dict, samples: list[Sample]) -> None:
    v = build_verifier(config)
    result = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, result)
    assert set(result.status) <= {"ok", "abstain"}


@settings(max_examples=100, deadline=None)
@given(letters=st.lists(st.sampled_from("ABCD"), min_size=2, max_size=4, unique=True))
def test_listing_several_letters_never_pays(letters: list[str]) -> None:
    for text in (
        f"The answer is {' or '.join(letters)}.",
        "".join(f"\\boxed{{{x}}}" for x in letters),
    ):
        for gold in letters:
            assert run(CHOICE, text, reference=gold)[0] == 0.0


def test_hostile_input_is_fast() -> None:
    v = build_verifier(CHOICE)
    texts = [
        "answer is " * 10_000,
        "\\boxed{" * 10_000,
        "(" * 50_000,
        "A, " * 20_000,
        "*" * 60_000,
        "{" * 100_000,
    ]
    sb = v.score([Sample(completion=t, reference="A") for t in texts])
    assert list(sb.status) == ["ok"] * len(texts)
