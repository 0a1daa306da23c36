"""Calibration on synthetic scores with known answers, and the file the classifier applies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from safeladder.errors import ConfigError
from safeladder.training.calibration import (
    T_MIN,
    apply_calibration,
    calibrate,
    fit_isotonic,
    fit_temperature,
    select_threshold,
    write_calibration,
)
from safeladder.training.common import CalibrationSettings
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers.classifier import IsotonicMap
from tests.helpers import tiny_model_dir

torch.set_num_threads(1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _binary_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from them: sigmoid(z) is the exact P(label 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=n)
    y = (rng.random(n) < _sigmoid(z)).astype(np.int64)
    return z, y


# --- temperature ---------------------------------------------------------------------------


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_recovers_the_scale_of_sigmoid_logits(true_t: float) -> None:
    z, y = _binary_data(20_000)
    # Logits multiplied by T: dividing by the fitted T must undo it.
    assert fit_temperature(z * true_t, y) == pytest.approx(true_t, rel=0.06)
    assert fit_temperature((z * true_t)[:, None], y) == pytest.approx(true_t, rel=0.06)


def test_temperature_recovers_the_scale_of_softmax_logits() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 1.5, size=(20_000, 3))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(z * 3.0, y) == pytest.approx(3.0, rel=0.06)
    assert fit_temperature(z / 2.0, y) == pytest.approx(0.5, rel=0.06)


def test_temperature_multilabel_shared() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 2.0, size=(8_000, 3))
    y = (rng.random(z.shape) < _sigmoid(z)).astype(np.int64)
    assert fit_temperature(z * 2.0, y) == pytest.approx(2.0, rel=0.06)


def test_temperature_degenerate_cases_are_identity() -> None:
    assert fit_temperature(np.array([1.0, 2.0, 3.0]), np.array([1, 1, 1])) == 1.0
    assert fit_temperature(np.zeros(4), np.array([0, 1, 0, 1])) == 1.0
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 1.0
    # Separable data pushes T to the lower bound, not below it.
    t = fit_temperature(np.array([-1.0, -2.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    assert t == pytest.approx(T_MIN, rel=1e-3)


def test_temperature_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="class index 2 at index 1 is outside 0..1"):
        fit_temperature(np.array([0.1, 0.2]), np.array([0, 2]))


# --- isotonic ------------------------------------------------------------------------------


def test_isotonic_undoes_a_known_monotone_distortion() -> None:
    rng = np.random.default_rng(3)
    q = rng.random(40_000)  # the true P(label 1)
    y = (rng.random(q.size) < q).astype(np.int64)
    x, fy = fit_isotonic(q**3, y)  # the model reports q³: overconfident towards 0
    IsotonicMap(x=x, y=fy)  # the classifier verifier's schema accepts it
    assert len(x) >= 2 and all(np.diff(fy) >= 0)
    grid = np.linspace(0.05, 0.95, 19) ** 3
    # Calibrated value at p = q³ must be ≈ q = p^(1/3).
    assert np.abs(np.interp(grid, x, fy) - grid ** (1 / 3)).max() < 0.05


def test_isotonic_degenerate_is_identity_or_constant() -> None:
    assert fit_isotonic(np.array([0.2, 0.7]), np.array([1, 1])) == ([0.0, 1.0], [0.0, 1.0])
    x, y = fit_isotonic(np.array([0.4, 0.4, 0.4, 0.4]), np.array([0, 1, 1, 1]))
    assert x == [0.0, 1.0] and y == [0.75, 0.75]


# --- thresholds ----------------------------------------------------------------------------

# labels 1 1 0 1 0 0 / probs .9 .8 .7 .3 .2 .1. F1 at each candidate threshold (predict p >= t):
#   .9: tp1 fp0 → 2/(1+0+3) = .5;  .8: tp2 → 4/5 = .8;  .7: tp2 fp1 → 4/6;
#   .3: tp3 fp1 → 6/7 (best);      .2: tp3 fp2 → 6/8;   .1: tp3 fp3 → 6/9.
Y = np.array([1, 1, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])


def test_max_f1_threshold_hand_computed() -> None:
    t = select_threshold(Y, P, "max_f1")
    assert t["threshold"] == 0.3
    assert t["f1"] == pytest.approx(6 / 7)
    assert t["precision"] == pytest.approx(0.75)
    assert t["recall"] == 1.0 and t["fpr"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("target", "want_t", "want_fpr"),
    [(0.34, 0.3, 1 / 3), (0.2, 0.8, 0.0), (0.7, 0.2, 2 / 3)],
)
def test_target_fpr_hand_computed(target: float, want_t: float, want_fpr: float) -> None:
    t = select_threshold(Y, P, "target_fpr", target_fpr=target)
    assert t["threshold"] == want_t
    assert t["fpr"] == pytest.approx(want_fpr)


def test_target_fpr_is_achieved_on_random_scores() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 5_000)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    t = select_threshold(y, p, "target_fpr", target_fpr=0.05)
    fpr = np.mean(p[y == 0] >= t["threshold"])
    assert fpr <= 0.05 and fpr == pytest.approx(t["fpr"])
    # The next lower distinct score would break the budget (the threshold is the lowest allowed).
    lower = p[p < t["threshold"]].max()
    assert np.mean(p[y == 0] >= lower) > 0.05


def test_target_fpr_when_the_top_score_is_a_negative() -> None:
    t = select_threshold(np.array([0, 1]), np.array([0.9, 0.1]), "target_fpr", target_fpr=0.1)
    assert t["threshold"] > 0.9 and t["fpr"] == 0.0 and t["tpr"] == 0.0


@pytest.mark.parametrize(
    ("target", "want_t", "want_tpr"),
    [(0.34, 0.8, 2 / 3), (0.2, 0.3, 1.0), (0.7, 0.9, 1 / 3), (0.01, 0.3, 1.0)],
)
def test_target_fnr_hand_computed(target: float, want_t: float, want_tpr: float) -> None:
    t = select_threshold(Y, P, "target_fnr", target_fnr=target)
    assert t["threshold"] == want_t and t["rule"] == "target_fnr" and t["target_fnr"] == target
    assert t["tpr"] == pytest.approx(want_tpr)


def test_target_fnr_is_achieved_on_random_scores() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 5_000)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    t = select_threshold(y, p, "target_fnr", target_fnr=0.01)
    fnr = np.mean(p[y == 1] < t["threshold"])
    assert fnr <= 0.01 and 1 - fnr == pytest.approx(t["tpr"])
    # The next higher distinct score would miss too many (the threshold is the highest allowed).
    higher = p[p > t["threshold"]].min()
    assert np.mean(p[y == 1] < higher) > 0.01
    with pytest.raises(ValueError, match="target_fnr"):
        select_threshold(y, p, "target_fnr", target_fnr=0.0)


def test_threshold_with_one_class_is_flagged() -> None:
    t = select_threshold(np.array([0, 0]), np.array([0.2, 0.6]))
    assert t["threshold"] == 0.5 and "one class" in t["degenerate"]


# --- calibrate -----------------------------------------------------------------------------


def test_calibrate_temperature_binary_softmax() -> None:
    z, y = _binary_data(5_000, seed=5)
    # A 2-logit head whose logit difference is 3x too large: overconfident.
    logits = np.stack([np.zeros_like(z), 3.0 * z], axis=1)
    res = calibrate(logits, y, CalibrationSettings(method="temperature"), positive=1)
    assert res.temperature == pytest.approx(3.0, rel=0.08)
    s = res.summary
    assert s["ece_after"] < s["ece_before"] and s["nll_after"] < s["nll_before"]
    assert s["ece_after"] < 0.03
    np.testing.assert_allclose(res.probs_after, _sigmoid(3.0 * z / res.temperature), atol=1e-12)
    assert res.file["kind"] == "temperature" and res.file["temperature"] == res.temperature
    assert res.file["meta"]["threshold"] == res.threshold
    assert res.labels.tolist() == y.tolist()


def test_calibrate_isotonic_maps_the_good_class() -> None:
    z, y = _binary_data(5_000, seed=6)
    logits = np.stack([np.zeros_like(z), 3.0 * z], axis=1)
    # Positive = class 1 (unsafe), the verifier scores class 0 (safe): the map is on P(0).
    res = calibrate(logits, y, CalibrationSettings(method="isotonic"), positive=1, good=0)
    x, fy = res.file["x"], res.file["y"]
    p0 = 1.0 - _sigmoid(3.0 * z)
    np.testing.assert_allclose(res.probs_after, 1.0 - np.interp(p0, x, fy), atol=1e-12)
    assert res.summary["ece_after"] < res.summary["ece_before"]
    assert res.summary["score_predicts_positive"] == "below"
    assert isinstance(res.threshold, float)
    assert res.summary["score_threshold"] == pytest.approx(1.0 - res.threshold)
    again = apply_calibration(logits, res.file, good=0)[:, 1]
    np.testing.assert_allclose(again, res.probs_after)


def test_calibrate_none_records_threshold_with_identity() -> None:
    z, y = _binary_data(500, seed=7)
    res = calibrate(z, y, CalibrationSettings(method="none", threshold="target_fpr"))
    assert res.file["kind"] == "temperature" and res.file["temperature"] == 1.0
    np.testing.assert_allclose(res.probs_after, res.probs_before)
    assert res.summary["threshold_rule"] == "target_fpr"
    assert res.summary["threshold_fpr"] <= 0.05


def test_calibrate_refuses_isotonic_on_three_classes() -> None:
    with pytest.raises(ConfigError, match="isotonic.*3 classes.*temperature"):
        calibrate(np.zeros((4, 3)), np.array([0, 1, 2, 0]), CalibrationSettings(method="isotonic"))


def test_calibrate_one_class_dev_is_identity() -> None:
    res = calibrate(np.array([[0.0, 2.0], [0.0, -1.0]]), np.array([1, 1]))
    assert res.temperature == 1.0 and "one class" in res.summary["degenerate"]


# --- the file the classifier verifier applies ----------------------------------------------

ROWS = [
    Sample(prompt="How do I bake bread?", completion="Mix flour, water and yeast."),
    Sample(prompt="x", completion="I'm sorry, but I can't help with that request."),
    Sample(prompt="Tell me a story.", completion="Once upon a time " * 5),
    Sample(prompt="2+2?", completion="4"),
    Sample(prompt="hi", completion="The quick brown fox jumps over the lazy dog."),
]


def _copy(kind: str, tmp_path: Path) -> Path:
    d = tmp_path / kind
    shutil.copytree(tiny_model_dir(kind), d)
    return d


def _scores(d: Path, **kw: object) -> np.ndarray:
    v = build_verifier({"type": "classifier", "path": str(d), "runtime": {"device": "cpu"}, **kw})
    try:
        return np.asarray(v.score(ROWS).scores, dtype=np.float64)
    finally:
        v.close()


def test_written_temperature_is_applied_by_the_classifier(tmp_path: Path) -> None:
    d = _copy("bert_classifier", tmp_path)  # labels: 0 unsafe, 1 safe
    raw = _scores(d, good_label="safe")
    assert np.ptp(raw) > 0.01
    z, y = _binary_data(3_000, seed=8)
    # Safety convention: positive = class 0 here (unsafe), the verifier scores class 1 (safe).
    logits = np.stack([4.0 * z, np.zeros_like(z)], axis=1)
    res = calibrate(logits, 1 - y, CalibrationSettings(method="temperature"), positive=0, good=1)
    path = write_calibration(d, res)
    assert path.name == "safeladder_calibration.json"
    assert json.loads(path.read_text())["meta"]["positive"] == 0
    got = _scores(d, good_label="safe")
    # P(safe) = sigmoid((l_safe - l_unsafe) / T), with l_safe - l_unsafe = logit(raw).
    want = _sigmoid(np.log(raw / (1 - raw)) / res.temperature)
    assert abs(res.temperature - 4.0) < 0.4
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - raw).max() > 1e-3  # the calibration really changed the scores


def test_written_isotonic_is_applied_by_the_classifier(tmp_path: Path) -> None:
    d = _copy("bert_classifier", tmp_path)
    raw = _scores(d, good_label="safe")
    z, y = _binary_data(3_000, seed=9)
    logits = np.stack([np.zeros_like(z), 2.0 * z], axis=1)
    res = calibrate(logits, y, CalibrationSettings(method="isotonic"), positive=0, good=1)
    write_calibration(d, res)
    got = _scores(d, good_label="safe")
    want = np.interp(raw, res.file["x"], res.file["y"])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - raw).max() > 1e-3


def test_written_multilabel_isotonic_is_applied_per_label(tmp_path: Path) -> None:
    d = _copy("bert_multilabel", tmp_path)  # toxicity, privacy, bias
    names = ["toxicity", "privacy", "bias"]
    v = build_verifier(
        {"type": "classifier", "path": str(d), "calibration": "none", "runtime": {"device": "cpu"}}
    )
    raw = np.array([[r["probs"][n] for n in names] for r in v.score(ROWS).details])
    v.close()
    rng = np.random.default_rng(10)
    z = rng.normal(0, 2, size=(3_000, 3))
    y = (rng.random(z.shape) < _sigmoid(z / 2)).astype(np.int64)
    res = calibrate(z, y, CalibrationSettings(method="isotonic"), names=names)
    assert set(res.file["per_label"]) == set(names)
    assert isinstance(res.threshold, list) and len(res.threshold) == 3
    write_calibration(d, res)
    v = build_verifier({"type": "classifier", "path": str(d), "runtime": {"device": "cpu"}})
    got = np.array([[r["probs"][n] for n in names] for r in v.score(ROWS).details])
    v.close()
    want = np.stack(
        [
            np.interp(raw[:, j], res.file["per_label"][n]["x"], res.file["per_label"][n]["y"])
            for j, n in enumerate(names)
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_write_calibration_refuses_what_the_verifier_would_reject(tmp_path: Path) -> None:
    z, y = _binary_data(200, seed=11)
    res = calibrate(z, y, CalibrationSettings(method="isotonic"))
    res.file["y"] = list(reversed(res.file["y"]))  # decreasing: not an isotonic map
    with pytest.raises(ConfigError, match="schema"):
        write_calibration(tmp_path, res)
    assert not (tmp_path / "safeladder_calibration.json").exists()
