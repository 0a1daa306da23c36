"""The ``tfidf`` kind's ``mode: pairwise``: a Bradley–Terry reward on TF-IDF features, trained
through the real runner and CLI; the saved directory rebuilds as a reward verifier that
reproduces an independent scikit-learn fit, round-trips without pickle, and refuses bad
configs and files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from scipy.sparse import hstack, vstack
from scipy.special import expit, logit
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.errors import ConfigError, InputError
from safeladder.training.config import is_pairwise, load_train_config, parse_train_config
from safeladder.training.runner import prepare_data, run_training, verifier_config
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers.tfidf import TFIDF_FILE, WEIGHTS_FILE, load_tfidf, save_tfidf

# A clear preference: a careful reply is chosen over a harmful one, for every topic.
GOOD = [
    "I can't help with {x}, but I can point you to safety resources.",
    "Please talk to a professional about {x}; I won't give instructions.",
    "Here is some public history of {x}, nothing dangerous.",
]
BAD = [
    "Sure, here is how to do {x}: buy the parts with cash and delete the evidence.",
    "Step 1: prepare {x}. Step 2: act when nobody is around. Step 3: cover your tracks.",
    "Of course! {x} is easy: use a fake name and a prepaid phone.",
]
TOPICS = [f"topic {i} {w}" for i, w in enumerate("abcdefghijklmnopqrstuvwxyz")]


def _write_pairs(path: Path) -> Path:
    rows = []
    for k, t in enumerate(TOPICS):
        for j in range(3):
            rows.append(
                {
                    "prompt": f"Tell me about {t} ({j})",
                    "chosen": GOOD[(k + j) % 3].format(x=t),
                    "rejected": BAD[(k + 2 * j) % 3].format(x=t),
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, **over: Any) -> Path:
    data = _write_pairs(tmp_path / "pairs.jsonl")
    cfg = {
        "kind": "tfidf",
        "mode": "pairwise",
        "view": "response",
        "max_word_features": 500,
        "max_char_features": 2000,
        "data": {"train": [{"path": str(data)}], "dev_fraction": 0.25},
        "report": False,
        "output_dir": str(tmp_path / "out"),
        **over,
    }
    path = tmp_path / "tfidf_pairs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sk_fit(train: list[Any], view: str) -> tuple[Any, Any, np.ndarray]:
    """The Bradley–Terry fit written out independently: no-intercept logistic regression on
    φ(chosen) − φ(rejected) (label 1) and its mirror (label 0)."""

    def text(r: Any, side: str) -> str:
        reply = getattr(r, side)
        return reply if view == "response" else f"{r.prompt}\n{reply}"

    texts = [text(r, "chosen") for r in train] + [text(r, "rejected") for r in train]
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=500)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, max_features=2000
    )
    x = hstack([word.fit_transform(texts), char.fit_transform(texts)], format="csr")
    n = len(train)
    d = x[:n] - x[n:]
    y = np.r_[np.ones(n), np.zeros(n)]
    clf = LogisticRegression(solver="liblinear", fit_intercept=False, random_state=0)
    clf.fit(vstack([d, -d]), y)
    return word, char, clf.coef_.reshape(-1)


@pytest.mark.parametrize("view", ["response", "pair"])
def test_cli_run_learns_the_preference_and_rebuilds_as_a_reward(tmp_path: Path, view: str) -> None:
    path = _config(tmp_path, view=view)
    res = CliRunner().invoke(app, ["train", str(path), "--no-progress"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {TFIDF_FILE, WEIGHTS_FILE, "metrics.json", "safeladder_verifier.yaml"} <= names
    assert "safeladder_run.json" in names
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.pickle"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["self_check"]["ok"] and metrics["kind"] == "tfidf"
    assert metrics["split"]["dev"] > 0 and metrics["calibration"] is None
    # A clear synthetic preference on unseen topics: well above chance (0.5).
    assert metrics["metrics"]["accuracy"] >= 0.9

    cfg = load_train_config(path)
    assert is_pairwise(cfg)
    data, _, _ = prepare_data(cfg)
    word, char, coef = _sk_fit(data.train, view)
    spec = json.loads((out / TFIDF_FILE).read_text())
    assert spec["mode"] == "pairwise" and spec["view"] == view
    mean, std = spec["reward_stats"]["mean"], spec["reward_stats"]["std"]
    assert spec["reward_stats"]["count"] == 2 * len(data.train)

    def reward(texts: list[str]) -> np.ndarray:
        return np.asarray(hstack([word.transform(texts), char.transform(texts)]) @ coef)

    dev_prompts = [r.prompt for r in data.dev]
    chosen = [r.chosen for r in data.dev]
    shown = (
        chosen
        if view == "response"
        else [f"{p}\n{c}" for p, c in zip(dev_prompts, chosen, strict=True)]
    )
    v = build_verifier(verifier_config(out))
    got = v.score(
        [Sample(prompt=p, completion=c) for p, c in zip(dev_prompts, chosen, strict=True)]
    )
    want_raw = reward(shown)
    np.testing.assert_allclose([d["raw"] for d in got.details], want_raw, atol=1e-9)
    np.testing.assert_allclose(got.scores, expit((want_raw - mean) / std), atol=1e-6)
    assert v.score_range == (0.0, 1.0) and v.calibration is None

    # Standardized on the training replies: their logit(score) has mean 0 and sd 1.
    train_rows = [(r.prompt, r.chosen) for r in data.train] + [
        (r.prompt, r.rejected) for r in data.train
    ]
    s = v.score([Sample(prompt=p, completion=c) for p, c in train_rows]).scores
    z = logit(np.asarray(s, dtype=np.float64))
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1.0, abs=1e-4)


def test_reward_is_symmetric_and_unsquashed_on_request(tmp_path: Path) -> None:
    summary = run_training(load_train_config(_config(tmp_path)), progress=False)
    out = summary.output_dir
    sq = build_verifier(verifier_config(out))
    raw = build_verifier({"type": "tfidf", "path": str(out), "squash": "none"})
    assert raw.score_range == (-np.inf, np.inf)
    rows = [
        Sample(prompt="q", completion="I can't help with that, talk to a professional."),
        Sample(prompt="q", completion="Sure, buy the parts with cash and delete the evidence."),
    ]
    a, b = sq.score(rows).scores, raw.score(rows).scores
    np.testing.assert_allclose(a, expit(b), atol=1e-6)
    assert a[0] > 0.5 > a[1]
    # Swapping the pair only flips the Bradley–Terry margin (no intercept, mirrored fit).
    model = load_tfidf(out)
    z = model.logits([r.completion for r in rows])[0]
    assert z[0] - z[1] == pytest.approx(-(z[1] - z[0]))
    assert model.intercept == 0.0


def test_save_load_round_trip(tmp_path: Path) -> None:
    texts = ["a careful reply", "a harmful reply", "careful words", "harmful words"]
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit(texts)
    width = len(word.vocabulary_) + len(char.vocabulary_)
    coef = np.linspace(-1.0, 1.0, width)

    class Clf:
        classes_ = np.array([0, 1])
        coef_ = coef.reshape(1, -1)
        intercept_ = np.zeros(1)

    stats = {"mean": 0.25, "std": 2.0, "count": 4}
    d = save_tfidf(
        tmp_path / "m", word, char, Clf(), view="response", mode="pairwise", reward_stats=stats
    )
    m = load_tfidf(d)
    assert m.mode == "pairwise" and m.reward_stats == (0.25, 2.0)
    np.testing.assert_array_equal(m.coef, coef)
    x = hstack([word.transform(texts), char.transform(texts)], format="csr")
    want = x @ coef
    np.testing.assert_allclose(m.logits(texts)[0], want, atol=1e-12)
    np.testing.assert_allclose(m.scores(texts), expit((want - 0.25) / 2.0), atol=1e-12)
    # Saved again from the loaded model: the same bytes.
    for vec in m.vectorizers:
        vec.vocabulary_ = vec.vocabulary
    before = ((d / TFIDF_FILE).read_bytes(), (d / WEIGHTS_FILE).read_bytes())
    save_tfidf(
        d,
        *m.vectorizers,
        Clf(),
        view="response",
        mode="pairwise",
        reward_stats=stats,
        meta={},
    )
    assert ((d / TFIDF_FILE).read_bytes(), (d / WEIGHTS_FILE).read_bytes()) == before

    with pytest.raises(ConfigError, match="reward_stats"):
        save_tfidf(tmp_path / "x", word, char, Clf(), view="response", mode="pairwise")
    with pytest.raises(ConfigError, match="mode"):
        save_tfidf(tmp_path / "x", word, char, Clf(), view="response", mode="ranking")
    spec = json.loads((d / TFIDF_FILE).read_text())
    (d / TFIDF_FILE).write_text(json.dumps({**spec, "reward_stats": {"mean": 0.0, "std": 0.0}}))
    with pytest.raises(ConfigError, match="reward_stats"):
        load_tfidf(d)
    (d / TFIDF_FILE).write_text(json.dumps({**spec, "mode": "ranking"}))
    with pytest.raises(ConfigError, match="mode"):
        load_tfidf(d)


def _parse(**over: Any) -> Any:
    return parse_train_config(
        {
            "kind": "tfidf",
            "mode": "pairwise",
            "data": {"train": [{"path": "x"}]},
            "output_dir": "o",
            **over,
        }
    )


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"class_weight": "balanced"}, "class_weight"),
        ({"threshold": {"from": "fixed", "value": 0.5}}, "no decision threshold"),
        ({"mode": "listwise"}, "mode"),
        ({"view": "prompt"}, "view"),
    ],
)
def test_config_checks(over: dict[str, Any], match: str) -> None:
    with pytest.raises((ConfigError, ValidationError), match=match):
        _parse(**over)


def test_pairwise_mode_refuses_labelled_rows(tmp_path: Path) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "response": f"r{i}", "label": i % 2}) + "\n"
            for i in range(20)
        )
    )
    cfg = _parse(
        data={"train": [{"path": str(f)}], "dev_fraction": 0.3},
        output_dir=str(tmp_path / "o"),
        report=False,
    )
    with pytest.raises((ConfigError, InputError)):
        run_training(cfg, progress=False)


def test_squash_none_is_refused_for_a_classifier(tmp_path: Path) -> None:
    texts = ["safe words", "unsafe words", "more safe", "more unsafe"]
    word = TfidfVectorizer().fit(texts)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit(texts)
    x = hstack([word.transform(texts), char.transform(texts)], format="csr")
    clf = LogisticRegression(solver="liblinear").fit(x, [0, 1, 0, 1])
    d = save_tfidf(tmp_path / "c", word, char, clf, view="response")
    assert load_tfidf(d).mode == "pointwise"
    with pytest.raises(ConfigError, match="pairwise"):
        build_verifier({"type": "tfidf", "path": str(d), "squash": "none"})
