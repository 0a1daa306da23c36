"""``kk_logic``: Logic-RL's knights-and-knaves reward, every reachable value and its quirks.

Expected numbers are worked out by hand from the rules in shared/data/kk_logic_reward_notes.md
(Unakar/Logic-RL @ 9d2c457, verl/utils/reward_score/kk.py): total = format (+1 / -1) + answer
(+2 correct, -1.5 parsed but wrong, -2 unparsed / missing / format failed).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder import ConfigError, Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers.kk_logic import last_answer, parse_ground_truth
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    iter_shared,
    sample_strategy,
)

KK = {"type": "kk_logic", "prefilled_think": True}
KK_ANSWER = {**KK, "include_format": False}
REF = "(1) Zoey is a knight\n(2) Oliver is a knave"
GOOD = "(1) Zoey is a knight\n(2) Oliver is a knave"
QWEN_PROMPT = "<|im_start|>user\nWho is a knight?<|im_end|>\n<|im_start|>assistant\n<think>"


def wrap(answer: str, think: str = "Zoey tells the truth, so...") -> str:
    """A completion in Logic-RL's layout for a prompt that prefilled <think>."""
    return f"{think}</think>\n<answer>{answer}</answer>"


def run(
    config: dict, completion: str, reference: object = REF, prompt: object = ""
) -> tuple[float, dict]:
    sb = build_verifier(config).score(
        [Sample(prompt=prompt, completion=completion, reference=reference)]
    )  # type: ignore[arg-type]
    return float(sb.scores[0]), sb.details[0]


# (completion, total with format, outcome) — the source of each case is in its comment.
GOLDEN = [
    (wrap(GOOD), 3.0, "correct"),  # the dataset's answer format
    (wrap("Zoey is a knight, Oliver is a knave."), 3.0, "correct"),  # answer_text style
    (wrap("Oliver is a knave\nZoey is a knight"), 3.0, "correct"),  # order is free
    (wrap("ZOEY is a Knight and oliver IS A KNAVE"), 3.0, "correct"),  # case-insensitive
    (wrap("Zoey is\na  knight; Oliver is a knave"), 3.0, "correct"),  # \s+ spans newlines
    (wrap(GOOD) + "\nThanks for asking!", 3.0, "correct"),  # notes: text after </answer> is allowed
    (wrap("(1) Zoey is a knave\n(2) Oliver is a knave"), -0.5, "wrong"),  # one role flipped
    (wrap("(1) Zoey is a knave\n(2) Oliver is a knight"), -0.5, "wrong"),  # all flipped: same -1.5
    # notes: plural "knights" / "knaves" breaks parsing (count or word boundary)
    (wrap("Zoey and Oliver are knights"), -1.0, "unparsed"),
    (wrap("(1) Zoey is a knights\n(2) Oliver is a knave"), -1.0, "unparsed"),
    # the knight/knave substring count must equal the number of people
    (wrap(GOOD + "\nSo Zoey is a knight."), -1.0, "unparsed"),
    (wrap("Zoey is a knight"), -1.0, "unparsed"),
    (
        wrap("Zoey is a knightly fellow, Oliver is a knave"),
        -1.0,
        "unparsed",
    ),  # counted, no \b match
    (wrap("Zoey is a knight\nOliver is not a knave"), -1.0, "unparsed"),  # needs "is a"
    (wrap("Zoeys is a knight\nOliver is a knave"), -1.0, "unparsed"),  # word boundary on the name
    (wrap("   "), -1.0, "no_answer"),  # format passes, the stripped answer is empty
    # format failures: the answer is never read
    ("<think>" + wrap(GOOD), -3.0, "format_failed"),  # notes: a second <think>
    (
        wrap("(1) Zoey is a knave") + "<answer>" + GOOD + "</answer>",
        -3.0,
        "format_failed",
    ),  # two <answer>
    ("r</think>\n" + GOOD, -3.0, "format_failed"),  # no answer tags
    (f"r<answer>{GOOD}</answer></think>", -3.0, "format_failed"),  # order
    ("", -3.0, "format_failed"),
]


@pytest.mark.parametrize(("completion", "total", "outcome"), GOLDEN)
def test_golden_with_format(completion: str, total: float, outcome: str) -> None:
    got, detail = run(KK, completion)
    assert got == total
    assert detail["outcome"] == outcome


@pytest.mark.parametrize(("completion", "total", "outcome"), GOLDEN)
def test_golden_answer_only(completion: str, total: float, outcome: str) -> None:
    # the answer score alone: total minus the format score (+1 when it passed, -1 when not)
    expected = {3.0: 2.0, -0.5: -1.5, -1.0: -2.0, -3.0: -2.0}[total]
    got, detail = run(KK_ANSWER, completion)
    assert got == expected
    assert detail["answer_score"] == expected


