"""Row → Sample: default field names, flags, meta carry-through, errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from safeladder.data import FieldMap, to_sample
from safeladder.errors import InputError
from safeladder.types import SampleBatch
from tests.helpers import read_shared

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]


def test_defaults_and_meta() -> None:
    s = to_sample({"prompt": "q", "completion": "c", "reference": "r", "task": "math", "id": 7})
    assert (s.prompt, s.completion, s.reference) == ("q", "c", "r")
    assert s.meta == {"task": "math", "id": 7}


def test_fallback_names_response_and_answer() -> None:
    s = to_sample({"prompt": "q", "response": "c", "answer": "r"})
    assert (s.completion, s.reference, s.meta) == ("c", "r", {})


def test_first_candidate_wins_and_the_other_goes_to_meta() -> None:
    s = to_sample(
        {"prompt": "q", "completion": "a", "response": "b", "reference": "r", "answer": "x"}
    )
    assert (s.completion, s.reference) == ("a", "r")
    assert s.meta == {"response": "b", "answer": "x"}


def test_a_missing_or_null_prompt_is_a_bad_row_unless_allowed() -> None:
    with pytest.raises(InputError, match=r"missing field 'prompt' \(looked for: prompt\)"):
        to_sample({"completion": "c"})
    with pytest.raises(InputError, match="field 'prompt' \\(prompt\\) is null"):
        to_sample({"prompt": None, "completion": "c"})
    lenient = FieldMap.from_flags(allow_missing_prompt=True)
    s = to_sample({"completion": "c"}, lenient)
    assert (s.prompt, s.reference, s.meta) == ("", None, {})
    assert to_sample({"prompt": None, "completion": "c"}, lenient).prompt == ""


def test_chat_prompt_and_conversational_completion() -> None:
    s = to_sample({"prompt": CHAT, "completion": [{"role": "assistant", "content": "4"}]})
    assert s.prompt == CHAT
    assert s.completion == "4"
    SampleBatch.from_samples([s])  # the batch's own validation accepts what we built


def test_nested_meta_is_unpacked_and_top_level_fields_win() -> None:
    s = to_sample({"prompt": "q", "completion": "c", "meta": {"task": "math", "id": 1}, "id": 2})
    assert s.meta == {"task": "math", "id": 2}


def test_flags_replace_the_candidates_and_require_the_field() -> None:
    fm = FieldMap.from_flags(prompt="question", completion="output", reference="gold")
    s = to_sample({"question": "q", "output": "o", "gold": "g", "completion": "ignored"}, fm)
    assert (s.prompt, s.completion, s.reference) == ("q", "o", "g")
    assert s.meta == {"completion": "ignored"}
    with pytest.raises(InputError, match=r"missing field 'reference' \(looked for: gold\)"):
        to_sample({"question": "q", "output": "o"}, fm)
    with pytest.raises(InputError, match=r"missing field 'prompt' \(looked for: question\)"):
        to_sample({"output": "o", "gold": "g"}, fm)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q"}, "missing field 'completion' (looked for: completion, response)"),
        ({"completion": None}, "field 'completion' (completion): expected a string"),
        ({"response": 3}, "field 'response' (completion): expected a string"),
        (
            {"completion": [{"role": "user", "content": "x"}]},
            "field 'completion' (completion): a conversational completion needs an assistant "
            "message, got roles ['user']",
        ),
        (
            {"completion": [{"role": "assistant", "content": 3}]},
            "field 'completion' (completion): assistant message content must be a string or "
            "text blocks, got int",
        ),
        ({"prompt": 5, "completion": "c"}, "field 'prompt' (prompt): expected a string or a list"),
        ({"prompt": [{"content": "x"}], "completion": "c"}, "field 'prompt' (prompt): message 0"),
        ({"prompt": ["hi"], "completion": "c"}, "field 'prompt' (prompt): message 0"),
    ],
)
def test_bad_rows_name_the_field(row: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        to_sample(row)
    assert message in str(info.value)
    assert info.value.field is not None


def test_shared_safety_rows_map_response_to_completion() -> None:
    # gptfuzz rows: prompt + response + label; response is the model output.
    rows = read_shared("gptfuzz_labeled_responses.jsonl.gz", limit=20)
    for row in rows:
        s = to_sample(row)
        assert s.completion == row["response"]
        assert s.meta["label"] == row["label"]


def test_shared_math_rows_need_a_completion_field_flag() -> None:
    # gsm8k rows have question / solution / answer: the solution is the completion here.
    row = read_shared("gsm8k_train.jsonl.gz", limit=1)[0]
    with pytest.raises(InputError, match="missing field 'completion'"):
        to_sample(row)
    s = to_sample(row, FieldMap.from_flags(prompt="question", completion="solution"))
    assert (s.prompt, s.completion, s.reference) == (
        row["question"],
        row["solution"],
        row["answer"],
    )


def test_one_reader_of_conversational_completions_for_files_and_trl() -> None:
    from safeladder.integrations.trl import trl_batch

    tool_exchange = [
        {"role": "assistant", "content": "let me look it up"},
        {"role": "tool", "content": "Paris"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Par"}, {"type": "text", "text": "is"}],
        },
    ]
    from_file = to_sample({"prompt": "q", "completion": tool_exchange}).completion
    from_trl = trl_batch(["q"], [tool_exchange], {}, None).completions[0]
    assert from_file == from_trl == "Paris"
