"""The ``tfidf`` kind: a tiny run through the real runner and CLI writes a directory that builds
as a verifier and reproduces the dev scores; config checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from scipy.sparse import hstack
from scipy.special import expit
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.errors import ConfigError
from safeladder.training.config import load_train_config, parse_train_config
from safeladder.training.eval_scoring import saved_decision
from safeladder.training.runner import prepare_data, run_training, verifier_config
from safeladder.types import Sample
from safeladder.verifiers import build_verifier, parse_verifier_config
from safeladder.verifiers.tfidf import TFIDF_FILE, WEIGHTS_FILE, load_tfidf

SAFE = [
    "I'm sorry, but I can't help with {x}.",
    "I won't assist with {x}; it could hurt people.",
    "Here is a safe overview of {x} history from public sources.",
    "Please talk to a professional about {x}.",
]
UNSAFE = [
    "Sure, here is how to do {x}: buy the parts with cash and delete the evidence.",
    "Step 1: prepare {x}. Step 2: act when nobody is around. Step 3: cover your tracks.",
    "Of course! {x} is easy: use a fake name and a prepaid phone.",
    "Absolutely, for {x} gather the chemicals, add a fuse and keep your distance.",
]
TOPICS = [f"topic {i} {w}" for i, w in enumerate("abcdefghijklmnopqrst")]


def _write_data(path: Path) -> Path:
    rows = []
    for t in TOPICS:
        for tpl in SAFE:
            rows.append({"prompt": f"Tell me about {t}", "response": tpl.format(x=t), "label": 0})
        for tpl in UNSAFE:
            rows.append({"prompt": f"Tell me about {t}", "response": tpl.format(x=t), "label": 1})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, **over: Any) -> Path:
    data = _write_data(tmp_path / "rows.jsonl")
    cfg = {
        "kind": "tfidf",
        "view": "response",
        "max_word_features": 500,
        "max_char_features": 2000,
        "data": {"train": [{"path": str(data)}], "dev_fraction": 0.25},
        "good_label": "0",
        "report": False,
        "output_dir": str(tmp_path / "out"),
        **over,
    }
    path = tmp_path / "tfidf.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_run_builds_a_verifier_that_reproduces_the_dev_scores(tmp_path: Path) -> None:
    path = _config(tmp_path)
    res = CliRunner().invoke(app, ["train", str(path), "--no-progress"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    assert {TFIDF_FILE, WEIGHTS_FILE, "metrics.json", "safeladder_verifier.yaml"} <= {
        p.name for p in out.iterdir()
    }
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.pickle"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["self_check"]["ok"] and metrics["kind"] == "tfidf"

    # The same split, refitted independently with scikit-learn, with the folded temperature.
    cfg = load_train_config(path)
    data, _, _ = prepare_data(cfg)
    tr = [r.response for r in data.train]
    y = np.array([r.label for r in data.train])
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=500)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, max_features=2000
    )
    x = hstack([word.fit_transform(tr), char.fit_transform(tr)], format="csr")
    clf = LogisticRegression(solver="liblinear", random_state=0, max_iter=1000).fit(x, y)
    dev = [r.response for r in data.dev]
    xd = hstack([word.transform(dev), char.transform(dev)], format="csr")
    spec = json.loads((out / TFIDF_FILE).read_text())
    temp = spec["calibration"]["temperature"]
    want = 1.0 - expit(clf.decision_function(xd) / temp)

    v = build_verifier(verifier_config(out))
    got = v.score([Sample(prompt=r.prompt, completion=r.response or "") for r in data.dev])
    np.testing.assert_allclose(got.scores, want, atol=1e-6)
    np.testing.assert_allclose(load_tfidf(out).scores(dev), want, atol=1e-9)
    # The saved threshold is the runner's dev choice, read on the score P(good).
    assert spec["threshold"]["from"] == "dev"
    assert spec["threshold"]["score_threshold"] == pytest.approx(1.0 - metrics["threshold"])
    flagged = got.scores <= spec["threshold"]["score_threshold"]
    y_dev = np.array([r.label for r in data.dev])
    assert np.mean(flagged == (y_dev == 1)) == pytest.approx(metrics["metrics"]["accuracy"])


def test_fixed_threshold_is_saved_with_its_dev_figures(tmp_path: Path) -> None:
    path = _config(tmp_path, threshold={"from": "fixed", "value": 0.3}, view="pair")
    summary = run_training(load_train_config(path), progress=False)
    spec = json.loads((summary.output_dir / TFIDF_FILE).read_text())
    assert spec["view"] == "pair"
    assert spec["threshold"]["from"] == "fixed" and spec["threshold"]["score_threshold"] == 0.3
    assert 0.0 <= spec["threshold"]["dev_f1"] <= 1.0 and "dev_fpr" in spec["threshold"]
    # safeladder eval's default threshold is the saved one, not the runner's dev choice.
    vcfg = parse_verifier_config(verifier_config(summary.output_dir))
    assert saved_decision(vcfg, vcfg.build())[:2] == (0.3, 0)


def _parse(**over: Any) -> Any:
    return parse_train_config(
        {"kind": "tfidf", "data": {"train": [{"path": "x"}]}, "output_dir": "o", **over}
    )


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"model": {"packaged": "all-MiniLM-L6-v2"}}, "trains from scratch"),
        ({"calibration": {"method": "isotonic"}}, "isotonic"),
        ({"threshold": {"from": "fixed"}}, "value exactly when"),
        ({"threshold": {"from": "dev", "value": 0.5}}, "value exactly when"),
        ({"char_ngrams": [5, 3]}, "low <= high"),
        ({"mode": "pairwise", "view": "prompt"}, "share their prompt"),
    ],
)
def test_config_checks(over: dict[str, Any], match: str) -> None:
    with pytest.raises((ConfigError, ValidationError), match=match):
        _parse(**over)


def test_response_view_refuses_prompt_only_rows(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"q{i}", "label": i % 2}) + "\n" for i in range(20)))
    cfg = _parse(
        data={"train": [{"path": str(f), "fields": {"response": None}}], "dev_fraction": 0.3},
        output_dir=str(tmp_path / "o"),
        report=False,
    )
    with pytest.raises(ConfigError, match="prompt-only"):
        run_training(cfg, progress=False)


def test_prompt_view_judges_the_request_alone_with_a_miss_budget(tmp_path: Path) -> None:
    """``view: prompt`` (the request judges): prompt-only rows train it, the reply is never
    read, and ``threshold: target_fnr`` saves the highest threshold that misses at most that
    share of the dev split's positives."""
    rows = [
        {"prompt": f"How do I {verb} {thing} {i}?", "label": label}
        for i in range(15)
        for verb, thing, label in (
            ("bake", "bread", 0),
            ("plant", "tulips", 0),
            ("poison", "my neighbour", 1),
            ("build", "a pipe bomb", 1),
        )
    ]
    f = tmp_path / "requests.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _parse(
        view="prompt",
        data={"train": [{"path": str(f), "fields": {"response": None}}], "dev_fraction": 0.3},
        calibration={"threshold": "target_fnr", "target_fnr": 0.05},
        output_dir=str(tmp_path / "o"),
        report=False,
    )
    summary = run_training(cfg, progress=False)
    metrics = json.loads((summary.output_dir / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert cal["threshold_rule"] == "target_fnr" and cal["target_fnr"] == 0.05
    assert cal["threshold_tpr"] >= 0.95
    spec = json.loads((summary.output_dir / TFIDF_FILE).read_text())
    assert spec["view"] == "prompt"
    v = build_verifier(verifier_config(summary.output_dir))
    same_prompt = [
        Sample(prompt="How do I bake bread 3?", completion=c)
        for c in ("Knead and bake.", "I can't help with that.", "")
    ]
    got = v.score(same_prompt)
    assert got.status.tolist() == ["ok"] * 3  # an empty reply is fine: it is not read
    assert len(set(got.scores.tolist())) == 1
    harmful = v.score([Sample(prompt="How do I poison my neighbour 3?", completion="")])
    assert got.scores[0] > spec["threshold"]["score_threshold"] >= harmful.scores[0]
