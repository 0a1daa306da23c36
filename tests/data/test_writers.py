"""Writers: UTF-8 JSON lines, NaN → null, exact byte offsets, atomic replace, truncation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from safeladder.data import JsonlWriter, dumps, truncate, write_json_atomic


def test_dumps_keeps_unicode_and_nulls_non_finite_floats() -> None:
    assert dumps({"t": "é你"}) == '{"t": "é你"}'
    assert json.loads(dumps({"a": [float("inf"), 1.0], "b": {"c": float("-inf")}})) == {
        "a": [None, 1.0],
        "b": {"c": None},
    }


def test_dumps_numpy_values() -> None:
    assert json.loads(dumps({"x": np.float32(0.5), "y": np.arange(3), "z": np.bool_(True)})) == {
        "x": 0.5,
        "y": [0, 1, 2],
        "z": True,
    }


def test_writer_tell_is_the_file_size_and_append_mode(tmp_path: Path) -> None:
    p = tmp_path / "o.jsonl"
    with JsonlWriter(p) as w:
        w.write({"t": "é"})
        w.write_many([{"i": 1}, {"i": 2}])
        w.sync()
        assert w.tell() == p.stat().st_size
    with JsonlWriter(p, "a") as w:
        w.write({"i": 3})
    lines = p.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [{"t": "é"}, {"i": 1}, {"i": 2}, {"i": 3}]


def test_write_json_atomic_leaves_no_tmp(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    write_json_atomic(p, {"a": float("nan")})
    write_json_atomic(p, {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["s.json"]


def test_truncate(tmp_path: Path) -> None:
    p = tmp_path / "o.jsonl"
    p.write_bytes(b'{"a": 1}\n{"b":')
    truncate(p, 9)
    assert p.read_bytes() == b'{"a": 1}\n'
    truncate(tmp_path / "new.jsonl", 0)
    assert (tmp_path / "new.jsonl").read_bytes() == b""
