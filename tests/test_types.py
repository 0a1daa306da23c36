"""Core types: validation messages name the row and field; ScoreBatch keeps NaN ⇔ non-ok."""

from __future__ import annotations

import numpy as np
import pytest

from safeladder import InputError, Sample, SampleBatch, ScoreBatch
from safeladder.types import prompt_text


def test_sample_accepts_string_and_chat_prompts() -> None:
    s = Sample(
        prompt=[{"role": "user", "content": "hi"}],
        completion="hello",
        reference="x",
        meta={"task": "qa"},
    )
    assert prompt_text(s.prompt) == "hi"
    assert Sample(prompt=None, completion="c").prompt == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prompt": "p"}, "completion"),
        ({"prompt": "p", "completion": 3}, "completion"),
        (
            {"prompt": [{"role": "user"}], "completion": "c"},
            r"prompt\[0\]: a chat message must be a mapping with 'role' and 'content'",
        ),
        ({"prompt": "p", "completion": "c", "extra": 1}, "extra"),
    ],
)
def test_sample_errors_name_the_field(kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        Sample(**kwargs)


def test_batch_from_columns_checks_lengths_and_types() -> None:
    b = SampleBatch.from_columns(["a", "b"], ["x", "y"], references=["1", None])
    assert len(b) == 2 and b.metas == [{}, {}]
    assert b[1] == Sample(prompt="b", completion="y")
    with pytest.raises(InputError, match="completions has 2 rows, prompts has 1"):
        SampleBatch.from_columns(["a"], ["x", "y"])
    with pytest.raises(InputError, match="row 1: completion must be a string, got int"):
        SampleBatch.from_columns(None, ["x", 5])  # type: ignore[list-item]
    with pytest.raises(InputError, match="row 0: prompt"):
        SampleBatch.from_columns([[{"content": "no role"}]], ["x"])


def test_coerce_accepts_lists_of_samples_or_dicts() -> None:
    b = SampleBatch.coerce([Sample(completion="a"), {"completion": "b", "meta": {"k": 1}}])
    assert b.completions == ["a", "b"] and b.metas[1] == {"k": 1}
    with pytest.raises(InputError, match="row 1"):
        SampleBatch.coerce([{"completion": "a"}, {"completon": "typo"}])
    assert SampleBatch.coerce(b) is b
    assert b.take([1, 0]).completions == ["b", "a"]
    # Rows are frozen Samples built once, so every verifier of a reward shares them.
    assert b[0] is b[0] and b[-1] is b[1] and b[1].completion == "b"


def test_scorebatch_enforces_nan_iff_not_ok() -> None:
    sb = ScoreBatch("t", [1.0, np.nan], ["ok", "abstain"])
    assert sb.scores.dtype == np.float32 and sb.details == [{}, {}]
    assert sb.counts()["abstain"] == 1 and sb.rate("abstain") == 0.5
    with pytest.raises(ValueError, match="row 1: status 'ok' with score nan"):
        ScoreBatch("t", [1.0, np.nan], ["ok", "ok"])
    with pytest.raises(ValueError, match="row 0: status 'timeout' with score 0.0"):
        ScoreBatch("t", [0.0], ["timeout"])
    with pytest.raises(ValueError, match="unknown status"):
        ScoreBatch("t", [np.nan], ["maybe"])
    unhashable = np.empty(2, dtype=object)
    unhashable[:] = ["ok", ["x"]]
    with pytest.raises(ValueError, match=r"row 1: unknown status \['x'\]"):
        ScoreBatch("t", [1.0, np.nan], unhashable)
    with pytest.raises(ValueError, match="scores has 2 rows, status 1"):
        ScoreBatch("t", [1.0, 2.0], ["ok"])
    assert sb.take([1]).status.tolist() == ["abstain"]


def test_prompt_text_reads_only_text_parts_of_list_contents() -> None:
    # Before images, a list content was stringified: "[{'type': 'image'}, ...]" reached verifiers.
    prompt = [
        {"role": "system", "content": "be safe"},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "cat.png"},
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    assert prompt_text(prompt) == "be safe\nwhat is this?"


def test_sample_images_are_a_tuple_of_checked_references() -> None:
    s = Sample(completion="c", images=["a.png", b"\x89PNG"])
    assert s.images == ("a.png", b"\x89PNG")
    assert Sample(completion="c").images == ()
    assert Sample(completion="c", images="one.png").images == ("one.png",)
    with pytest.raises(ValueError, match=r"images\[1\]: an image must be .* got int"):
        Sample(completion="c", images=["a.png", 3])
    with pytest.raises(ValueError, match="a data URL must look like"):
        Sample(completion="c", images=["data:text/plain;base64,AAAA"])
    with pytest.raises(ValueError, match="empty image reference"):
        Sample(completion="c", images=[" "])


def test_batch_carries_images_through_every_constructor() -> None:
    rows = [Sample(completion="a", images=["x.png"]), Sample(completion="b")]
    b = SampleBatch.from_samples(rows)
    assert b.images == [("x.png",), ()]
    assert b[0] == rows[0] and list(b) == rows
    assert b.take([1, 0]).images == [(), ("x.png",)]
    assert SampleBatch.coerce([{"completion": "a", "images": ["y.png"]}]).images == [("y.png",)]
    cols = SampleBatch.from_columns(None, ["a", "b"], images=[["p.png"], None])
    assert cols.images == [("p.png",), ()]
    assert SampleBatch.from_columns(None, ["a", "b"]).images == [(), ()]
    with pytest.raises(InputError, match="completions has 2 rows, images has 1"):
        SampleBatch.from_columns(None, ["a", "b"], images=[["p.png"]])
    with pytest.raises(InputError, match=r"row 1: images\[0\]") as info:
        SampleBatch.from_columns(None, ["a", "b"], images=[[], [1.5]])
    assert info.value.row == 1 and info.value.field == "images"