def test_every_reachable_value() -> None:
    with_format = {run(KK, c)[0] for c, _, _ in GOLDEN}
    answer_only = {run(KK_ANSWER, c)[0] for c, _, _ in GOLDEN}
    assert with_format == {3.0, -0.5, -1.0, -3.0}
    assert answer_only == {2.0, -1.5, -2.0}
    assert build_verifier(KK).score_range == (-3.0, 3.0)
    assert build_verifier(KK_ANSWER).score_range == (-2.0, 2.0)


def test_twice_answer_extraction_uses_the_last_block_but_format_fails() -> None:
    # notes: "<answer> appearing twice (format fails even though the last one is used)"
    completion = wrap("Zoey is a knave, Oliver is a knight") + f"<answer>{GOOD}</answer>"
    assert last_answer("<think>" + completion) == GOOD
    assert run(KK, completion)[0] == -3.0


def test_names_that_prefix_other_names() -> None:
    # notes: names that are prefixes of other words need the word boundaries
    ref = "(1) Al is a knight\n(2) Alice is a knave"
    assert run(KK, wrap("Alice is a knave\nAl is a knight"), ref)[0] == 3.0
    assert run(KK, wrap("Alice is a knave\nAlice is a knight"), ref)[0] == -1.0  # no "Al is a"


def test_kelvin_sign_quirk_is_reproduced() -> None:
    # str.lower() and re.IGNORECASE both map U+212A KELVIN SIGN to "k", upstream and here
    assert run(KK, wrap("Zoey is a \u212anight, Oliver is a knave"))[0] == 3.0


def test_prefill_and_prompt_conventions() -> None:
    assert run({**KK, "prefilled_think": "auto"}, wrap(GOOD), prompt=QWEN_PROMPT)[0] == 3.0
    assert run({**KK, "prefilled_think": "auto"}, wrap(GOOD), prompt="plain question")[0] == -3.0
    assert run({**KK, "prefilled_think": False}, "<think>" + wrap(GOOD))[0] == 3.0
    # the preset is the prefilled convention
    v = build_verifier("logic_rl")
    assert v.score([Sample(completion=wrap(GOOD), reference=REF)]).scores[0] == 3.0


def test_completion_writing_assistant_header_moves_the_split() -> None:
    # Logic-RL tests "Assistant:" first; the qwen-instruct prompt has none, so the processed text
    # starts after the completion's "Assistant:" — here that drops a stray second <think>.
    completion = "<think>draft Assistant: <think>ok" + wrap(GOOD, think="")
    assert run(KK, completion, prompt=QWEN_PROMPT)[0] == 3.0
    # without the header the stray <think> would count twice
    assert run(KK, completion.replace("Assistant:", "assistant"), prompt=QWEN_PROMPT)[0] == -3.0
    # ...and a header that cuts off the opening tag fails the format
    assert run(KK, "Assistant: " + wrap(GOOD), prompt=QWEN_PROMPT)[0] == -3.0


