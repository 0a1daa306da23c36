"""Per-term normalizations. Each maps scores ``(m,)`` → ``(m,)``, NaN in → NaN out.

Constant inputs carry no signal and map to 0 (z-scores) or 0.5 (rank), never NaN.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

_EPS = 1e-8


def zscore(x: np.ndarray) -> np.ndarray:
    """``(x − mean) / std`` over the finite entries (population std); constant → 0.

    >>> zscore(np.array([1.0, 2.0, 3.0, np.nan])).round(4).tolist()
    [-1.2247, 0.0, 1.2247, nan]
    """
    out = np.full(x.shape, np.nan, dtype=np.float64)
    m = ~np.isnan(x)
    if not m.any():
        return out
    v = x[m].astype(np.float64)
    sd = v.std()
    out[m] = 0.0 if sd < _EPS else (v - v.mean()) / sd
    return out


def group_zscore(x: np.ndarray, groups: Sequence[Hashable]) -> np.ndarray:
    """z-score within each group (rows sharing a group id), as GRPO does per prompt.

    >>> group_zscore(np.array([1.0, 3.0, 5.0, 5.0]), ["a", "a", "b", "b"]).tolist()
    [-1.0, 1.0, 0.0, 0.0]
    """
    out = np.full(x.shape, np.nan, dtype=np.float64)
    index: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    for rows in index.values():
        idx = np.asarray(rows)
        out[idx] = zscore(x[idx])
    return out


def rank01(x: np.ndarray) -> np.ndarray:
    """Average rank of the finite entries scaled to [0, 1] (ties share their mean rank).

    >>> rank01(np.array([10.0, 30.0, 20.0, 20.0])).tolist()
    [0.0, 1.0, 0.5, 0.5]
    """
    out = np.full(x.shape, np.nan, dtype=np.float64)
    m = np.flatnonzero(~np.isnan(x))
    if m.size == 0:
        return out
    if m.size == 1:
        out[m] = 0.5
        return out
    v = x[m]
    order = np.argsort(v, kind="stable")
    ranks = np.empty(v.size, dtype=np.float64)
    sorted_v = v[order]
    i = 0
    while i < v.size:
        j = i
        while j + 1 < v.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    out[m] = ranks / (v.size - 1)
    return out
