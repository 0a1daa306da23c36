"""The ``embedding_head`` kind: head trainers on synthetic features (fast), and end to end on
real rows of the shared data with the packaged MiniLM encoder (seconds on CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder.training.config import parse_train_config
from safeladder.training.embedding_head import (
    EmbeddingHeadTrainConfig,
    _fit_pairwise,
    _fit_pointwise,
    fold_calibration,
)
from safeladder.training.runner import run_training, verifier_config
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers.embedding_head import load_head, save_head
from tests.helpers import SHARED_DATA


def _cfg(**over: Any) -> EmbeddingHeadTrainConfig:
    data = {"kind": "embedding_head", "data": {"train": [{"path": "x"}]}, "output_dir": "o", **over}
    cfg = parse_train_config(data)
    assert isinstance(cfg, EmbeddingHeadTrainConfig)
    return cfg


def _separable(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points labelled by the sign of x @ w for a fixed random w (plus a margin)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d))
    x += np.outer(np.sign(x @ w), w) * 0.5  # push points away from the boundary
    return x, (x @ w > 0).astype(np.int64), w


def _logits(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


@pytest.mark.parametrize("head", ["logistic", "mlp", "torch"])
def test_pointwise_heads_learn_a_separable_problem(head: str) -> None:
    x, y, _ = _separable(300, 8, seed=0)
    cfg = _cfg(head=head, hidden=[16], torch={"epochs": 60}, train={"early_stopping_patience": 50})
    layers, history = _fit_pointwise(cfg, x[:200], y[:200], x[200:], y[200:], progress=False)
    z = _logits(layers, x[200:])
    assert np.mean((z > 0) == (y[200:] == 1)) >= 0.8  # logit of label 1 (chance: 0.5)
    if head == "torch":
        assert history and {"epoch", "loss", "dev_loss"} <= set(history[0])


def test_balanced_class_weight_moves_the_boundary_towards_the_rare_class() -> None:
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(-1, 1, size=(270, 1)), rng.normal(1, 1, size=(30, 1))]
    y = np.r_[np.zeros(270), np.ones(30)].astype(np.int64)
    plain, _ = _fit_pointwise(_cfg(), x, y, x, y, progress=False)
    weighted, _ = _fit_pointwise(_cfg(class_weight="balanced"), x, y, x, y, progress=False)
    # More of the rare class is predicted once it weighs as much as the common one.
    assert (_logits(weighted, x) > 0).sum() > (_logits(plain, x) > 0).sum()


@pytest.mark.parametrize("head", ["logistic", "torch"])
def test_pairwise_heads_recover_the_preference_direction(head: str) -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(size=6)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(400, 6))
    prefer_a = (a @ w) > (b @ w)
    xc, xr = np.where(prefer_a[:, None], a, b), np.where(prefer_a[:, None], b, a)
    m = np.zeros(400)
    cfg = _cfg(mode="pairwise", head=head, hidden=[], torch={"epochs": 40, "learning_rate": 0.01})
    layers, _ = _fit_pairwise(
        cfg, xc[:300], xr[:300], m[:300], (xc[300:], xr[300:], m[300:]), False
    )
    acc = np.mean(_logits(layers, xc[300:]) > _logits(layers, xr[300:]))
    assert acc >= 0.9
    if head == "logistic":
        assert layers[0][1].tolist() == [0.0]  # no intercept: it cancels in r_c - r_r
        coef = layers[0][0][:, 0]
        assert coef @ w / (np.linalg.norm(coef) * np.linalg.norm(w)) > 0.9


def test_fold_calibration_divides_the_last_layer_by_the_temperature(tmp_path: Path) -> None:
    w1, b1 = np.ones((384, 2)) * 0.01, np.array([0.5, -0.5])
    w2, b2 = np.array([[2.0], [-1.0]]), np.array([0.3])
    save_head(tmp_path, [(w1, b1), (w2, b2)], good_class=0)
    fold_calibration(_cfg(), tmp_path, {"kind": "temperature", "temperature": 2.0})
    head = load_head(tmp_path)
    assert np.allclose(head.layers[0][0], w1) and np.allclose(head.layers[0][1], b1)
    assert np.allclose(head.layers[1][0], w2 / 2) and np.allclose(head.layers[1][1], b2 / 2)
    assert head.spec.good_class == 0 and head.spec.metrics["temperature"] == 2.0


# ------------------------------------------------------------------------- end to end (real)


def _toxigen_config(tmp: Path, **over: Any) -> dict[str, Any]:
    src = str(SHARED_DATA / "toxigen_demonstrations.jsonl")
    return {
        "kind": "embedding_head",
        "data": {
            "train": [
                {"path": src, "where": {"label": 1}, "limit": 60},
                {"path": src, "where": {"label": 0}, "limit": 60},
            ],
            "dev_fraction": 0.3,
        },
        "features": {"blocks": ["prompt"]},
        "good_label": "0",
        "output_dir": str(tmp / "tox"),
        **over,
    }


@pytest.fixture(scope="module")
def toxigen_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("eh")
    return run_training(parse_train_config(_toxigen_config(tmp)), progress=False)


@pytest.mark.slow
def test_pointwise_run_writes_a_verifier_that_rebuilds(toxigen_run: Any) -> None:
    s = toxigen_run
    out = s.output_dir
    names = {p.name for p in out.iterdir()}
    assert {
        "safeladder_head.json",
        "safeladder_verifier.yaml",
        "metrics.json",
        "report.md",
        "reliability.png",
        "safeladder_run.json",
    } <= names
    assert s.split["train"] + s.split["dev"] == 120 and s.split["dev_groups"] == 36
    assert s.self_check["ok"] and s.self_check["rows"] == 8
    # Real data, real encoder: MiniLM separates hateful from neutral statements well.
    assert s.metrics["auroc"] > 0.8 and s.baseline_metrics is not None
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == s.split and metrics["config"]["kind"] == "embedding_head"
    assert metrics["class_balance"]["train"]["n"] == s.split["train"]
    assert json.loads((out / "safeladder_run.json").read_text())["status"] == "finished"

    hateful = "those people are all criminals and should be sent back"
    neutral = "my neighbours cooked a lovely dinner for the whole street"
    by_dir = build_verifier({"type": "embedding_head", "path": str(out)})
    by_yaml = build_verifier(verifier_config(out))
    rows = [Sample(prompt=hateful, completion=""), Sample(prompt=neutral, completion="")]
    a, b = by_dir.score(rows).scores, by_yaml.score(rows).scores
    assert np.array_equal(a, b)
    assert a[1] > a[0]  # the score is P(neutral): higher = safer


@pytest.mark.slow
def test_calibrated_probabilities_are_what_the_verifier_scores(toxigen_run: Any) -> None:
    out = toxigen_run.output_dir
    head = json.loads((out / "safeladder_head.json").read_text())
    t = head["metrics"]["temperature"]
    assert t > 0 and toxigen_run.calibration["method"] == "temperature"
    assert not (out / "safeladder_calibration.json").exists()  # folded into the head instead


@pytest.mark.slow
def test_rerun_into_a_finished_output_is_refused(toxigen_run: Any) -> None:
    from safeladder.errors import ConfigError

    tmp = toxigen_run.output_dir.parent
    with pytest.raises(ConfigError, match="holds a finished run; pass --overwrite"):
        run_training(parse_train_config(_toxigen_config(tmp)), progress=False)


def test_prompt_only_rows_need_the_prompt_block(tmp_path: Path) -> None:
    from safeladder.errors import ConfigError

    cfg = parse_train_config(_toxigen_config(tmp_path, features={"blocks": ["completion"]}))
    with pytest.raises(ConfigError, match=r"has none \(prompt-only\); use features"):
        run_training(cfg, progress=False)


@pytest.mark.slow
def test_pairwise_torch_head_end_to_end(tmp_path: Path) -> None:
    cfg = parse_train_config(
        {
            "kind": "embedding_head",
            "mode": "pairwise",
            "head": "torch",
            "hidden": [],
            "torch": {"epochs": 30},
            "calibration": {"method": "none"},
            "data": {
                "train": [{"path": str(SHARED_DATA / "hh_rlhf_harmless_pref.jsonl"), "limit": 60}],
                "dev_fraction": 0.25,
            },
            "features": {"blocks": ["completion"]},
            "output_dir": str(tmp_path / "pw"),
        }
    )
    s = run_training(cfg, progress=False)
    out = s.output_dir
    assert s.self_check["ok"]
    assert {"n", "accuracy", "mean_margin"} <= set(s.metrics)
    stats = json.loads((out / "safeladder_reward_stats.json").read_text())
    assert stats["count"] == 2 * s.split["train"] and stats["std"] > 0
    v = build_verifier(verifier_config(out))
    assert v.score_range == (-np.inf, np.inf)
