"""``TrainFields``: the training config's field map, ``completion`` with ``response`` as its
YAML alias, and its rows mapped through the core ``to_sample``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from safeladder.data import FieldMap
from safeladder.errors import InputError
from safeladder.training.common import DataSource, TrainFields
from safeladder.training.data import load_records


def test_response_and_completion_name_the_same_field() -> None:
    assert TrainFields.model_validate({"response": "answer"}).completion == "answer"
    assert TrainFields.model_validate({"completion": "answer"}).completion == "answer"
    assert TrainFields().completion == "response"  # the default field name is unchanged


def test_saved_records_keep_the_response_key() -> None:
    # safeladder_run.json / metrics.json echo the config; runs recorded before keep comparing.
    dumped = DataSource(path="x", fields={"completion": "answer"}).model_dump(mode="json")
    assert dumped["fields"]["response"] == "answer" and "completion" not in dumped["fields"]
    assert DataSource.model_validate(dumped).fields.completion == "answer"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"respnse": "a"}, "unknown key 'respnse' (did you mean 'response'?)"),
        ({"prompt": "q", "lable": "y"}, "unknown key 'lable' (did you mean 'label'?)"),
        ({"response": "a", "completion": "b"}, "give completion or response"),
    ],
)
def test_bad_keys_are_named(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        DataSource(path="x", fields=fields)


def test_sample_fields_is_the_core_field_map() -> None:
    f = TrainFields(prompt="q", completion="a")
    assert f.sample_fields() == FieldMap(prompt=("q",), completion=("a",), reference=())
    assert f.sample_fields("chosen").completion == ("chosen",)


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bad_reply_is_reported_at_file_row_and_field(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "d.jsonl",
        [
            {"q": "hi", "out": {"text": [{"role": "assistant", "content": "ok"}]}, "label": 0},
            {"q": "yo", "out": {"text": 5}, "label": 1},
        ],
    )
    src = DataSource(path=str(f), fields={"prompt": "q", "completion": "out.text"})
    with pytest.raises(InputError, match=r"d\.jsonl: row 2: field 'out\.text': response: expected"):
        load_records([src], pairwise=False)
    # The conversational reply of row 1 reads as its text (the core mapper's rule).
    one = DataSource(path=str(f), fields={"prompt": "q", "completion": "out.text"}, limit=1)
    rec = load_records([one], pairwise=False, labels=["0", "1"]).records[0]
    assert (rec.prompt, rec.response) == ("hi", "ok")  # type: ignore[union-attr]


def test_prompt_only_rows_keep_a_null_response(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.jsonl", [{"prompt": "a", "label": 0}, {"prompt": "b", "label": 1}])
    recs = load_records([DataSource(path=str(f))], pairwise=False).records
    assert [r.response for r in recs] == [None, None]  # type: ignore[union-attr]
    nulled = DataSource(path=str(f), fields={"completion": None})
    assert [r.response for r in load_records([nulled], pairwise=False).records] == [None, None]  # type: ignore[union-attr]
