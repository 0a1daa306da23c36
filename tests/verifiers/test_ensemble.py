"""``ensemble``: member P(good) scores combined per row; expectations written out by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from safeladder import ConfigError, Sample, VerifierError
from safeladder.verifiers import build_verifier
from tests.helpers import assert_batch_equals_rows, tiny_model_dir


def meta_member(key: str, weight: float = 1.0) -> dict[str, Any]:
    """A [0, 1] member scoring ``meta[key]`` (absent: abstains)."""
    return {
        "verifier": {
            "type": "custom",
            "name": key,
            "target": "tests.rewards.fixture_verifiers:meta_score",
            "kwargs": {"key": key},
            "score_range": [0, 1],
        },
        "weight": weight,
    }


def ens(combine: str, *members: dict[str, Any], **kw: Any) -> Any:
    return build_verifier({"type": "ensemble", "combine": combine, "members": list(members), **kw})


ROWS = [
    Sample(prompt="p", completion="c", meta={"a": 0.2, "b": 0.8}),
    Sample(prompt="p", completion="c", meta={"a": 0.5, "b": 0.9}),
    Sample(prompt="p", completion="c", meta={"a": 1.0, "b": 0.0}),
]


@pytest.mark.parametrize(
    ("combine", "expected"),
    [
        # weights a:1, b:3 → mean = (1·a + 3·b) / 4
        ("mean", [(0.2 + 2.4) / 4, (0.5 + 2.7) / 4, (1.0 + 0.0) / 4]),
        ("min", [0.2, 0.5, 0.0]),
        ("max", [0.8, 0.9, 1.0]),
        # logit(0.5) = 0, logit(0.9) = ln 9 → sigmoid(3/4 · ln 9) = 9^0.75 / (1 + 9^0.75)
        (
            "logit_mean",
            [
                1 / (1 + math.exp(-(math.log(0.25) + 3 * math.log(4)) / 4)),
                9**0.75 / (1 + 9**0.75),
                # 1.0 and 0.0 clip to 1 - 1e-6 and 1e-6: logit ±ln(999999) → (1 - 3) / 4 · ln(999999)
                1 / (1 + math.exp(2 / 4 * math.log(999999))),
            ],
        ),
    ],
)
def test_combine_by_hand(combine: str, expected: list[float]) -> None:
    v = ens(combine, meta_member("a", 1.0), meta_member("b", 3.0))
    got = v.score(ROWS)
    np.testing.assert_allclose(got.scores, expected, rtol=1e-6, atol=1e-7)
    assert list(got.status) == ["ok"] * 3
    assert got.details[0]["members"]["b"] == {
        "score": pytest.approx(0.8),
        "status": "ok",
        "weight": 3.0,
    }
    assert got.details[0]["scored"] == 2


def test_an_abstaining_member_is_left_out_with_its_reason() -> None:
    v = ens("mean", meta_member("a"), meta_member("b"))
    got = v.score([Sample(prompt="p", completion="c", meta={"a": 0.3})])
    assert got.scores[0] == pytest.approx(0.3)
    d = got.details[0]
    assert d["scored"] == 1 and d["members"]["b"]["status"] == "abstain"
    assert d["members"]["b"]["reason"]


def test_no_member_scores_the_row_abstains() -> None:
    v = ens("mean", meta_member("a"), meta_member("b"))
    got = v.score([Sample(prompt="p", completion="c", meta={})])
    assert math.isnan(got.scores[0]) and got.status[0] == "abstain"
    assert "no member scored" in got.details[0]["reason"]


def test_a_raising_member_raises_or_is_left_out() -> None:
    boom = {
        "verifier": {
            "type": "custom",
            "name": "boom",
            "target": "tests.rewards.fixture_verifiers:raise_on_boom",
            "mode": "batch",
            "kwargs": {"key": "a"},
            "score_range": [0, 1],
        }
    }
    rows = [Sample(prompt="p", completion="c", meta={"a": 0.4, "b": 0.6, "boom": "x"})]
    with pytest.raises(VerifierError, match="member 'boom'"):
        ens("mean", boom, meta_member("b")).score(rows)
    got = ens("mean", boom, meta_member("b"), on_error="abstain").score(rows)
    assert got.scores[0] == pytest.approx(0.6)
    assert got.details[0]["members"]["boom"]["status"] == "error"
    assert "cannot handle" in got.details[0]["members"]["boom"]["reason"]


def test_members_outside_zero_one_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"members\[1\].*\[-1.0, 0.0\]"):
        ens("mean", meta_member("a"), {"verifier": {"type": "length"}})
    with pytest.raises(ConfigError, match="members"):
        build_verifier({"type": "ensemble", "members": []})
    with pytest.raises(ConfigError, match="weight"):
        ens("mean", meta_member("a", 0.0))


def test_repeated_member_names_are_told_apart() -> None:
    v = ens("min", meta_member("a"), meta_member("a"))
    assert v.member_names == ["a#0", "a#1"]


def test_classifier_members_batch_equals_rows_and_close() -> None:
    clf = {
        "type": "classifier",
        "path": str(tiny_model_dir("bert_classifier")),
        "good_label": "safe",
        "runtime": {"device": "cpu"},
    }
    win = {**clf, "render": {"max_length": 64, "windows": {"size": 24, "stride": 16}}}
    v = ens("logit_mean", {"verifier": clf}, {"verifier": win, "weight": 2.0})
    rows = [
        Sample(prompt="Hi", completion="ok"),
        Sample(prompt="How? ", completion="step one then two " * 20),
        Sample(prompt="Hi", completion="ok"),
    ]
    assert_batch_equals_rows(v, rows, atol=1e-5)
    assert v.member_names == ["classifier#0", "classifier#1"]
    a, b = (m.score(rows).scores.astype(np.float64) for m in v.members)
    z = (np.log(a / (1 - a)) + 2 * np.log(b / (1 - b))) / 3
    np.testing.assert_allclose(v.score(rows).scores, 1 / (1 + np.exp(-z)), atol=1e-6)
    members = list(v.members)
    v.close()
    assert all(m._loaded is None for m in members)
    with pytest.raises(VerifierError, match="closed"):
        v.score(rows)
