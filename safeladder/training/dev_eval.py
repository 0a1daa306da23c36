"""A training run's dev-split evaluation: calibration, metrics and the report.

Pointwise: the calibration is fitted on the dev logits (``calibration.calibrate``) and saved
(``safeladder_calibration.json``, or folded into the head by a kind's ``fold_calibration``);
the dev metrics are those of the calibrated P(label 1) at the chosen threshold. Pairwise:
pairwise accuracy / margins, and ``safeladder_reward_stats.json`` (mean / std of the train
rewards: reward centering for the ``reward_model`` verifier). ``write_train_report`` writes
``report.md`` + ``reliability.png`` with the TF-IDF baseline's column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError, SafeladderError
from safeladder.training.baseline import BASELINE_NAME
from safeladder.training.common import PointRecord, TrainConfigBase, TrainData
from safeladder.training.run_files import STATS_FILE


def good_index(cfg: TrainConfigBase, labels: list[str]) -> int | None:
    """The class index of the kind's ``good_label`` (None when the kind has none)."""
    g = getattr(cfg, "good_label", None)
    if g is None:
        return None
    if isinstance(g, str) and g in labels:
        return labels.index(g)
    if isinstance(g, int) or (isinstance(g, str) and g.isdigit()):
        idx = int(g)
        if 0 <= idx < max(2, len(labels)):
            return idx
    raise ConfigError(f"good_label: {g!r} is neither a class name nor an index of {labels}")


@dataclass
class DevEvaluation:
    """The dev-split evaluation of a trained kind, and what the self-check should see."""

    metrics: dict[str, Any]
    per_category: dict[str, Any]
    threshold: float | list[float] | None
    calibration: dict[str, Any] | None
    calibration_file: dict[str, Any] | None
    reliability: tuple[np.ndarray, np.ndarray] | None  # (labels, probs) for the diagram
    expected_scores: np.ndarray | None  # what the rebuilt verifier should score, dev order
    expected_probs: np.ndarray | None = None  # multi-label: (n, C) calibrated per-label probs


