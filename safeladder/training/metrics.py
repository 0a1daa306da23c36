"""Evaluation metrics for verifiers: pointwise (binary), multi-label and pairwise.

Conventions, shared with the training runner and ``safeladder eval``:

- pointwise ``labels`` are 0/1 and ``probs`` is P(label 1); a row is predicted 1 when
  ``prob >= threshold``. Scores that are not probabilities (an unbounded reward) can be given
  with ``probabilities=False``: then only the range check and the calibration metrics (ECE,
  Brier) are skipped.
- Undefined values are NaN, never 0 or an exception: AUROC / AUPRC with one class present,
  the mean probability of an empty reliability bin. Precision with no predicted positive and
  recall with no positive are 0 (scikit-learn's ``zero_division=0`` default), so F1 is 0 there.
- Inputs with NaN are refused (``ValueError`` naming the first bad index): abstentions are the
  caller's to count and exclude, not ours to turn into a number.

AUROC is the Mann–Whitney statistic with midranks for ties (equal to scikit-learn's
``roc_auc_score``); AUPRC is average precision, ``Σ (R_k − R_{k−1}) P_k`` over the distinct
thresholds (equal to ``average_precision_score``), computed here in numpy so importing and
calling these functions costs no scikit-learn import.

>>> m = pointwise_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
>>> m["accuracy"], m["auroc"], m["f1"]
(0.5, 0.75, 0.5)
>>> pairwise_metrics(np.array([2.0, 1.0, 0.5]), np.array([1.0, 1.0, 1.5]))["accuracy"]
0.5
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: Bins of the expected calibration error and the reliability diagram.
DEFAULT_BINS = 10
#: Name of the per-category bucket for rows without a category.
NO_CATEGORY = "(none)"


def _as_1d(name: str, x: Any, dtype: Any = np.float64) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(
            f"{name}: {bad.size} non-finite value(s), first at index {int(bad[0])} "
            f"({a.flat[bad[0]].item()!r}); exclude abstentions (NaN) before computing metrics"
        )


def _check_binary(name: str, labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.size and not np.isin(y, (0, 1)).all():
        i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
        raise ValueError(f"{name}: must be 0 or 1, got {y.flat[i].item()!r} at index {i}")
    return y.astype(np.int64)


def _check_pointwise(
    labels: Any, probs: Any, probabilities: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    y = _check_binary("labels", _as_1d("labels", labels, dtype=None))
    p = _as_1d("probs", probs)
    if y.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {y.shape[0]} vs {p.shape[0]}")
    _check_finite("probs", p)
    if probabilities and p.size and (p.min() < 0.0 or p.max() > 1.0):
        i = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise ValueError(
            f"probs: must lie in [0, 1], got {p[i].item()!r} at index {i} "
            "(pass probabilities=False for scores that are not probabilities)"
        )
    return y, p


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve; NaN unless both classes are present.

    Args:
        labels: (n,) 0/1.
        scores: (n,) any real scores, higher = more likely label 1; ties count one half.
    """
    y, s = _check_pointwise(labels, scores, probabilities=False)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Midranks: tied scores share the mean of the ranks they span (Mann–Whitney U with ties).
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # mean of 1-based ranks a+1 .. b
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auprc(labels: Any, scores: Any) -> float:
    """Average precision (area under the precision–recall curve, step-wise); NaN unless both
    classes are present (as ``auroc``, so a one-class subset reads as undefined, not perfect).
    Shapes as in ``auroc``."""
    y, s = _check_pointwise(labels, scores, probabilities=False)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # One point per distinct threshold: the last index of each run of equal scores.
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1]
    tp = np.cumsum(y_sorted)[last]
    predicted = last + 1
    precision = tp / predicted
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def expected_calibration_error(labels: Any, probs: Any, n_bins: int = DEFAULT_BINS) -> float:
    """ECE with ``n_bins`` equal-width bins: ``Σ_b (n_b / n) · |mean p_b − frac positive_b|``.

    A probability of exactly 1.0 falls into the last bin. NaN for an empty input.
    """
    bins = reliability_bins(labels, probs, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return float("nan")
    return float(
        sum(b["count"] / n * abs(b["mean_prob"] - b["frac_pos"]) for b in bins if b["count"])
    )


def reliability_bins(labels: Any, probs: Any, n_bins: int = DEFAULT_BINS) -> list[dict[str, float]]:
    """The reliability diagram's bins: ``lo``, ``hi``, ``count``, ``mean_prob``, ``frac_pos``.

    Args:
        labels: (n,) 0/1. probs: (n,) P(label 1) in [0, 1]. n_bins: equal-width bins on [0, 1].

    Returns:
        ``n_bins`` dicts in order; an empty bin has ``count`` 0 and NaN means.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = _check_pointwise(labels, probs)
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    out: list[dict[str, float]] = []
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        out.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": count,
                "mean_prob": float(p[mask].mean()) if count else float("nan"),
                "frac_pos": float(y[mask].mean()) if count else float("nan"),
            }
        )
    return out


def confusion(labels: Any, probs: Any, threshold: float = 0.5) -> dict[str, int]:
    """Counts ``tp``, ``fp``, ``tn``, ``fn`` when ``prob >= threshold`` predicts label 1."""
    y, p = _check_pointwise(labels, probs, probabilities=False)
    pred = p >= threshold
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def _prf(c: Mapping[str, int]) -> tuple[float, float, float]:
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def pointwise_metrics(
    labels: Any,
    probs: Any,
    threshold: float = 0.5,
    *,
    probabilities: bool = True,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, float]:
    """Binary classification metrics of P(label 1) against 0/1 labels.

    Args:
        labels: (n,) 0/1 (1 is the positive class, e.g. unsafe for the safety data).
        probs: (n,) P(label 1) in [0, 1]; or any real score with ``probabilities=False``.
        threshold: ``prob >= threshold`` predicts label 1.
        probabilities: False for scores that are not probabilities: ``ece`` and ``brier`` are
            NaN and the [0, 1] check is skipped.
        n_bins: bins of the ECE.

    Returns:
        ``n``, ``positives``, ``accuracy``, ``precision``, ``recall``, ``f1``, ``auroc``,
        ``auprc``, ``ece``, ``brier``, ``threshold`` (floats; NaN where undefined).
    """
    y, p = _check_pointwise(labels, probs, probabilities)
    n = int(y.size)
    c = confusion(y, p, threshold)
    precision, recall, f1 = _prf(c)
    nan = float("nan")
    return {
        "n": float(n),
        "positives": float(y.sum()),
        "accuracy": (c["tp"] + c["tn"]) / n if n else nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "ece": expected_calibration_error(y, p, n_bins) if probabilities else nan,
        "brier": float(np.mean((p - y) ** 2)) if probabilities and n else nan,
        "threshold": float(threshold),
    }


def _per_label_thresholds(
    thresholds: float | Sequence[float] | Mapping[str, float] | None, names: Sequence[str]
) -> list[float]:
    if thresholds is None:
        return [0.5] * len(names)
    if isinstance(thresholds, (int, float)):
        return [float(thresholds)] * len(names)
    if isinstance(thresholds, Mapping):
        missing = [n for n in names if n not in thresholds]
        if missing:
            raise ValueError(f"thresholds: no value for labels {missing}")
        return [float(thresholds[n]) for n in names]
    values = [float(t) for t in thresholds]
    if len(values) != len(names):
        raise ValueError(f"thresholds: {len(values)} values for {len(names)} labels")
    return values


def multilabel_metrics(
    labels: Any,
    probs: Any,
    names: Sequence[str],
    thresholds: float | Sequence[float] | Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per-label binary metrics, their macro average and micro-averaged P / R / F1.

    Args:
        labels: (n, C) 0/1, column j = label ``names[j]`` present.
        probs: (n, C) P(label j present) in [0, 1].
        names: C label names.
        thresholds: one for all labels, one per label (list in ``names`` order or a dict by
            name), or None for 0.5.

    Returns:
        ``{"labels": {name: pointwise_metrics}, "macro": {metric: mean over labels (NaN-aware)},
        "micro": {"precision", "recall", "f1"}, "n": rows}``.
    """
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"labels and probs must both be (n, C), got {y.shape} and {p.shape}")
    if y.shape[1] != len(names):
        raise ValueError(f"names: {len(names)} names for {y.shape[1]} label columns")
    ths = _per_label_thresholds(thresholds, names)
    per = {name: pointwise_metrics(y[:, j], p[:, j], ths[j]) for j, name in enumerate(names)}
    keys = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "ece", "brier")
    macro: dict[str, float] = {}
    for k in keys:
        vals = np.array([per[n][k] for n in names], dtype=np.float64)
        macro[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    totals = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for j in range(len(names)):
        for k, v in confusion(y[:, j], p[:, j], ths[j]).items():
            totals[k] += v
    mp, mr, mf = _prf(totals)
    return {
        "n": float(y.shape[0]),
        "labels": per,
        "macro": macro,
        "micro": {"precision": mp, "recall": mr, "f1": mf},
    }


def _pair_arrays(chosen: Any, rejected: Any) -> tuple[np.ndarray, np.ndarray]:
    """Chosen and rejected scores as finite 1-D arrays of one length (else ValueError)."""
    c = _as_1d("chosen", chosen)
    r = _as_1d("rejected", rejected)
    if c.shape != r.shape:
        raise ValueError(f"chosen and rejected differ in length: {c.shape[0]} vs {r.shape[0]}")
    _check_finite("chosen", c)
    _check_finite("rejected", r)
    return c, r


def pairwise_metrics(chosen: Any, rejected: Any) -> dict[str, float]:
    """How often the verifier prefers the human-preferred response.

    Args:
        chosen: (n,) scores of the preferred responses. rejected: (n,) of the others.

    Returns:
        ``n``; ``accuracy`` (chosen > rejected counts 1, a tie 0.5); ``ties`` (count);
        ``mean_margin`` / ``median_margin`` of ``chosen − rejected`` (NaN when n = 0).
    """
    c, r = _pair_arrays(chosen, rejected)
    nan = float("nan")
    if c.size == 0:
        return {"n": 0.0, "accuracy": nan, "ties": 0.0, "mean_margin": nan, "median_margin": nan}
    margin = c - r
    ties = int(np.sum(margin == 0))
    return {
        "n": float(c.size),
        "accuracy": float((np.sum(margin > 0) + 0.5 * ties) / c.size),
        "ties": float(ties),
        "mean_margin": float(margin.mean()),
        "median_margin": float(np.median(margin)),
    }


def pairwise_reliability(chosen: Any, rejected: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bradley–Terry reliability data: ``(labels, probs)`` of length 2n.

    For a scalar reward the model's P(chosen preferred) is ``sigmoid(r_c − r_r)``; every pair is
    counted both ways, ``(sigmoid(m), 1)`` and ``(sigmoid(−m), 0)``, so the diagram is symmetric
    and a perfectly calibrated reward model lies on the diagonal. Feed the result to
    ``reliability_bins`` / ``pointwise_metrics``.
    """
    c, r = _pair_arrays(chosen, rejected)
    m = c - r
    p = 0.5 * (1.0 + np.tanh(0.5 * m))  # sigmoid without overflow warnings
    return np.r_[np.ones(m.size, dtype=np.int64), np.zeros(m.size, dtype=np.int64)], np.r_[p, 1 - p]


def per_category(
    categories: Sequence[str | None],
    fn: Callable[..., dict[str, Any]],
    *arrays: Any,
    min_count: int = 1,
) -> dict[str, dict[str, Any]]:
    """``fn(*[a[rows of c] for a in arrays])`` for each category ``c``, sorted by name.

    Rows whose category is None go to ``"(none)"``; that bucket is only kept when at least one
    row has a category (all None → ``{}``: nothing to break down). Categories with fewer than
    ``min_count`` rows are left out.

    >>> per_category(["a", "b", "a"], pairwise_metrics, [1.0, 0.0, 0.0], [0.0, 1.0, 1.0])["a"]["n"]
    2.0
    """
    cats = list(categories)
    if all(c is None for c in cats):
        return {}
    cols = [np.asarray(a) for a in arrays]
    for j, a in enumerate(cols):
        if len(a) != len(cats):
            raise ValueError(f"array {j}: {len(a)} rows for {len(cats)} categories")
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cats):
        groups.setdefault(NO_CATEGORY if c is None else str(c), []).append(i)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(groups):
        idx = np.asarray(groups[name], dtype=np.int64)
        if idx.size >= min_count:
            out[name] = fn(*[a[idx] for a in cols])
    return out


__all__ = [
    "DEFAULT_BINS",
    "NO_CATEGORY",
    "auprc",
    "auroc",
    "confusion",
    "expected_calibration_error",
    "multilabel_metrics",
    "pairwise_metrics",
    "pairwise_reliability",
    "per_category",
    "pointwise_metrics",
    "reliability_bins",
]
