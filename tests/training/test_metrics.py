"""Metrics against hand-computed values (and scikit-learn's, for the ranking metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safeladder.training.metrics import (
    auprc,
    auroc,
    expected_calibration_error,
    multilabel_metrics,
    pairwise_metrics,
    pairwise_reliability,
    per_category,
    pointwise_metrics,
    reliability_bins,
)

# Hand-worked case: 6 rows, threshold 0.5.
#   labels  1    1    0    1    0    0
#   probs  0.9  0.8  0.7  0.3  0.2  0.1
# predicted 1 for the first three: tp 2, fp 1, fn 1, tn 2.
Y = np.array([1, 1, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])


def test_pointwise_hand_computed() -> None:
    m = pointwise_metrics(Y, P)
    assert m["n"] == 6 and m["positives"] == 3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # Pairs (pos, neg) ranked right: 0.9 and 0.8 beat all 3 negatives (6), 0.3 beats 0.2, 0.1 (2).
    assert m["auroc"] == pytest.approx(8 / 9)
    # Ranked: 1 1 0 1 0 0 → precision at each positive: 1, 1, 3/4; AP = (1 + 1 + 0.75) / 3.
    assert m["auprc"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert m["brier"] == pytest.approx(np.mean((P - Y) ** 2))
    # Each prob alone in its bin: ECE = mean |p - y| = (0.1+0.2+0.7+0.7+0.2+0.1) / 6.
    assert m["ece"] == pytest.approx(2.0 / 6)
    assert m["threshold"] == 0.5


def test_threshold_is_inclusive() -> None:
    m = pointwise_metrics(np.array([1, 0]), np.array([0.5, 0.49]), threshold=0.5)
    assert m["accuracy"] == 1.0


def test_one_class_gives_nan_ranking_metrics_not_an_error() -> None:
    m = pointwise_metrics(np.array([0, 0, 0]), np.array([0.1, 0.6, 0.2]))
    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    m1 = pointwise_metrics(np.array([1, 1]), np.array([0.1, 0.9]))
    assert math.isnan(m1["auroc"]) and math.isnan(m1["auprc"])


def test_ranking_metrics_match_sklearn_with_ties() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    p = np.round(rng.random(500), 1)  # many ties
    y = (rng.random(500) < p).astype(int)
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_auroc_all_tied_is_half() -> None:
    assert auroc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5


def test_reliability_bins_and_ece() -> None:
    y = np.array([0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.95, 1.0, 0.9])
    bins = reliability_bins(y, p, n_bins=10)
    assert len(bins) == 10
    assert bins[0] == {"lo": 0.0, "hi": 0.1, "count": 1, "mean_prob": 0.05, "frac_pos": 0.0}
    assert bins[1]["count"] == 1 and bins[1]["frac_pos"] == 1.0
    assert bins[5]["count"] == 0 and math.isnan(bins[5]["mean_prob"])
    last = bins[9]  # 0.9, 0.95 and 1.0 (1.0 belongs to the last bin)
    assert last["count"] == 3
    assert last["mean_prob"] == pytest.approx(0.95)
    assert last["frac_pos"] == pytest.approx(2 / 3)
    want = (1 * 0.05 + 1 * 0.85 + 3 * abs(0.95 - 2 / 3)) / 5
    assert expected_calibration_error(y, p) == pytest.approx(want)


def test_perfectly_calibrated_has_small_ece() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    y = (rng.random(50_000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01


@pytest.mark.parametrize(
    ("labels", "probs", "match"),
    [
        ([0, 2], [0.1, 0.2], "labels: must be 0 or 1, got 2 at index 1"),
        ([0, 1], [0.1, float("nan")], "non-finite.*index 1.*abstentions"),
        ([0, 1], [0.1, 1.5], r"probs: must lie in \[0, 1\], got 1.5 at index 1"),
        ([0, 1, 1], [0.1, 0.2], "differ in length: 3 vs 2"),
    ],
)
def test_bad_inputs_name_the_problem(labels: list, probs: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pointwise_metrics(np.array(labels), np.array(probs))


def test_scores_that_are_not_probabilities() -> None:
    m = pointwise_metrics(Y, P * 10 - 5, threshold=0.0, probabilities=False)
    assert m["auroc"] == pytest.approx(8 / 9)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert math.isnan(m["ece"]) and math.isnan(m["brier"])


def test_multilabel_per_label_macro_micro() -> None:
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    p = np.array([[0.9, 0.2], [0.6, 0.1], [0.8, 0.4], [0.1, 0.7]])
    m = multilabel_metrics(y, p, ["tox", "pii"], thresholds={"tox": 0.5, "pii": 0.3})
    # tox: pred 1,1,1,0 → tp 2 fp 1 fn 0: P 2/3, R 1, F1 0.8. pii (t 0.3): pred 0,0,1,1 → all right.
    assert m["labels"]["tox"]["f1"] == pytest.approx(0.8)
    assert m["labels"]["pii"]["f1"] == 1.0
    assert m["macro"]["f1"] == pytest.approx(0.9)
    # micro: tp 4, fp 1, fn 0 → P 0.8, R 1, F1 8/9.
    assert m["micro"]["precision"] == pytest.approx(0.8)
    assert m["micro"]["f1"] == pytest.approx(8 / 9)
    assert m["labels"]["pii"]["threshold"] == 0.3
    with pytest.raises(ValueError, match="no value for labels"):
        multilabel_metrics(y, p, ["tox", "pii"], thresholds={"tox": 0.5})


def test_pairwise_ties_count_half() -> None:
    m = pairwise_metrics(np.array([2.0, 1.0, 0.5, 3.0]), np.array([1.0, 1.0, 1.5, 0.0]))
    # margins 1, 0, -1, 3 → wins 2, tie 1 → (2 + 0.5) / 4.
    assert m == {
        "n": 4.0,
        "accuracy": 0.625,
        "ties": 1.0,
        "mean_margin": 0.75,
        "median_margin": 0.5,
    }
    empty = pairwise_metrics(np.array([]), np.array([]))
    assert empty["n"] == 0 and math.isnan(empty["accuracy"])
    with pytest.raises(ValueError, match="rejected: 1 non-finite"):
        pairwise_metrics(np.array([1.0]), np.array([np.nan]))


def test_pairwise_reliability_is_symmetric() -> None:
    y, p = pairwise_reliability(np.array([0.0, 2.0]), np.array([0.0, 0.0]))
    assert y.tolist() == [1, 1, 0, 0]
    assert p[0] == 0.5 and p[1] == pytest.approx(1 / (1 + math.exp(-2)))
    assert p[3] == pytest.approx(1 - p[1])


def test_per_category() -> None:
    cats = ["a", None, "b", "a"]
    out = per_category(cats, pairwise_metrics, [1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0])
    assert list(out) == ["(none)", "a", "b"]
    assert out["a"]["n"] == 2 and out["a"]["accuracy"] == 0.5
    assert out["b"]["accuracy"] == 0.0
    assert per_category([None, None], pairwise_metrics, [1.0, 2.0], [0.0, 0.0]) == {}
    few = per_category(cats, pairwise_metrics, [1, 2, 0, 0], [0, 0, 1, 1], min_count=2)
    assert list(few) == ["a"]
