"""``think_format``: the strict layout check, Logic-RL's ±1 format score, prefill handling."""

from __future__ import annotations

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

STRICT = {"type": "think_format"}
LOGIC = {"type": "think_format", "style": "logic_rl", "prefilled_think": True}
# Logic-RL's qwen-instruct prompt ends with the header and a prefilled <think>
# (kk_logic_reward_notes.md, "Prompt template").
QWEN_PROMPT = "<|im_start|>user\nWho is a knight?<|im_end|>\n<|im_start|>assistant\n<think>"
# The "base" template's rendered prompt contains the header "Assistant:" itself.
BASE_PROMPT = "A conversation between User and Assistant. User: Who is a knight? Assistant: <think>"


def score(config: dict, completion: str, prompt: object = "") -> tuple[float, dict]:
    sb = build_verifier(config).score([Sample(prompt=prompt, completion=completion)])  # type: ignore[arg-type]
    assert sb.status[0] == "ok"
    return float(sb.scores[0]), sb.details[0]


# --- strict style -------------------------------------------------------------------------------

STRICT_CASES = [
    # (completion, expected score, reason fragment or None, where the case comes from)
    ("<think>r</think><answer>B</answer>", 1.0, None),  # the canonical layout
    (
        "\n <think>\nstep 1\n</think>\n\n<answer> 42 </answer>\n",
        1.0,
        None,
    ),  # whitespace around is fine
    # open-r1 #359: repeated blocks still earned the format reward
    (
        "<think>a</think><answer>1</answer><think>b</think><answer>2</answer>",
        0.0,
        "appears 2 times",
    ),
    ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0, "'<answer>' appears 2 times"),
    # nested blocks
    ("<think>a<think>b</think>c</think><answer>1</answer>", 0.0, "'<think>' appears 2 times"),
    # Visual-RFT #176: empty answers were rewarded
    ("<think>a</think><answer></answer>", 0.0, "answer block is empty"),
    ("<think>a</think><answer> \n\t</answer>", 0.0, "answer block is empty"),
    ("<think> </think><answer>1</answer>", 0.0, "think block is empty"),
    # a tag inside the answer / inside the think block
    ("<think>a</think><answer>1 <answer> 2</answer>", 0.0, "'<answer>' appears 2 times"),
    (
        "<think>I'll write </answer> later</think><answer>1</answer>",
        0.0,
        "'</answer>' appears 2 times",
    ),
    (
        "<think>plan: <answer>x</answer></think><answer>1</answer>",
        0.0,
        "'<answer>' appears 2 times",
    ),
    # a stray closing tag
    ("</think><think>a</think><answer>1</answer>", 0.0, "'</think>' appears 2 times"),
    ("<think>a</think><answer>1</answer></answer>", 0.0, "'</answer>' appears 2 times"),
    # case variants: not tags, and not allowed to smuggle a second block past the count
    ("<THINK>a</THINK><ANSWER>1</ANSWER>", 0.0, "case variant"),
    ("<think>a</think><answer>1</answer><Answer>2</Answer>", 0.0, "'<Answer>' is a case variant"),
    ("<think>a</Think></think><answer>1</answer>", 0.0, "case variant"),
    # order and missing tags
    ("<answer>1</answer><think>a</think>", 0.0, "comes before"),
    ("<think>a</think>1", 0.0, "'<answer>' is missing"),
    ("just an answer", 0.0, "'<think>' is missing"),
    ("", 0.0, "'<think>' is missing"),
    # the answer outside the tags, between the blocks, or after them
    ("<think>a</think> B <answer>1</answer>", 0.0, "text between"),
    ("<think>a</think><answer>1</answer> and also 2", 0.0, "text after '</answer>'"),
    ("Sure! <think>a</think><answer>1</answer>", 0.0, "text before '<think>'"),
]


@pytest.mark.parametrize(("completion", "expected", "reason"), STRICT_CASES)
def test_strict_golden(completion: str, expected: float, reason: str | None) -> None:
    got, detail = score(STRICT, completion)
    assert got == expected
    if reason is None:
        assert "reason" not in detail
    else:
        assert reason in detail["reason"]


@pytest.mark.parametrize(
    ("leading", "trailing", "completion", "expected"),
    [
        ("none", "none", "<think>a</think><answer>1</answer>", 1.0),
        ("none", "none", " <think>a</think><answer>1</answer>", 0.0),  # even a space is refused
        ("none", "none", "<think>a</think><answer>1</answer>\n", 0.0),
        ("any", "whitespace", "Okay. <think>a</think><answer>1</answer>", 1.0),
        ("whitespace", "any", "<think>a</think><answer>1</answer> Hope this helps!", 1.0),
        # "any" still counts tags: a second block in the trailing text fails
        ("whitespace", "any", "<think>a</think><answer>1</answer> <answer>2</answer>", 0.0),
    ],
)
def test_strict_leading_and_trailing(
    leading: str, trailing: str, completion: str, expected: float
) -> None:
    cfg = {**STRICT, "leading": leading, "trailing": trailing}
    assert score(cfg, completion)[0] == expected


