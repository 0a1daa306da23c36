"""Calibration fitted on the dev split: temperature scaling, isotonic regression, thresholds.

What is fitted, per head (``dev_logits`` of shape (n, C)):

- **binary softmax** (C = 2) and **multi-class softmax** (C > 2), labels = class indices:
  ``temperature`` divides the logits by one T fitted by minimising the dev NLL; ``isotonic``
  (C = 2 only) maps P(``good``) — the probability the classifier verifier scores — through a
  monotone map fitted on (P(good), label == good). A C > 2 head has no single probability
  whose map keeps the others consistent, so isotonic is refused there (ConfigError): use
  temperature.
- **one-logit sigmoid** (C = 1, or shape (n,)): ``sigmoid(logit)`` is P(label 1); temperature
  divides the logit; isotonic maps ``sigmoid(logit)`` (the classifier verifier maps its only
  output the same way).
- **multi-label** (``dev_labels`` of shape (n, C), 0/1; sigmoid per label): one shared T over
  every (row, label) logit; isotonic fits one map per label, saved under ``per_label``
  (``names`` required).

The decision threshold is chosen on the calibrated P(``positive``) (per label for multi-label):
``max_f1`` maximises dev F1; ``target_fpr`` takes the lowest threshold whose dev false-positive
rate is at most the target (the highest recall the budget allows); ``target_fnr`` the highest
threshold whose dev false-negative rate is at most the target (the fewest false alarms while
missing at most that share of positives: a judge that must almost never let a positive through,
such as the request judges ``request_harm_*`` clearing a request as harmless).
``prob >= threshold`` predicts positive.

A dev split with one class only cannot be calibrated: the fit is the identity (T = 1, or the
map y = x) and ``meta.degenerate`` says why.

The file written by ``write_calibration`` is ``safeladder_calibration.json`` in the schema of
``safeladder.verifiers.classifier`` (validated against it before writing), with ``meta``
holding what the fit achieved: ``ece_before`` / ``ece_after``, ``nll_before`` / ``nll_after``,
``brier_before`` / ``brier_after``, the threshold, its rule and its dev F1 / FPR, the positive
class. ``method: none`` writes the identity (T = 1) so that the threshold is still recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from safeladder.errors import ConfigError
from safeladder.jsonsafe import jsonable
from safeladder.numeric import sigmoid, softmax
from safeladder.training.common import CalibrationSettings
from safeladder.training.metrics import expected_calibration_error

#: Search interval of the temperature (fitted on log T). Wider buys nothing: T = 0.05 already
#: turns a logit of 1 into 20, and a dev split that asks for more is separable (or tiny).
T_MIN, T_MAX = 0.05, 20.0

CALIBRATION_FILE = "safeladder_calibration.json"  # = safeladder.verifiers.classifier's name


# --------------------------------------------------------------------------- probabilities


def _as_logits(logits: Any) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"logits: expected shape (n,) or (n, C), got {z.shape}")
    bad = np.flatnonzero(~np.isfinite(z).all(axis=1))
    if bad.size:
        raise ValueError(f"logits: non-finite values in {bad.size} row(s), first row {bad[0]}")
    return z


def class_probs(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """(n, K) class probabilities of a single-label head, K = max(C, 2).

    A one-logit head becomes two columns ``[1 − sigmoid(z/T), sigmoid(z/T)]``, so column k is
    always P(class k).
    """
    z = _as_logits(logits) / temperature
    if z.shape[1] == 1:
        p1 = sigmoid(z[:, 0])
        return np.stack([1.0 - p1, p1], axis=1)
    return softmax(z)


def _nll_single(z: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of class indices under a softmax / sigmoid head."""
    if z.shape[1] == 1:
        sign = np.where(labels == 1, 1.0, -1.0)
        return float(np.mean(np.logaddexp(0.0, -sign * z[:, 0])))
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(lse - z[np.arange(z.shape[0]), labels]))


