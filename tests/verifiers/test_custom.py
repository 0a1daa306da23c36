"""The ``custom`` verifier: functions per row or per batch, classes, and clear errors."""

from __future__ import annotations

import math

import pytest

from safeladder import ConfigError, Sample, VerifierError
from safeladder.verifiers import build_verifier

FX = "tests.rewards.fixture_verifiers"
ROWS = [
    Sample(completion="a", meta={"s": 0.5}),
    Sample(completion="b", meta={}),
    Sample(completion="c", meta={"s": 2}),
]


def test_row_function_scores_and_abstains_on_none() -> None:
    sb = build_verifier({"type": "custom", "target": f"{FX}:meta_score"}).score(ROWS)
    assert sb.scores[0] == 0.5 and math.isnan(sb.scores[1]) and sb.scores[2] == 2.0
    assert list(sb.status) == ["ok", "abstain", "ok"]
    assert "returned None" in sb.details[1]["reason"]


def test_batch_function_and_kwargs() -> None:
    v = build_verifier(
        {"type": "custom", "target": f"{FX}:meta_batch", "mode": "batch", "kwargs": {"key": "s"}}
    )
    assert list(v.score(ROWS).status) == ["ok", "abstain", "ok"]


def test_declared_range_is_enforced() -> None:
    v = build_verifier({"type": "custom", "target": f"{FX}:meta_score", "score_range": [0, 1]})
    with pytest.raises(
        VerifierError, match=r"row 2 scored 2.0, outside the declared range \[0.0, 1.0\]"
    ):
        v.score(ROWS)


def test_wrong_return_type_raises_or_abstains_per_on_error() -> None:
    bad = {"type": "custom", "target": f"{FX}:meta_score", "kwargs": {"key": "text"}}
    rows = [Sample(completion="x", meta={"text": "not a number"})]
    with pytest.raises(
        VerifierError, match="row 0: TypeError: row 0: expected a number or None, got str"
    ):
        build_verifier(bad).score(rows)
    sb = build_verifier({**bad, "on_error": "abstain"}).score(rows)
    assert (
        sb.status[0] == "error"
        and math.isnan(sb.scores[0])
        and "expected a number" in sb.details[0]["reason"]
    )


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("no_colon", "package.module:attribute"),
        ("tests.nonexistent_mod:f", "cannot import module"),
        (f"{FX}:missing_fn", "has no attribute"),
    ],
)
def test_bad_targets(target: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_verifier({"type": "custom", "target": target})


def test_verifier_subclass_target_reads_context() -> None:
    v = build_verifier({"type": "custom", "target": f"{FX}:CopyTimesTwo", "kwargs": {"needs": "c"}})
    assert v.requires == ("c",)