@pytest.mark.parametrize(
    ("completion", "expected", "reason"),
    [
        ("reasoning</think><answer>B</answer>", 1.0, None),
        # opening the block again when the prompt already did is a repeated tag
        ("<think>reasoning</think><answer>B</answer>", 0.0, "the prompt already opened it"),
        ("</think><answer>B</answer>", 0.0, "think block is empty"),
        ("\n</think><answer>B</answer>", 0.0, "think block is empty"),
    ],
)
def test_strict_prefilled(completion: str, expected: float, reason: str | None) -> None:
    for cfg, prompt in (({**STRICT, "prefilled_think": True}, ""), (STRICT, QWEN_PROMPT)):
        got, detail = score(cfg, completion, prompt)
        assert got == expected, (cfg, prompt)
        assert detail["prefilled"] is True
        if reason is not None:
            assert reason in detail["reason"]


def test_auto_prefill_reads_the_prompt_end() -> None:
    body = "r</think><answer>B</answer>"
    assert score(STRICT, body, "Q\n<think>\n  ")[0] == 1.0  # trailing whitespace ignored
    assert score(STRICT, body, "Q")[0] == 0.0
    assert score(STRICT, body, "<think> in the middle of the prompt, not at its end")[0] == 0.0
    # chat prompt: the message contents are read (safeladder.types.prompt_text)
    chat = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>"}]
    assert score(STRICT, body, chat) == (1.0, {"prefilled": True})
    assert score({**STRICT, "prefilled_think": False}, body, chat)[0] == 0.0


@pytest.mark.parametrize(
    ("completion", "expected", "reason"),
    [
        # SafeWork-R1's think-only rule (papers.md §1.1): non-empty think, </think>, then an answer
        ("<think>a</think>The answer is 4.", 1.0, None),
        ("<think>a</think>   \n", 0.0, "nothing follows"),
        ("<think> </think>4", 0.0, "think block is empty"),
        ("<think>a</think>4</think>", 0.0, "'</think>' appears 2 times"),
        ("4 <think>a</think>4", 1.0, None),  # SafeWork lets anything precede <think>
    ],
)
def test_think_only(completion: str, expected: float, reason: str | None) -> None:
    got, detail = score({**STRICT, "answer_block": "none", "leading": "any"}, completion)
    assert got == expected
    if reason is not None:
        assert reason in detail["reason"]


def test_custom_tags() -> None:
    cfg = {
        **STRICT,
        "think_open": "<reasoning>",
        "think_close": "</reasoning>",
        "answer_open": "<solution>",
        "answer_close": "</solution>",
    }
    assert score(cfg, "<reasoning>a</reasoning><solution>1</solution>")[0] == 1.0
    assert score(cfg, "<think>a</think><answer>1</answer>")[0] == 0.0


# --- Logic-RL style -----------------------------------------------------------------------------

# Expected values follow validate_response_structure (Unakar/Logic-RL @ 9d2c457, kk.py) applied by
# hand to "<think>" + completion (the preset's prefilled prompt): each tag once, first positions
# in order.
LOGIC_CASES = [
    ("reasoning</think><answer>(1) Zoey is a knight</answer>", 1.0),
    # Logic-RL does not require non-empty blocks or clean surroundings
    ("</think><answer></answer>", 1.0),
    ("r</think> chatter <answer>a</answer> trailing text", 1.0),
    # nor is it case-sensitive about variants: "<Answer>" is just text to str.count
    ("r</think><answer>a</answer><Answer>b</Answer>", 1.0),
    # a second <think>: the prefilled one already counts
    ("<think>r</think><answer>a</answer>", -1.0),
    ("r</think><answer>a</answer><answer>b</answer>", -1.0),
    ("r</think>a", -1.0),
    ("r<answer>a</answer></think>", -1.0),  # order: </think> after <answer>
    ("", -1.0),
]


@pytest.mark.parametrize(("completion", "expected"), LOGIC_CASES)
def test_logic_rl_golden(completion: str, expected: float) -> None:
    assert score(LOGIC, completion)[0] == expected


def test_logic_rl_preset_is_the_prefilled_logic_rl_score() -> None:
    v = build_verifier("logic_rl_format")
    assert v.score_range == (-1.0, 1.0)
    for completion, expected in LOGIC_CASES:
        assert v.score([Sample(completion=completion)]).scores[0] == expected