def test_verl_ground_truth_dict() -> None:
    ref = {"solution_text_format": REF, "statements": "(('telling-truth', 1),)"}
    assert run(KK, wrap(GOOD), ref)[0] == 3.0


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        (None, "no reference"),
        ({"answer": REF}, "no 'solution_text_format'"),
        (["(1) Zoey is a knight"], "got list"),
        (3, "got int"),
        ("", "no '<Name> is a knight|knave' line"),
        ("(1) 42\n(2) ???", "no '<Name> is a knight|knave' line"),
        ({"solution_text_format": None}, "got NoneType"),
    ],
)
def test_abstains_on_missing_or_unparseable_reference(reference: object, reason: str) -> None:
    sb = build_verifier(KK).score([Sample(completion=wrap(GOOD), reference=reference)])
    assert sb.status[0] == "abstain" and math.isnan(sb.scores[0])
    assert reason in sb.details[0]["reason"]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"include_fromat": False}, "include_fromat: unknown key"),
        ({"include_format": "sometimes"}, "include_format"),
        ({"prefilled_think": "perhaps"}, "prefilled_think"),
    ],
)
def test_config_errors(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_verifier({**KK, **config})


# --- ground truth parsing -----------------------------------------------------------------------

_UPSTREAM_GT = re.compile(r"\b([A-Za-z]+)\b.*?\b(knight|knave)\b", re.IGNORECASE)


def upstream_ground_truth(text: str) -> dict[str, str]:
    """Logic-RL's parse_solution_text_format, restated from the note for a differential test."""
    out: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        m = _UPSTREAM_GT.search(line) if line else None
        if m:
            out[m.group(1)] = m.group(2).lower()
    return out


_GT_ALPHABET = st.sampled_from(
    [
        *"aZk1_ (),.\n\t-é",
        "\u212a",
        "\u017f",
        "knight",
        "KNAVE",
        "knights",
        "Zoey",
        " is a ",
        "(1) ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_GT_ALPHABET, max_size=30).map("".join))
def test_ground_truth_parser_equals_upstream_regex(text: str) -> None:
    assert parse_ground_truth(text) == upstream_ground_truth(text)


# --- real rows ----------------------------------------------------------------------------------


def _flip(answer: str) -> str:
    line, _, rest = answer.partition("\n")
    swapped = (
        line.replace("knight", "knave") if "knight" in line else line.replace("knave", "knight")
    )
    return swapped + ("\n" + rest if rest else "")


def test_real_rows_every_gold_answer_scores_3() -> None:
    v = build_verifier("logic_rl")
    rows = list(iter_shared("kk_logic.jsonl.gz"))
    assert len(rows) == 5000
    samples = [
        Sample(completion=wrap(r["answer"], r["solution"]), reference=r["answer"]) for r in rows
    ]
    sb = v.score(samples)
    assert set(sb.scores.tolist()) == {3.0}
    # the one-sentence form (upstream solution_text) parses too
    samples = [Sample(completion=wrap(r["answer_text"]), reference=r["answer"]) for r in rows[::50]]
    assert set(v.score(samples).scores.tolist()) == {3.0}


def test_real_rows_across_sizes() -> None:
    v = build_verifier("logic_rl")
    per_size: dict[int, list[dict]] = defaultdict(list)
    for r in iter_shared("kk_logic.jsonl.gz"):
        if len(per_size[r["n_people"]]) < 4:
            per_size[r["n_people"]].append(r)
    assert sorted(per_size) == [3, 4, 5, 6, 7]
    for rows in per_size.values():
        for r in rows:
            gold, ref = r["answer"], {"solution_text_format": r["answer"]}
            assert len(parse_ground_truth(gold)) == r["n_people"] == len(r["names"])
            cases = [
                (wrap(gold, r["solution"]), 3.0),
                (wrap(_flip(gold)), -0.5),
                (
                    wrap(
                        gold.replace(" a knight", " a knights", 1).replace(
                            " a knave", " a knaves", 1
                        )
                    ),
                    -1.0,
                ),
                ("<think>" + wrap(gold), -3.0),
            ]
            sb = v.score(
                [Sample(prompt=QWEN_PROMPT, completion=c, reference=ref) for c, _ in cases]
            )
            assert sb.scores.tolist() == [e for _, e in cases], r["id"]


# --- properties ---------------------------------------------------------------------------------

_real_refs = [
    r["answer"] for r in iter_shared("kk_logic.jsonl.gz") if r["upstream_index"] % 500 == 0
][:20]
_kk_text = st.lists(
    st.sampled_from(
        [
            "<think>",
            "</think>",
            "<answer>",
            "</answer>",
            " is a ",
            "knight",
            "knave",
            "Zoey",
            "\n",
            "x",
        ]
    ),
    max_size=40,
).map("".join)
_kk_samples = st.builds(
    Sample,
    prompt=st.sampled_from(["", QWEN_PROMPT, "Assistant: <think>"]),
    completion=_kk_text,
    reference=st.one_of(st.sampled_from([*_real_refs, REF]), st.none(), _kk_text),
)


@pytest.mark.parametrize("config", [KK, KK_ANSWER, {"type": "kk_logic"}])
@settings(max_examples=100, deadline=None)
@given(samples=st.lists(st.one_of(sample_strategy, _kk_samples), min_size=1, max_size=4))
def test_properties(config: dict, samples: list[Sample]) -> None:
    v = build_verifier(config)
    result = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, result)
    allowed = {3.0, -0.5, -1.0, -3.0} if config.get("include_format", True) else {2.0, -1.5, -2.0}
    for s, st_ in zip(result.scores, result.status, strict=True):
        assert st_ in ("ok", "abstain")
        assert st_ == "abstain" or float(s) in allowed


def test_hostile_input_is_fast() -> None:
    v = build_verifier(KK)
    long_ref = "a " * 20_000 + "knightx"
    rows = [
        Sample(completion="<answer>" * 30_000, reference=REF),
        Sample(
            completion=wrap("Zoey " + " " * 50_000 + "is a knight, Oliver is a knave"),
            reference=REF,
        ),
        Sample(completion=wrap(GOOD), reference=long_ref),
    ]
    sb = v.score(rows)
    assert sb.scores[0] == -3.0 and sb.scores[1] == 3.0 and sb.status[2] == "abstain"
