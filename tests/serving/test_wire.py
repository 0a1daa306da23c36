"""serving.wire: per-row views of a RewardResult, and float32 values as they print."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.rewards import load_reward
from safeladder.serving.wire import floats, rows_of
from safeladder.types import Sample


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=20))
def test_floats_are_the_float32_shortest_repr(values: list[float]) -> None:
    arr = np.array(values, dtype=np.float32)
    got = floats(arr)
    want = [float(str(x)) for x in arr]  # the definition: what the float32 prints as
    assert [repr(g) for g in got] == [repr(w) for w in want]


def test_rows_of_matches_the_result_column_by_column() -> None:
    reward = load_reward(None)
    samples = [
        Sample(prompt="2+2?", completion="#### 4", reference="4"),
        Sample(prompt="2+2?", completion="#### 5", reference="4"),
        Sample(prompt="hi", completion="hello there", meta={"task": "qa"}),
    ]
    result = reward.score(samples)
    terms = list(result.terms)
    rows = rows_of(result, terms)
    assert len(rows) == 3
    for i, row in enumerate(rows):
        assert row.statuses == tuple(str(result.terms[t].status[i]) for t in terms)
        assert row.details == tuple(result.terms[t].details[i] for t in terms)
        for got, t in zip(row.scores, terms, strict=True):
            want = float(result.terms[t].scores[i])
            assert (math.isnan(got) and math.isnan(want)) or got == float(str(np.float32(want)))
        assert row.route == result.route[i] and row.gated == bool(result.gated[i])
    assert [r.scores for r in rows_of(result, [])] == [(), (), ()]