def test_logic_rl_without_prefill_needs_the_opening_tag() -> None:
    cfg = {**LOGIC, "prefilled_think": False}
    assert score(cfg, "<think>r</think><answer>a</answer>")[0] == 1.0
    assert score(cfg, "r</think><answer>a</answer>")[0] == -1.0


def test_logic_rl_completion_writing_assistant_header() -> None:
    # Logic-RL splits the decoded prompt+completion after the FIRST "Assistant:". Under the
    # qwen-instruct template the prompt has none, so a completion that writes one moves the split
    # into the completion: the prefilled <think> and the completion's own <think> are cut off.
    moved = "<think>x Assistant: r</think><answer>a</answer>"
    assert score(LOGIC, moved, QWEN_PROMPT)[0] == -1.0  # processed text lacks <think>
    assert score(LOGIC, moved)[0] == -1.0  # an unseen prompt is taken to be qwen-instruct
    # ...and one that writes "Assistant: <think>" re-creates the opening tag after the split
    assert score(LOGIC, "junk Assistant: <think>r</think><answer>a</answer>", QWEN_PROMPT)[0] == 1.0
    # Under the base template the prompt's own "Assistant:" comes first: nothing moves.
    assert score(LOGIC, "r Assistant: </think><answer>a</answer>", BASE_PROMPT)[0] == 1.0
    # "<|im_start|>assistant" in the completion never moves the split (the prompt's header is first)
    assert score(LOGIC, "r<|im_start|>assistant</think><answer>a</answer>", QWEN_PROMPT)[0] == 1.0


def test_strict_style_is_not_affected_by_assistant_header() -> None:
    assert (
        score({**STRICT, "prefilled_think": True}, "x Assistant: r</think><answer>a</answer>")[0]
        == 1.0
    )


# --- config validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"styel": "strict"}, "styel: unknown key"),
        ({"style": "loose"}, "style"),
        ({"leading": "some"}, "leading"),
        ({"prefilled_think": "maybe"}, "prefilled_think"),
        ({"think_open": ""}, "think_open"),
        ({"answer_close": " </answer>"}, "surrounding whitespace"),
        ({"think_open": "<a>", "answer_open": "<A>"}, "occurs inside answer_open"),
        ({"answer_open": "<think"}, "think_open '<think>'"),
        ({"style": "logic_rl", "trailing": "any"}, "trailing only apply to style 'strict'"),
        ({"style": "logic_rl", "answer_block": "none"}, "set style: strict"),
    ],
)
def test_config_errors(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_verifier({**STRICT, **config})


def test_score_ranges() -> None:
    assert build_verifier(STRICT).score_range == (0.0, 1.0)
    assert build_verifier(LOGIC).score_range == (-1.0, 1.0)


# --- properties ---------------------------------------------------------------------------------

CONFIGS = [
    STRICT,
    {**STRICT, "prefilled_think": True, "trailing": "any"},
    {**STRICT, "answer_block": "none", "leading": "none"},
    LOGIC,
    {**LOGIC, "prefilled_think": "auto"},
]


@pytest.mark.parametrize("config", CONFIGS)
@settings(max_examples=120, deadline=None)
@given(samples=st.lists(sample_strategy, min_size=1, max_size=4))
def test_properties(config: dict, samples: list[Sample]) -> None:
    v = build_verifier(config)
    result = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, result)
    assert set(result.status) == {"ok"}  # never abstains: every string has a layout or not


@settings(max_examples=100, deadline=None)
@given(think=text_strategy, answer=text_strategy)
def test_well_formed_blocks_pass_when_tag_free(think: str, answer: str) -> None:
    tags = ("<think>", "</think>", "<answer>", "</answer>")
    if any(t.casefold() in (think + answer).casefold() for t in tags):
        return
    completion = f"<think>{think}</think><answer>{answer}</answer>"
    expected = 1.0 if think.strip() and answer.strip() else 0.0
    assert score(STRICT, completion)[0] == expected
    assert score({**LOGIC, "prefilled_think": False}, completion)[0] == 1.0


def test_hostile_input_is_fast() -> None:
    v = build_verifier(STRICT)
    rows = [
        Sample(completion="<think>" * 20_000),
        Sample(completion="<THINK" * 20_000 + "</think>" * 5),
    ]
    assert list(v.score(rows).scores) == [0.0, 0.0]


def test_real_kk_rows_wrapped() -> None:
    # kk_logic.jsonl.gz: a reasoning chain + the gold answer in Logic-RL's layout
    for row in read_shared("kk_logic.jsonl.gz", limit=20):
        body = f"{row['solution']}</think>\n<answer>{row['answer']}</answer>"
        assert score(STRICT, body, QWEN_PROMPT)[0] == 1.0
        assert score(LOGIC, body)[0] == 1.0
        assert score(LOGIC, "<think>" + body)[0] == -1.0
