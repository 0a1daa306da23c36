"""Dotted paths, ``where`` matching and the field error's parts (``safeladder.data.fields``)."""

from __future__ import annotations

import pytest

from safeladder.data import (
    MISSING,
    FieldMap,
    FieldValueError,
    get_path,
    pick_field,
    to_sample,
    value_matches,
)
from safeladder.errors import InputError


def test_get_path_reads_nested_dicts_and_lists() -> None:
    row = {"a.b": 1, "a": {"b": 2, "c": [{"d": 3}]}}
    assert get_path(row, "a.b") == 1  # a key with a dot is found whole first
    assert get_path(row, "a.c.0.d") == 3
    assert get_path(row, "a.c.1.d") is MISSING
    assert get_path({"x": None}, "x") is None  # null is a value, not MISSING


@pytest.mark.parametrize(
    ("value", "want", "expected"),
    [("1", 1, True), ("2", 1, False), (" true", True, True), ("yes", True, False),
     (1, 1, True), (MISSING, None, False), (None, None, True), ("a", "a", True)],
)  # fmt: skip
def test_value_matches(value: object, want: object, expected: bool) -> None:
    assert value_matches(value, want) is expected


def test_pick_field_takes_the_first_present_even_when_null() -> None:
    assert pick_field({"b": None, "c": 1}, ("a", "b", "c")) == ("b", None)
    assert pick_field({}, ("a",)) == (None, None)


def test_field_value_error_keeps_role_and_reason() -> None:
    with pytest.raises(FieldValueError) as e:
        to_sample({"prompt": "p", "out": 5}, FieldMap(completion=("out",)))
    assert isinstance(e.value, InputError)
    assert (e.value.field, e.value.role) == ("out", "completion")
    assert e.value.reason.startswith("expected a string or a list of chat messages")
    assert str(e.value) == f"field 'out' (completion): {e.value.reason}"
