"""Small numeric helpers shared by every layer: NaN → None for JSON, sigmoid, softmax.

One definition each (they were written several times across the package). numpy only; the
functions take and return float64, whatever dtype comes in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["finite_or_none", "nan_to_none", "sigmoid", "softmax"]


def nan_to_none(x: Any) -> float | None:
    """``None`` for NaN (an abstention: JSON null), else ``float(x)``; ±inf stay floats.

    >>> nan_to_none(float("nan")), nan_to_none(np.float32(0.5)), nan_to_none(float("inf"))
    (None, 0.5, inf)
    """
    f = float(x)
    return None if math.isnan(f) else f


def finite_or_none(x: Any) -> float | None:
    """``None`` for NaN and ±inf (strict JSON has neither), else ``float(x)``.

    >>> finite_or_none(float("-inf")), finite_or_none(2)
    (None, 2.0)
    """
    f = float(x)
    return f if math.isfinite(f) else None


def sigmoid(x: Any) -> np.ndarray:
    """The logistic function, elementwise; any shape in, the same shape of float64 out.

    Computed in two branches (``1 / (1 + e^-x)`` for x ≥ 0, ``e^x / (1 + e^x)`` below), so no
    exponential overflows and tiny probabilities keep their precision.

    >>> sigmoid(np.array([0.0, 800.0, -800.0, -40.0])).tolist()
    [0.5, 1.0, 0.0, 4.248354255291589e-18]
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` (default: the last, i.e. per row of ``(rows, k)`` logits), float64.

    The maximum is subtracted first, so large logits do not overflow.

    >>> softmax(np.log(np.array([[1.0, 3.0], [2.0, 2.0]]))).round(4).tolist()
    [[0.25, 0.75], [0.5, 0.5]]
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return out
