"""End-to-end training of the ``classifier`` kind on tiny random-init models (seconds each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder.errors import ConfigError
from safeladder.training.classifier import ClassifierTrainConfig, class_weight_vector, train
from safeladder.training.common import PointRecord, TrainData
from safeladder.types import Sample, SampleBatch
from safeladder.verifiers import build_verifier
from tests.helpers import read_shared, tiny_model_dir, tiny_train_loop


def _cfg(tmp_path: Path, model: dict[str, Any], **over: Any) -> ClassifierTrainConfig:
    loop = tiny_train_loop(64, over.pop("train", {}))
    return ClassifierTrainConfig.model_validate(
        {
            "model": model,
            "data": {"train": [{"path": "unused.jsonl"}]},
            "output_dir": str(tmp_path / "out"),
            "train": loop,
            **over,
        }
    )


def _gptfuzz(n: int) -> list[PointRecord]:
    """``n`` real rows, alternating label 1 (jailbroken) and 0, in file order."""
    raw = read_shared("gptfuzz_labeled_responses.jsonl.gz", limit=400)
    pos = [r for r in raw if r["label"] == 1]
    neg = [r for r in raw if r["label"] == 0]
    rows = [r for pair in zip(pos, neg, strict=False) for r in pair][:n]
    assert len(rows) == n
    return [
        PointRecord(
            row=i + 1,
            source="gptfuzz",
            prompt=r["prompt"][:200],
            response=r["response"][:300],
            label=int(r["label"]),
        )
        for i, r in enumerate(rows)
    ]


def _scores(out: Path, verifier: dict[str, Any], rows: list[PointRecord]) -> np.ndarray:
    # CPU float32, like the training predictions (the verifier's auto runtime picks bf16 on CUDA).
    v = build_verifier(
        {**verifier, "path": str(out), "calibration": "none", "runtime": {"device": "cpu"}}
    )
    got = v.score(
        SampleBatch.from_samples(Sample(prompt=r.prompt, completion=r.response or "") for r in rows)
    )
    return np.asarray(got.scores, dtype=np.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_single_label_with_class_weights_saves_a_verifier_that_matches(tmp_path: Path) -> None:
    rows = _gptfuzz(24)
    data = TrainData(train=rows[:16], dev=rows[16:], labels=["0", "1"])
    cfg = _cfg(tmp_path, {"path": str(tiny_model_dir("bert_classifier"))}, class_weights="auto")
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    assert res.dev_logits is not None and res.dev_logits.shape == (8, 2)
    assert res.dev_labels is not None and res.dev_labels.tolist() == [r.label for r in rows[16:]]
    y = np.array([r.label for r in rows[:16]])
    # Inverse frequency, written out: n / (2 * count_c).
    want = [16 / (2 * (y == 0).sum()), 16 / (2 * (y == 1).sum())]
    assert res.extra["class_weights"] == pytest.approx(want)
    assert res.verifier["good_label"] == "0"
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["id2label"] == {"0": "0", "1": "1"}
    assert not (out / "checkpoints").exists()
    # The verifier rebuilt from the directory scores P(good_label) = softmax(dev logits)[:, 0].
    scores = _scores(out, res.verifier, rows[16:])
    np.testing.assert_allclose(scores, _softmax(res.dev_logits)[:, 0], atol=1e-4)
    assert any("eval_loss" in h for h in res.history)


def _weights(*args: Any) -> list[float] | None:
    w = class_weight_vector(*args)
    return None if w is None else w.tolist()


def test_class_weight_vector_by_hand() -> None:
    y = np.array([0, 0, 0, 1])
    assert _weights("auto", y, 2, False) == pytest.approx([4 / 6, 4 / 2])
    assert _weights("none", y, 2, False) is None
    assert _weights([1.0, 3.0], y, 2, False) == [1.0, 3.0]
    with pytest.raises(ConfigError, match="class_weights"):
        class_weight_vector([1.0], y, 2, False)
    ym = np.array([[1, 0], [0, 0], [0, 0], [1, 0]])
    # pos_weight = negatives / positives; a label with no positives gets 1.
    assert _weights("auto", ym, 2, True) == [1.0, 1.0]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_multi_label_with_pos_weight(tmp_path: Path) -> None:
    base = _gptfuzz(20)
    # Three labels per row: jailbroken (the data's label), long response, mentions "sorry".
    rows = [
        PointRecord(
            row=r.row,
            source=r.source,
            prompt=r.prompt,
            response=r.response,
            label=(
                int(r.label == 1),
                int(len(r.response or "") > 150),
                int("sorry" in (r.response or "").lower()),
            ),
        )
        for r in base
    ]
    names = ["jailbroken", "long", "sorry"]
    data = TrainData(train=rows[:14], dev=rows[14:], labels=names)
    cfg = _cfg(
        tmp_path,
        {"path": str(tiny_model_dir("bert_multilabel"))},
        multi_label=True,
        class_weights="auto",
        train={"max_length": 128},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    y = np.array([r.label for r in rows[:14]], dtype=float)
    pos = y.sum(axis=0)
    assert res.extra["class_weights"] == pytest.approx(((14 - pos) / pos).tolist())
    assert res.dev_logits is not None and res.dev_logits.shape == (6, 3)
    assert res.dev_labels is not None and res.dev_labels.shape == (6, 3)
    assert res.verifier["multi_label"] is True
    saved = json.loads((out / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"
    assert list(saved["id2label"].values()) == names
    # label_polarity bad, combine min: the score is the worst label's 1 - p.
    want = (1.0 - _sigmoid(res.dev_logits)).min(axis=1)
    np.testing.assert_allclose(_scores(out, res.verifier, rows[14:]), want, atol=1e-4)


@pytest.mark.parametrize("save", ["merged", "adapter", "both"])
def test_lora_saves_merged_and_adapter_dirs_that_score_alike(tmp_path: Path, save: str) -> None:
    rows = _gptfuzz(16)
    data = TrainData(train=rows[:12], dev=rows[12:], labels=["0", "1"])
    base = tiny_model_dir("bert_classifier")
    cfg = _cfg(
        tmp_path,
        {"path": str(base)},
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        save=save,
        train={"learning_rate": 1e-2, "max_length": 128},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    assert res.dev_logits is not None
    want = _softmax(res.dev_logits)[:, 0]
    dirs = {"merged": [out], "adapter": [out], "both": [out, out / "adapter"]}[save]
    for d in dirs:
        is_adapter = (d / "adapter_config.json").is_file()
        assert is_adapter == (save == "adapter" or d.name == "adapter")
        if is_adapter:
            adapter_cfg = json.loads((d / "adapter_config.json").read_text())
            assert adapter_cfg["base_model_name_or_path"] == str(base.resolve())
            assert not (d / "model.safetensors").exists()
        np.testing.assert_allclose(_scores(d, res.verifier, rows[12:]), want, atol=1e-4)
    # The LoRA update changed the model: the base's own head scores differently.
    plain = _scores(base, {"type": "classifier", "good_label": 0}, rows[12:])
    assert np.abs(plain - want).max() > 1e-3


def test_adapter_of_a_random_init_base_is_refused(tmp_path: Path) -> None:
    tok = tiny_model_dir("bert_classifier")
    model = {
        "random_init": {
            "config": {
                "model_type": "bert",
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 32,
            },
            "tokenizer": str(tok),
        }
    }
    rows = _gptfuzz(8)
    cfg = _cfg(tmp_path, model, lora={"r": 2}, save="adapter", train={"max_steps": 1})
    with pytest.raises(ConfigError, match="random_init"):
        train(cfg, TrainData(train=rows, dev=[], labels=["0", "1"]), tmp_path / "out")


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    rows = _gptfuzz(20)
    data = TrainData(train=rows[:16], dev=rows[16:], labels=["0", "1"])
    model = {"path": str(tiny_model_dir("bert_classifier"))}
    out = tmp_path / "out"
    first = _cfg(tmp_path, model, keep_checkpoints=True, train={"max_steps": 4, "eval_steps": 2})
    res1 = train(first, data, out, progress=False)
    assert res1.extra["resumed_from"] is None
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["checkpoint-2", "checkpoint-4"]
    again = _cfg(tmp_path, model, resume=True, train={"max_steps": 6, "eval_steps": 2})
    res2 = train(again, data, out, progress=False)
    assert Path(res2.extra["resumed_from"]).name == "checkpoint-4"
    assert res2.extra["steps"] == 6
    assert not (out / "checkpoints").exists()

    # The resumed run starts from checkpoint-4's trainer state: its evaluations at steps 2 and
    # 4 are the first run's, and it goes on to step 6.
    def evals(h: list[dict[str, Any]]) -> dict[int, float]:
        return {e["step"]: e["eval_loss"] for e in h if "eval_loss" in e}

    assert evals(res1.history) == {2: evals(res2.history)[2], 4: evals(res2.history)[4]}
    assert sorted(evals(res2.history)) == [2, 4, 6]


def test_without_resume_stale_checkpoints_are_removed(tmp_path: Path) -> None:
    rows = _gptfuzz(12)
    data = TrainData(train=rows[:8], dev=rows[8:], labels=["0", "1"])
    model = {"path": str(tiny_model_dir("bert_classifier"))}
    out = tmp_path / "out"
    stale = out / "checkpoints" / "checkpoint-99"
    stale.mkdir(parents=True)
    res = train(_cfg(tmp_path, model, train={"max_steps": 2}), data, out, progress=False)
    assert res.extra["resumed_from"] is None and res.extra["steps"] == 2
    assert not stale.exists()


def test_early_stopping_stops_when_the_dev_metric_stalls(tmp_path: Path) -> None:
    rows = _gptfuzz(16)
    data = TrainData(train=rows[:12], dev=rows[12:], labels=["0", "1"])
    # A learning rate this small cannot move dev accuracy: the second evaluation is no better
    # than the first, and patience 1 stops there, long before max_steps.
    cfg = _cfg(
        tmp_path,
        {"path": str(tiny_model_dir("bert_classifier"))},
        metric_for_best_model="accuracy",
        train={
            "max_steps": 40,
            "eval_steps": 1,
            "early_stopping_patience": 1,
            "learning_rate": 1e-12,
        },
    )
    res = train(cfg, data, tmp_path / "out", progress=False)
    assert res.extra["steps"] == 2
    evals = [h for h in res.history if "eval_accuracy" in h]
    assert len(evals) == 2 and evals[0]["eval_accuracy"] == evals[1]["eval_accuracy"]


def _toy(n: int, offset: int = 0) -> list[PointRecord]:
    """Trivially separable rows: label 1 iff the response says ALPHA."""
    words = ["fox", "dog", "question", "problem", "answer", "step", "lazy", "brown"]
    out = []
    for i in range(n):
        k = i + offset
        label = k % 2
        filler = " ".join(words[(k + j) % len(words)] for j in range(3))
        out.append(
            PointRecord(
                row=k + 1,
                source="toy",
                prompt=f"Say something about {words[k % len(words)]}.",
                response=f"{filler} {'ALPHA' if label else 'BETA'} {filler}",
                label=label,
            )
        )
    return out


def test_a_tiny_model_learns_a_separable_toy_task(tmp_path: Path) -> None:
    data = TrainData(train=_toy(64), dev=_toy(16, offset=64), labels=["0", "1"])
    model = {
        "random_init": {
            "config": {
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "max_position_embeddings": 128,
            },
            "tokenizer": str(tiny_model_dir("bert_classifier")),
        }
    }
    cfg = _cfg(
        tmp_path,
        model,
        train={"max_steps": 48, "batch_size": 8, "learning_rate": 3e-3, "max_length": 48},
    )
    res = train(cfg, data, tmp_path / "out", progress=False)
    assert res.dev_logits is not None and res.dev_labels is not None
    acc = float((res.dev_logits.argmax(axis=1) == res.dev_labels).mean())
    assert acc >= 0.9, acc


def test_lora_adapter_on_the_packaged_minilm_reloads_through_packaged_base(
    tmp_path: Path,
) -> None:
    # The shipped safety classifier's shape: LoRA on the packaged MiniLM, adapter + head saved,
    # the base named packaged:all-MiniLM-L6-v2 so the output directory stays small and portable.
    rows = _gptfuzz(12)
    data = TrainData(train=rows[:8], dev=rows[8:], labels=["0", "1"])
    cfg = _cfg(
        tmp_path,
        {"packaged": "all-MiniLM-L6-v2"},
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        save="adapter",
        train={"max_steps": 2, "max_length": 64, "learning_rate": 1e-3},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "packaged:all-MiniLM-L6-v2"
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    assert size < 5_000_000  # the 91 MB base is not copied
    # Neither is its tokenizer (the runtime uses the packaged one), nor peft's model card.
    assert not (out / "tokenizer.json").exists() and not (out / "README.md").exists()
    assert res.dev_logits is not None
    np.testing.assert_allclose(
        _scores(out, res.verifier, rows[8:]), _softmax(res.dev_logits)[:, 0], atol=1e-4
    )


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_trains_on_cuda_in_bf16_and_reloads(tmp_path: Path) -> None:
    # bf16 mixed precision is the CUDA default; the saved weights stay float32, so a float32
    # verifier on the GPU reproduces the dev logits.
    rows = _gptfuzz(16)
    data = TrainData(train=rows[:12], dev=rows[12:], labels=["0", "1"])
    cfg = _cfg(
        tmp_path,
        {"path": str(tiny_model_dir("qwen2_classifier"))},
        lora={"r": 4},
        train={"device": "cuda", "max_length": 128},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    assert res.dev_logits is not None
    v = build_verifier(
        {
            **res.verifier,
            "path": str(out),
            "calibration": "none",
            "runtime": {"device": "cuda", "dtype": "float32"},
        }
    )
    got = v.score(
        SampleBatch.from_samples(
            Sample(prompt=r.prompt, completion=r.response or "") for r in rows[12:]
        )
    )
    np.testing.assert_allclose(got.scores, _softmax(res.dev_logits)[:, 0], atol=1e-4)