def _nll_multilabel(z: np.ndarray, labels: np.ndarray) -> float:
    sign = np.where(labels == 1, 1.0, -1.0)
    return float(np.mean(np.logaddexp(0.0, -sign * z)))


def _prob_nll(p: np.ndarray, y: np.ndarray) -> float:
    """Binary NLL of probabilities (clipped at 1e-12 so a confident miss is large, not inf)."""
    q = np.clip(np.where(y == 1, p, 1.0 - p), 1e-12, 1.0)
    return float(-np.mean(np.log(q)))


# --------------------------------------------------------------------------- fitting


def _check_labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},), got {y.shape}")
    if n and not (np.issubdtype(y.dtype, np.integer) or np.all(y == np.round(y))):
        raise ValueError("labels: expected class indices (integers)")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise ValueError(
            f"labels: class index {y[bad[0]]} at index {bad[0]} is outside 0..{n_classes - 1}"
        )
    return y


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature T > 0 that minimises the NLL of ``labels`` under ``logits / T``.

    Args:
        logits: (n,) or (n, 1) for a sigmoid head (P(label 1) = sigmoid(z)); (n, C) softmax;
            with ``labels`` of shape (n, C) 0/1, per-label sigmoids (multi-label, one shared T).
        labels: (n,) class indices, or (n, C) 0/1 for multi-label.

    Returns:
        T in [T_MIN, T_MAX]; 1.0 when the fit is degenerate (no rows, one class only, or all
        logits 0 — the NLL does not depend on T). The NLL is convex in 1/T, so the bounded
        1-D search on log T finds the global minimum.
    """
    from scipy.optimize import minimize_scalar

    y_raw = np.asarray(labels)
    multi = y_raw.ndim == 2
    z = np.asarray(logits, dtype=np.float64) if multi else _as_logits(logits)
    if multi:
        if z.shape != y_raw.shape:
            raise ValueError(f"multi-label logits {z.shape} and labels {y_raw.shape} differ")
        y = y_raw.astype(np.int64)
        if z.size == 0 or y.min() == y.max() or not np.any(z):
            return 1.0

        def nll(log_t: float) -> float:
            return _nll_multilabel(z / math.exp(log_t), y)
    else:
        y = _check_labels(y_raw, z.shape[0], max(z.shape[1], 2))
        if y.size == 0 or np.unique(y).size < 2 or not np.any(z):
            return 1.0

        def nll(log_t: float) -> float:
            return _nll_single(z / math.exp(log_t), y)

    res = minimize_scalar(
        nll, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": 1e-7}
    )
    return float(math.exp(res.x))


def fit_isotonic(probs: Any, labels: Any) -> tuple[list[float], list[float]]:
    """A non-decreasing map of ``probs`` onto the frequency of ``labels == 1``.

    Args:
        probs: (n,) probabilities in [0, 1]. labels: (n,) 0/1.

    Returns:
        Breakpoints ``(x, y)``: x non-decreasing, y non-decreasing in [0, 1], at least two
        points — ``IsotonicMap``'s schema; apply with ``np.interp(p, x, y)`` (clamped at the
        ends, as scikit-learn's ``out_of_bounds="clip"``). One class only (or no rows): the
        identity ``([0, 1], [0, 1])``.
    """
    from sklearn.isotonic import IsotonicRegression

    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 1 or y.shape != p.shape:
        raise ValueError(f"probs and labels must be (n,) of one length, got {p.shape}, {y.shape}")
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError("probs: must be finite and in [0, 1]")
    if p.size == 0 or np.unique(y).size < 2:
        return [0.0, 1.0], [0.0, 1.0]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(p, y.astype(np.float64))
    x = [float(v) for v in iso.X_thresholds_]
    fy = [min(1.0, max(0.0, float(v))) for v in iso.y_thresholds_]
    if len(x) == 1:  # every prob equal: a constant map
        return [0.0, 1.0], [fy[0], fy[0]]
    return x, fy


def select_threshold(
    labels: Any,
    probs: Any,
    rule: Literal["max_f1", "target_fpr", "target_fnr"] = "max_f1",
    target_fpr: float = 0.05,
    target_fnr: float = 0.01,
) -> dict[str, Any]:
    """The decision threshold on P(label 1) (``prob >= threshold`` predicts 1).

    Args:
        labels: (n,) 0/1. probs: (n,) P(label 1).
        rule: ``max_f1`` — the threshold with the highest dev F1 (ties: the higher threshold);
            ``target_fpr`` — the lowest threshold whose dev false-positive rate is
            ``<= target_fpr`` (when even the top score is a negative, a threshold just above
            every score: nothing is flagged); ``target_fnr`` — the highest threshold whose dev
            false-negative rate (positives scored below it) is ``<= target_fnr``.
        target_fpr: for ``target_fpr``, in (0, 1). target_fnr: for ``target_fnr``, in (0, 1).

    Returns:
        ``threshold``, ``rule``, and on the dev data ``f1``, ``precision``, ``recall``, ``fpr``,
        ``tpr``; ``degenerate`` (a reason) when one class is missing, with threshold 0.5.
    """
    y = np.asarray(labels).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or p.ndim != 1:
        raise ValueError(f"labels and probs must be (n,) of one length, got {y.shape}, {p.shape}")
    if rule not in ("max_f1", "target_fpr", "target_fnr"):
        raise ValueError(f"rule: expected max_f1, target_fpr or target_fnr, got {rule!r}")
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr: must be in (0, 1), got {target_fpr}")
    if not 0.0 < target_fnr < 1.0:
        raise ValueError(f"target_fnr: must be in (0, 1), got {target_fnr}")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    out: dict[str, Any] = {"rule": rule}
    if rule == "target_fpr":
        out["target_fpr"] = target_fpr
    if rule == "target_fnr":
        out["target_fnr"] = target_fnr
    if n_pos == 0 or n_neg == 0:
        return {
            **out,
            **_rates(y, p, 0.5),
            "degenerate": "the dev labels hold one class only",
        }
    # Candidates: every distinct score (descending) — predicting 1 for the top k groups.
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), ps.size - 1]
    tp = np.cumsum(ys)[last].astype(np.float64)
    fp = (last + 1 - tp).astype(np.float64)
    thresholds = ps[last]
    if rule == "max_f1":
        f1 = 2 * tp / (tp + fp + n_pos)  # = 2PR / (P + R)
        best = int(np.flatnonzero(f1 == f1.max())[0])  # first = highest threshold
        t = float(thresholds[best])
    elif rule == "target_fpr":
        ok = np.flatnonzero(fp / n_neg <= target_fpr + 1e-12)
        # fp grows as the threshold falls, so the allowed candidates are a prefix.
        t = float(thresholds[ok[-1]]) if ok.size else float(np.nextafter(ps[0], np.inf))
    else:
        # tp grows as the threshold falls: the allowed candidates are a suffix, and the last
        # candidate (every row predicted positive) always qualifies.
        ok = np.flatnonzero(1.0 - tp / n_pos <= target_fnr + 1e-12)
        t = float(thresholds[ok[0]])
    return {**out, **_rates(y, p, t)}


def _rates(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float]:
    pred = p >= t
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(t),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "tpr": recall,
        "fpr": fp / n_neg if n_neg else float("nan"),
    }


# --------------------------------------------------------------------------- calibrate


@dataclass
class CalibrationResult:
    """What ``calibrate`` fitted, and the dev probabilities before / after it.

    Attributes:
        method: ``temperature`` | ``isotonic`` | ``none``.
        file: the ``safeladder_calibration.json`` content (``write_calibration`` saves it).
        probs_before / probs_after: (n,) P(``positive``) on the dev rows (single-label), or
            (n, C) per-label probabilities (multi-label), before and after calibration.
        labels: (n,) 0/1 (label == positive), or (n, C) for multi-label: what the probabilities
            predict, ready for ``pointwise_metrics`` / ``multilabel_metrics``.
        threshold: on ``probs_after``; a list (one per label) for multi-label.
        threshold_info: the ``select_threshold`` result(s) (a dict, or a list of dicts).
        summary: the ``meta`` block: ECE / NLL / Brier before and after, threshold, rule, ...
        temperature: the fitted T (1.0 unless method is temperature).
    """

    method: str
    file: dict[str, Any]
    probs_before: np.ndarray
    probs_after: np.ndarray
    labels: np.ndarray
    threshold: float | list[float]
    threshold_info: dict[str, Any] | list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0


def apply_calibration(
    logits: Any,
    calibration: dict[str, Any] | None,
    *,
    good: int | None = None,
    multi_label: bool = False,
    names: list[str] | None = None,
) -> np.ndarray:
    """Calibrated probabilities from raw logits, as the classifier verifier computes them.

    Args:
        logits: (n, C) (or (n,) for a one-logit head).
        calibration: a calibration file dict (None = no calibration).
        good: single-label: the column the isotonic map applies to (the verifier's
            ``good_label``); ignored for a one-logit head (its sigmoid is mapped).
        multi_label: per-label sigmoids; ``names`` picks ``per_label`` maps.

    Returns:
        (n, K) probabilities: K = max(C, 2) single-label (column k = P(class k); for a binary
        head the other column is 1 − the mapped one), K = C multi-label.
    """
    cal = calibration or {}
    t = float(cal.get("temperature", 1.0)) if cal.get("kind") == "temperature" else 1.0
    if multi_label:
        z = np.asarray(logits, dtype=np.float64)
        probs = sigmoid(z / t)
        if cal.get("kind") == "isotonic":
            per = cal.get("per_label", {})
            for j in range(probs.shape[1]):
                m = per.get(names[j]) if names is not None else None
                if m is None and cal.get("x") is not None:
                    m = {"x": cal["x"], "y": cal["y"]}
                if m is not None:
                    probs[:, j] = np.interp(probs[:, j], m["x"], m["y"])
        return probs
    z = _as_logits(logits)
    probs = class_probs(z, t)
    if cal.get("kind") == "isotonic" and cal.get("x") is not None:
        col = 1 if z.shape[1] == 1 else (good if good is not None else 1)
        if probs.shape[1] != 2:
            raise ConfigError("isotonic calibration applies to binary heads only")
        mapped = np.interp(probs[:, col], cal["x"], cal["y"])
        probs[:, col] = mapped
        probs[:, 1 - col] = 1.0 - mapped
    return probs


def calibrate(
    dev_logits: Any,
    dev_labels: Any,
    settings: CalibrationSettings | None = None,
    positive: int = 1,
    *,
    good: int | None = None,
    names: list[str] | None = None,
) -> CalibrationResult:
    """Fit the calibration of ``settings.method`` on the dev split and choose the threshold.

    Args:
        dev_logits: (n, C) raw logits on the dev rows (C = 1 or shape (n,): one sigmoid logit,
            P(label 1) = sigmoid(z)).
        dev_labels: (n,) class indices, or (n, C) 0/1 for a multi-label head.
        settings: method, threshold rule, target FPR (default: temperature + max_f1).
        positive: the class whose probability the metrics and the threshold are about
            (1 = unsafe for the safety data).
        good: the class the verifier scores (its ``good_label``), which the isotonic map of a
            binary softmax head applies to; default ``positive``. Only recorded otherwise.
        names: class names (single-label) or label names (multi-label; required for isotonic),
            recorded in ``meta`` and keying ``per_label``.

    Returns:
        A ``CalibrationResult``.

    Raises:
        ConfigError: isotonic on a C > 2 softmax head, or multi-label isotonic without names.
        ValueError: shapes or labels that do not fit.
    """
    s = settings or CalibrationSettings()
    y_raw = np.asarray(dev_labels)
    if y_raw.ndim == 2:
        return _calibrate_multilabel(dev_logits, y_raw, s, names)
    z = _as_logits(dev_logits)
    k = max(z.shape[1], 2)
    y = _check_labels(y_raw, z.shape[0], k)
    if not 0 <= positive < k:
        raise ValueError(f"positive: class index {positive} outside 0..{k - 1}")
    good_col = positive if good is None else good
    if not 0 <= good_col < k:
        raise ValueError(f"good: class index {good_col} outside 0..{k - 1}")
    if s.method == "isotonic" and k > 2:
        raise ConfigError(
            f"calibration.method: isotonic calibrates one probability, but this head has {k} "
            "classes (the other probabilities would no longer add up); use temperature"
        )
    degenerate = "the dev labels hold one class only" if np.unique(y).size < 2 else None
    before = class_probs(z)
    temperature = 1.0
    file: dict[str, Any]
    if s.method == "temperature":
        temperature = fit_temperature(z, y)
        file = {"kind": "temperature", "temperature": temperature}
    elif s.method == "isotonic":
        col = 1 if z.shape[1] == 1 else good_col  # the probability the verifier maps
        xs, ys = fit_isotonic(before[:, col], (y == col).astype(np.int64))
        file = {"kind": "isotonic", "x": xs, "y": ys}
    else:
        file = {"kind": "temperature", "temperature": 1.0}
    after = apply_calibration(z, file, good=good_col)
    target = (y == positive).astype(np.int64)
    p_before, p_after = before[:, positive], after[:, positive]
    info = select_threshold(target, p_after, s.threshold, s.target_fpr, s.target_fnr)
    summary: dict[str, Any] = {
        "method": s.method,
        "n_dev": int(y.size),
        "positive": positive,
        "positive_name": names[positive] if names and positive < len(names) else str(positive),
        "good": good_col,
        "ece_before": expected_calibration_error(target, p_before),
        "ece_after": expected_calibration_error(target, p_after),
        "nll_before": _nll_single(z, y),
        "nll_after": _nll_single(z / temperature, y)
        if s.method != "isotonic"
        else _prob_nll(p_after, target),
        "brier_before": float(np.mean((p_before - target) ** 2)) if y.size else float("nan"),
        "brier_after": float(np.mean((p_after - target) ** 2)) if y.size else float("nan"),
        "threshold": info["threshold"],
        "threshold_rule": s.threshold,
        "threshold_f1": info["f1"],
        "threshold_fpr": info["fpr"],
        "threshold_tpr": info["tpr"],
        "decision": f"P(class {positive}) >= threshold predicts class {positive}",
    }
    if s.method == "isotonic":
        # For isotonic the NLL before is that of the same probabilities, for a fair comparison.
        summary["nll_before"] = _prob_nll(p_before, target)
    if s.threshold == "target_fpr":
        summary["target_fpr"] = s.target_fpr
    if s.threshold == "target_fnr":
        summary["target_fnr"] = s.target_fnr
    if k == 2:
        # The verifier scores P(good): the same decision read on its score.
        summary["score_threshold"] = (
            info["threshold"] if good_col == positive else 1.0 - info["threshold"]
        )
        summary["score_predicts_positive"] = "at_or_above" if good_col == positive else "below"
    if degenerate:
        summary["degenerate"] = degenerate
    file["meta"] = jsonable(summary)
    return CalibrationResult(
        method=s.method,
        file=file,
        probs_before=p_before,
        probs_after=p_after,
        labels=target,
        threshold=float(info["threshold"]),
        threshold_info=info,
        summary=summary,
        temperature=temperature,
    )


def _calibrate_multilabel(
    dev_logits: Any, y_raw: np.ndarray, s: CalibrationSettings, names: list[str] | None
) -> CalibrationResult:
    z = np.asarray(dev_logits, dtype=np.float64)
    if z.shape != y_raw.shape:
        raise ValueError(f"multi-label logits {z.shape} and labels {y_raw.shape} differ")
    if not np.isin(y_raw, (0, 1)).all():
        raise ValueError("multi-label labels must be 0/1")
    if not np.isfinite(z).all():
        raise ValueError("logits: non-finite values")
    y = y_raw.astype(np.int64)
    c = z.shape[1]
    if names is not None and len(names) != c:
        raise ValueError(f"names: {len(names)} names for {c} labels")
    label_names = names or [str(j) for j in range(c)]
    before = sigmoid(z)
    temperature = 1.0
    file: dict[str, Any]
    if s.method == "temperature":
        temperature = fit_temperature(z, y)
        file = {"kind": "temperature", "temperature": temperature}
    elif s.method == "isotonic":
        if names is None:
            raise ConfigError("multi-label isotonic calibration needs the label names")
        per = {}
        for j, name in enumerate(names):
            xs, ys = fit_isotonic(before[:, j], y[:, j])
            per[name] = {"x": xs, "y": ys}
        file = {"kind": "isotonic", "per_label": per}
    else:
        file = {"kind": "temperature", "temperature": 1.0}
    after = apply_calibration(z, file, multi_label=True, names=label_names)
    infos = [
        select_threshold(y[:, j], after[:, j], s.threshold, s.target_fpr, s.target_fnr)
        for j in range(c)
    ]
    summary: dict[str, Any] = {
        "method": s.method,
        "n_dev": int(y.shape[0]),
        "labels": label_names,
        "ece_before": {
            n: expected_calibration_error(y[:, j], before[:, j]) for j, n in enumerate(label_names)
        },
        "ece_after": {
            n: expected_calibration_error(y[:, j], after[:, j]) for j, n in enumerate(label_names)
        },
        "nll_before": _prob_nll(before.ravel(), y.ravel()),
        "nll_after": _prob_nll(after.ravel(), y.ravel()),
        "threshold": {n: infos[j]["threshold"] for j, n in enumerate(label_names)},
        "threshold_rule": s.threshold,
        "threshold_f1": {n: infos[j]["f1"] for j, n in enumerate(label_names)},
        "decision": "P(label present) >= its threshold flags the label",
    }
    file["meta"] = jsonable(summary)
    return CalibrationResult(
        method=s.method,
        file=file,
        probs_before=before,
        probs_after=after,
        labels=y,
        threshold=[float(i["threshold"]) for i in infos],
        threshold_info=infos,
        summary=summary,
        temperature=temperature,
    )


def write_calibration(model_dir: str | Path, result: CalibrationResult) -> Path:
    """Write ``result.file`` to ``model_dir/safeladder_calibration.json``; returns the path.

    The content is validated against the classifier verifier's schema first, so a file this
    writes is one ``build_verifier({"type": "classifier", "path": model_dir})`` applies.
    """
    from pydantic import TypeAdapter, ValidationError

    from safeladder.data.writers import write_json_atomic
    from safeladder.verifiers.classifier import Calibration

    data = jsonable(result.file)
    try:
        TypeAdapter(Calibration).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"calibration does not fit the classifier's schema: {exc}") from exc
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / CALIBRATION_FILE
    write_json_atomic(path, data)
    return path


def read_calibration_file(model_dir: str | Path) -> dict[str, Any] | None:
    """The raw dict of ``model_dir/safeladder_calibration.json``, or None when absent."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


__all__ = [
    "CALIBRATION_FILE",
    "T_MAX",
    "T_MIN",
    "CalibrationResult",
    "apply_calibration",
    "calibrate",
    "class_probs",
    "fit_isotonic",
    "fit_temperature",
    "read_calibration_file",
    "select_threshold",
    "write_calibration",
]
