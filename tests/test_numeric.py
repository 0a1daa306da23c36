"""safeladder.numeric: the one NaN → None, sigmoid and softmax; expectations written out by hand."""

from __future__ import annotations

import math

import numpy as np

from safeladder.numeric import finite_or_none, nan_to_none, sigmoid, softmax


def test_nan_to_none_keeps_every_other_number() -> None:
    assert nan_to_none(float("nan")) is None
    assert nan_to_none(np.float32("nan")) is None
    assert nan_to_none(np.float32(0.25)) == 0.25 and type(nan_to_none(np.float32(0.25))) is float
    assert nan_to_none(float("inf")) == math.inf  # an infinite score is a score, not a gap
    assert nan_to_none(0) == 0.0


def test_finite_or_none_drops_infinities_too() -> None:
    assert [finite_or_none(x) for x in (float("nan"), math.inf, -math.inf, 3)] == [
        None,
        None,
        None,
        3.0,
    ]


def test_sigmoid_matches_the_formula_and_never_overflows() -> None:
    z = np.array([[-3.0, 0.0], [2.0, 1000.0]])
    expected = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
    got = sigmoid(z)
    assert got.shape == (2, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    # e^-745 is the smallest subnormal: the lower branch keeps it, 1 / (1 + e^745) would be 0/inf.
    assert sigmoid(np.array([-745.0]))[0] > 0.0
    assert sigmoid(np.array([-1e6]))[0] == 0.0 and sigmoid(np.array([1e6]))[0] == 1.0


def test_softmax_rows_sum_to_one_and_large_logits_do_not_overflow() -> None:
    # exp(0) : exp(ln 3) = 1 : 3 -> 0.25, 0.75; shifting a row by a constant changes nothing.
    p = softmax(np.array([[0.0, math.log(3.0)], [1000.0, 1000.0 + math.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.25, 0.75], [0.25, 0.75]], rtol=1e-12)
    cols = softmax(np.array([[0.0, 5.0], [math.log(3.0), 5.0]]), axis=0)
    np.testing.assert_allclose(cols[:, 0], [0.25, 0.75], rtol=1e-12)
    np.testing.assert_allclose(cols[:, 1], [0.5, 0.5], rtol=1e-12)
