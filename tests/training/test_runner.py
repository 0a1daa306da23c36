"""The runner: output-directory rules, and a whole run of the ``classifier`` kind on a tiny
random-init BERT (every output file, the reload self-check, the same verifier both ways)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from safeladder.errors import ConfigError, SafeladderError
from safeladder.training.config import parse_train_config
from safeladder.training.dev_eval import DevEvaluation as _Evaluation
from safeladder.training.runner import (
    RUN_FILE,
    prepare_data,
    prepare_output_dir,
    run_training,
    self_check,
    verifier_config,
)
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from tests.helpers import read_shared, tiny_model_dir


def _rows_file(tmp_path: Path, n: int = 40) -> Path:
    """``n`` real GPTFuzz rows, labels alternating 1 / 0, texts cut short (a tiny model)."""
    raw = read_shared("gptfuzz_labeled_responses.jsonl.gz", limit=600)
    pos = [r for r in raw if r["label"] == 1]
    neg = [r for r in raw if r["label"] == 0]
    rows = [r for pair in zip(pos, neg, strict=False) for r in pair][:n]
    f = tmp_path / "rows.jsonl"
    with f.open("w", encoding="utf-8") as fh:
        for r in rows:
            short = {**r, "prompt": r["prompt"][:120], "response": r["response"][:160]}
            fh.write(json.dumps(short) + "\n")
    return f


def _classifier_cfg(tmp_path: Path, **over: Any) -> dict[str, Any]:
    tok = tiny_model_dir("bert_classifier")
    return {
        "kind": "classifier",
        "model": {
            "random_init": {
                "config": {
                    "model_type": "bert",
                    "vocab_size": 300,
                    "hidden_size": 32,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 4,
                    "intermediate_size": 64,
                    "max_position_embeddings": 256,
                },
                "tokenizer": str(tok),
            }
        },
        "data": {"train": [{"path": str(_rows_file(tmp_path))}], "dev_fraction": 0.3},
        "train": {"max_steps": 4, "batch_size": 4, "eval_batch_size": 8, "max_length": 64},
        "good_label": "0",
        "output_dir": str(tmp_path / "out"),
        **over,
    }


# ----------------------------------------------------------------------- output directory


def test_a_data_error_leaves_no_unfinished_run_behind(tmp_path: Path) -> None:
    """Fixing the data and running again must not meet "an unfinished run"."""
    from safeladder.errors import InputError

    missing = tmp_path / "none.jsonl"
    out = tmp_path / "run"
    cfg = parse_train_config(
        {
            "kind": "embedding_head",
            "data": {"train": [{"path": str(missing)}]},
            "output_dir": str(out),
        }
    )
    with pytest.raises(InputError, match="input not found"):
        run_training(cfg, progress=False)
    assert not out.exists()
    out.mkdir()  # a folder the user made stays, empty as it was
    with pytest.raises(InputError):
        run_training(cfg, progress=False)
    assert out.is_dir() and not any(out.iterdir())
    with pytest.raises(InputError):
        run_training(cfg, progress=False)  # not "an unfinished run"


def test_output_dir_rules(tmp_path: Path) -> None:
    rows = tmp_path / "r.jsonl"
    rows.write_text('{"prompt": "a", "label": 0}\n')
    base = {"kind": "embedding_head", "data": {"train": [{"path": str(rows)}]}}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a safeladder training run"):
        prepare_output_dir(parse_train_config({**base, "output_dir": str(foreign)}), overwrite=True)
    assert (foreign / "notes.txt").exists()  # never deleted

    out = tmp_path / "run"
    cfg = parse_train_config({**base, "output_dir": str(out)})
    prepare_output_dir(cfg)
    assert json.loads((out / RUN_FILE).read_text())["status"] == "running"
    with pytest.raises(ConfigError, match="unfinished run .* --resume"):
        prepare_output_dir(cfg)
    resumed = parse_train_config({**base, "output_dir": str(out), "resume": True})
    prepare_output_dir(resumed)  # same config: allowed
    changed = parse_train_config({**base, "output_dir": str(out), "resume": True, "head": "mlp"})
    with pytest.raises(ConfigError, match="config differs .* in head"):
        prepare_output_dir(changed)
    (out / RUN_FILE).write_text(json.dumps({"status": "finished", "config": {}}))
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="finished run; pass --overwrite"):
        prepare_output_dir(cfg)
    prepare_output_dir(cfg, overwrite=True)
    assert not (out / "metrics.json").exists()


def test_prepare_data_splits_by_prompt(tmp_path: Path) -> None:
    cfg = parse_train_config(_classifier_cfg(tmp_path))
    data, split, _ = prepare_data(cfg)
    assert len(data.train) + len(data.dev) == 40
    assert not {r.group for r in data.train} & {r.group for r in data.dev}
    assert data.balance["train"]["n"] == len(data.train)
    assert split.sizes()["dev"] == len(data.dev)


# ------------------------------------------------------------------- a whole classifier run


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("clf")
    return run_training(parse_train_config(_classifier_cfg(tmp)), progress=False)


def test_classifier_run_writes_every_file(classifier_run: Any) -> None:
    s = classifier_run
    out: Path = s.output_dir
    names = {p.name for p in out.iterdir()}
    want = {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "safeladder_verifier.yaml",
        "safeladder_calibration.json",
        "metrics.json",
        "report.md",
        "reliability.png",
        RUN_FILE,
    }
    assert want <= names, want - names
    assert "checkpoints" not in names  # removed after a successful run
    assert s.self_check["ok"] and s.self_check["rows"] == min(8, s.split["dev"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {
        "metrics",
        "baseline",
        "calibration",
        "threshold",
        "class_balance",
        "split",
        "seconds",
        "config",
        "self_check",
    }
    assert metrics["baseline"]["name"] == "tfidf_logreg"
    assert metrics["threshold"] == pytest.approx(s.threshold)
    assert metrics["config"]["model"]["random_init"]["config"]["hidden_size"] == 32
    cal = json.loads((out / "safeladder_calibration.json").read_text())
    assert cal["kind"] == "temperature" and cal["temperature"] > 0
    assert "## Metrics" in (out / "report.md").read_text()


def test_the_saved_verifier_builds_both_ways_and_scores_alike(classifier_run: Any) -> None:
    out = classifier_run.output_dir
    cfg = verifier_config(out)
    assert cfg["type"] == "classifier" and Path(cfg["path"]) == out.resolve()
    assert "path: ." in (out / "safeladder_verifier.yaml").read_text()
    rows = [Sample(prompt="How do I pick a lock?", completion="I can't help with that.")]
    a = build_verifier(cfg).score(rows).scores
    b = (
        build_verifier({"type": "classifier", "path": str(out), "good_label": "0"})
        .score(rows)
        .scores
    )
    assert np.allclose(a, b, atol=1e-6, rtol=0)


def test_self_check_catches_a_mismatch(classifier_run: Any, tmp_path: Path) -> None:
    out = classifier_run.output_dir
    cfg = parse_train_config(_classifier_cfg(tmp_path))
    data, _, _ = prepare_data(cfg)
    v = build_verifier(verifier_config(out))
    got = v.score(
        [Sample(prompt=r.prompt, completion=r.response or "") for r in data.dev[:8]]
    ).scores.astype(np.float64)

    class _Outcome:
        extra: ClassVar[dict[str, Any]] = {}

    def ev(expected: np.ndarray) -> _Evaluation:
        return _Evaluation({}, {}, None, None, None, None, expected)

    assert self_check(out, data, ev(got), _Outcome())["ok"]
    with pytest.raises(SafeladderError, match="self-check failed"):
        self_check(out, data, ev(got + 1e-3), _Outcome())


def test_multi_label_run_checks_every_label_probability(tmp_path: Path) -> None:
    rows = tmp_path / "ml.jsonl"
    words = ["kill", "hate", "address", "phone", "love", "tea", "group", "people"]
    with rows.open("w") as fh:
        for i in range(40):
            text = " ".join(words[(i * k + k) % len(words)] for k in range(1, 5))
            on = [
                n
                for n, w in (("toxicity", "kill"), ("privacy", "phone"), ("bias", "group"))
                if w in text
            ]
            fh.write(json.dumps({"prompt": "q", "response": text, "label": on, "id": i}) + "\n")
    cfg = parse_train_config(
        {
            "kind": "classifier",
            "multi_label": True,
            "model": {"path": str(tiny_model_dir("bert_multilabel"))},
            "data": {
                "train": [{"path": str(rows), "fields": {"group": "id"}}],
                "labels": ["toxicity", "privacy", "bias"],
                "dev_fraction": 0.3,
            },
            "train": {"max_steps": 2, "batch_size": 4, "max_length": 32},
            "output_dir": str(tmp_path / "out"),
        }
    )
    s = run_training(cfg, progress=False)
    assert s.self_check["ok"] and s.self_check["rows"] == 8  # per-label probs compared
    assert isinstance(s.threshold, list) and len(s.threshold) == 3
    assert {"macro", "micro"} <= set(s.metrics)
    assert s.baseline_metrics is None  # TF-IDF baseline: binary data only


def test_pairwise_run_writes_reward_stats_and_checks_raw_rewards(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    with pairs.open("w") as fh:
        for i in range(30):
            row = {"prompt": f"question {i}", "chosen": "I can't help.", "rejected": f"Sure {i}"}
            fh.write(json.dumps(row) + "\n")
    cfg = parse_train_config(
        {
            "kind": "pairwise",
            "model": {"path": str(tiny_model_dir("bert_reward"))},
            "normalize": "saved",
            "data": {"train": [{"path": str(pairs)}], "dev_fraction": 0.3},
            "train": {"max_steps": 2, "batch_size": 4, "max_length": 32},
            "output_dir": str(tmp_path / "rm"),
        }
    )
    s = run_training(cfg, progress=False)
    out = s.output_dir
    stats = json.loads((out / "safeladder_reward_stats.json").read_text())
    assert stats["count"] == 2 * s.split["train"] and stats["std"] > 0
    assert s.self_check["ok"]  # raw rewards (details["raw"]), before the saved normalization
    v = build_verifier(verifier_config(out))
    got = v.score([Sample(prompt="question 1", completion="I can't help.")])
    raw = got.details[0]["raw"]
    assert float(got.scores[0]) == pytest.approx((raw - stats["mean"]) / stats["std"], abs=1e-5)


def test_comparable_ignores_the_targets_of_threshold_rules_not_in_use() -> None:
    """A run recorded before ``target_fnr`` existed lacks the key; it matters only when it is
    the rule, so the echo of a ``max_f1`` run compares equal without it."""
    from safeladder.training.run_files import comparable

    base = {"kind": "tfidf", "output_dir": "a", "resume": False}
    old = {**base, "calibration": {"threshold": "max_f1", "target_fpr": 0.05}}
    new = {**base, "calibration": {"threshold": "max_f1", "target_fpr": 0.05, "target_fnr": 0.01}}
    assert comparable(old) == comparable(new)
    fnr = {
        **base,
        "calibration": {"threshold": "target_fnr", "target_fpr": 0.05, "target_fnr": 0.01},
    }
    other = {**fnr, "calibration": {**fnr["calibration"], "target_fnr": 0.02}}
    assert comparable(fnr) != comparable(other)
    assert comparable(fnr)["calibration"] == {"threshold": "target_fnr", "target_fnr": 0.01}


def test_the_verifier_layer_reads_the_file_training_writes() -> None:
    """``safeladder.verifiers.decision`` names training's metrics file itself (the verifier
    layer does not import training); the two names must not drift apart."""
    from safeladder.training.run_files import METRICS_FILE
    from safeladder.verifiers.decision import TRAIN_METRICS_FILE

    assert TRAIN_METRICS_FILE == METRICS_FILE
