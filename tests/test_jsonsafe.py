"""safeladder.jsonsafe.jsonable: what a written file may hold is strict JSON."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

from safeladder.jsonsafe import jsonable


def test_nested_numpy_paths_and_non_finite_values_become_strict_json() -> None:
    value = {
        "scores": np.array([0.5, np.nan], dtype=np.float32),
        "n": np.int64(3),
        "flag": np.bool_(True),
        2: (math.inf, -math.inf, "x"),
        "dir": Path("/tmp/out"),
        "nested": OrderedDict(a=[np.float64(1.5), None]),
    }
    out = jsonable(value)
    assert out == {
        "scores": [0.5, None],
        "n": 3,
        "flag": True,
        "2": [None, None, "x"],
        "dir": "/tmp/out",
        "nested": {"a": [1.5, None]},
    }
    assert type(out["n"]) is int and type(out["flag"]) is bool
    json.dumps(out, allow_nan=False)  # raises if anything non-JSON is left


def test_finite_false_keeps_nan_for_values_that_are_compared_not_written() -> None:
    out = jsonable({"t": (np.float32("nan"), 1)}, finite=False)
    assert math.isnan(out["t"][0]) and out["t"][1] == 1


def test_strings_and_bytes_are_not_sequences_here() -> None:
    assert jsonable(["ab", b"cd"]) == ["ab", b"cd"]