def evaluate_pointwise(
    cfg: TrainConfigBase, data: TrainData, outcome: Any, out: Path, module: Any
) -> DevEvaluation:
    """Calibrate the dev logits, save the calibration, and measure calibrated P(label 1)."""
    from safeladder.training.calibration import apply_calibration, calibrate, write_calibration
    from safeladder.training.metrics import multilabel_metrics, per_category, pointwise_metrics

    if outcome.dev_logits is None:
        raise SafeladderError(f"kind {cfg.kind!r} returned no dev_logits for a pointwise run")
    logits = np.asarray(outcome.dev_logits, dtype=np.float64)
    dev: list[PointRecord] = data.dev
    if outcome.dev_labels is not None:
        y = np.asarray(outcome.dev_labels)
    else:
        y = np.array([r.label for r in dev])
    if logits.shape[0] != len(dev) or y.shape[0] != len(dev):
        raise SafeladderError(
            f"kind {cfg.kind!r} returned {logits.shape[0]} dev logits and {y.shape[0]} labels "
            f"for {len(dev)} dev rows"
        )
    names = list(data.labels)
    good = good_index(cfg, names)
    categories = [r.category for r in dev]
    metrics: dict[str, Any]
    if y.ndim == 2:  # multi-label
        cal = calibrate(logits, y, cfg.calibration, names=names)
        thresholds = cal.threshold
        metrics = multilabel_metrics(y, cal.probs_after, names, thresholds)
        _save_calibration(module, cfg, out, cal, write_calibration)
        probs = apply_calibration(logits, cal.file, multi_label=True, names=names)
        return DevEvaluation(
            metrics, {}, thresholds, cal.summary, cal.file, None, None, expected_probs=probs
        )
    cal = calibrate(logits, y, cfg.calibration, positive=1, good=good, names=names)
    assert not isinstance(cal.threshold, list)  # single-label: one threshold
    t = float(cal.threshold)
    metrics = {
        **pointwise_metrics(cal.labels, cal.probs_after, threshold=t),
        "ece_before_calibration": cal.summary.get("ece_before"),
    }
    if logits.ndim == 2 and logits.shape[1] > 2:
        metrics["multiclass_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
    cats = per_category(
        categories,
        lambda yy, pp: pointwise_metrics(yy, pp, threshold=t),
        cal.labels,
        cal.probs_after,
    )
    _save_calibration(module, cfg, out, cal, write_calibration)
    expected = None
    if good is not None:
        expected = apply_calibration(logits, cal.file, good=good)[:, good]
    return DevEvaluation(
        metrics, cats, t, cal.summary, cal.file, (cal.labels, cal.probs_after), expected
    )


def _save_calibration(module: Any, cfg: TrainConfigBase, out: Path, cal: Any, write: Any) -> None:
    fold = getattr(module, "fold_calibration", None)
    if fold is not None:
        fold(cfg, out, cal.file)  # the kind's verifier reads no calibration file
    else:
        write(out, cal)


def evaluate_pairwise(
    cfg: TrainConfigBase, data: TrainData, outcome: Any, out: Path
) -> DevEvaluation:
    """Pairwise dev metrics, and the train-reward centering statistics (``STATS_FILE``)."""
    from safeladder.data.writers import write_json_atomic
    from safeladder.training.metrics import pairwise_metrics, pairwise_reliability, per_category

    if outcome.dev_chosen is None or outcome.dev_rejected is None:
        raise SafeladderError(f"kind {cfg.kind!r} returned no dev_chosen / dev_rejected rewards")
    c = np.asarray(outcome.dev_chosen, dtype=np.float64).reshape(-1)
    r = np.asarray(outcome.dev_rejected, dtype=np.float64).reshape(-1)
    if c.shape[0] != len(data.dev) or r.shape[0] != len(data.dev):
        raise SafeladderError(
            f"kind {cfg.kind!r} returned {c.shape[0]} / {r.shape[0]} dev rewards for "
            f"{len(data.dev)} dev pairs"
        )
    metrics = pairwise_metrics(c, r)
    cats = per_category([p.category for p in data.dev], pairwise_metrics, c, r)
    if outcome.train_rewards is not None:
        tr = np.asarray(outcome.train_rewards, dtype=np.float64).reshape(-1)
        std = float(tr.std())
        stats = {"mean": float(tr.mean()), "std": std if std > 0 else 1.0, "count": int(tr.size)}
        write_json_atomic(out / STATS_FILE, stats)
        metrics["train_reward_mean"], metrics["train_reward_std"] = stats["mean"], stats["std"]
    return DevEvaluation(metrics, cats, None, None, None, pairwise_reliability(c, r), c)


def write_train_report(
    cfg: TrainConfigBase,
    out: Path,
    summary: dict[str, Any],
    ev: DevEvaluation,
    outcome: Any,
    notes: list[str],
    pairwise: bool,
) -> dict[str, Path]:
    """``report.md`` + ``reliability.png`` through ``safeladder.training.report``."""
    from safeladder.training.metrics import reliability_bins
    from safeladder.training.report import EvalReport, write_report

    kind = (
        "pairwise" if pairwise else ("multilabel" if ev.expected_probs is not None else "pointwise")
    )
    bins = reliability_bins(*ev.reliability) if ev.reliability is not None else []
    note = (
        "P(chosen preferred) = sigmoid(r_chosen - r_rejected), each pair counted both ways"
        if pairwise
        else "calibrated P(label 1) on the dev split"
    )
    report = EvalReport(
        title=summary["name"],
        kind=kind,
        verifier_name=f"{cfg.kind} (dev)",
        metrics=ev.metrics,
        baseline_name=BASELINE_NAME if summary["baseline"]["metrics"] is not None else None,
        baseline_metrics=summary["baseline"]["metrics"],
        per_category=ev.per_category,
        reliability=bins,
        reliability_note=note if bins else None,
        calibration=ev.calibration,
        data={
            "sources": [s.path for s in cfg.data.train] + [s.path for s in (cfg.data.dev or [])],
            "split": summary["split"],
            "labels": summary["labels"],
            "class_balance": summary["class_balance"],
        },
        history=list(outcome.history),
        notes=list(notes),
    )
    return dict(write_report(report, out))


__all__ = [
    "DevEvaluation",
    "evaluate_pairwise",
    "evaluate_pointwise",
    "good_index",
    "write_train_report",
]
