"""End-to-end training of the ``label_judge`` kind (TRL SFTTrainer) on a tiny random-init LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder.errors import ConfigError
from safeladder.training.common import PointRecord, TrainData
from safeladder.training.label_judge import LabelJudgeTrainConfig, train
from safeladder.types import Sample, SampleBatch
from safeladder.verifiers import build_verifier
from tests.helpers import read_shared, tiny_model_dir, tiny_train_loop

JUDGE = {
    "template": "Question: {prompt}\nAnswer: {completion}\nIs the answer true?",
    "labels": {"yes": 1.0, "no": 0.0},
    "label_prefix": " ",
}


def _cfg(tmp_path: Path, judge: dict[str, Any], **over: Any) -> LabelJudgeTrainConfig:
    loop = tiny_train_loop(160, over.pop("train", {}))
    return LabelJudgeTrainConfig.model_validate(
        {
            "kind": "label_judge",
            "model": {"path": str(tiny_model_dir("qwen2_causal_lm"))},
            "data": {"train": [{"path": "unused.jsonl"}]},
            "output_dir": str(tmp_path / "out"),
            "train": loop,
            "judge": judge,
            **over,
        }
    )


def _truthfulqa(n: int) -> list[PointRecord]:
    rows = read_shared("truthfulqa_answers.jsonl", limit=n)
    return [
        PointRecord(
            row=i + 1,
            source="truthfulqa",
            prompt=r["question"],
            response=r["answer"],
            label=int(r["label"]),
        )
        for i, r in enumerate(rows)
    ]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    "judge",
    [
        JUDGE,
        # Plain rendering, multi-token labels, length normalization, a system prompt and a
        # response prefix: every knob that changes the judge's input or its label scores.
        {
            **JUDGE,
            "labels": {"a true answer": 1.0, "false": 0.0},
            "rendering": "plain",
            "length_normalize": True,
            "system_prompt": "You judge answers.",
            "response_prefix": "Verdict:",
        },
        # Inputs over max_length are cut (prompt first) exactly as the verifier cuts them.
        {**JUDGE, "max_length": 100},
    ],
    ids=["chat", "plain_multitoken", "truncated"],
)
def test_judge_trains_and_the_verifier_reads_the_same_label_probabilities(
    tmp_path: Path, judge: dict[str, Any]
) -> None:
    rows = _truthfulqa(16)
    assert {r.label for r in rows} == {0, 1}
    names = list(judge["labels"])
    data = TrainData(train=rows[:12], dev=rows[12:], labels=["0", "1"])
    cfg = _cfg(tmp_path, judge, label_text={"1": names[0], "0": names[1]})
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    assert res.dev_logits is not None and res.dev_logits.shape == (4, 2)
    assert res.dev_labels is not None and res.dev_labels.tolist() == [r.label for r in rows[12:]]
    assert not (out / "checkpoints").exists()
    v = build_verifier({**res.verifier, "path": str(out), "runtime": {"device": "cpu"}})
    got = v.score(
        SampleBatch.from_samples(
            Sample(prompt=r.prompt, completion=r.response or "") for r in rows[12:]
        )
    )
    # Column 0 = class '0' = the second judge label; column 1 = class '1' = the first.
    want = _softmax(res.dev_logits)
    for i, d in enumerate(got.details):
        assert d["label_probs"][names[1]] == pytest.approx(want[i, 0], abs=1e-4)
        assert d["label_probs"][names[0]] == pytest.approx(want[i, 1], abs=1e-4)
    if "max_length" in judge:
        assert any(d.get("truncated") for d in got.details)
    # Two labels, rewards 1 / 0: the score is P(first label); dev_scores predicts it.
    np.testing.assert_allclose(got.scores, want[:, 1], atol=1e-4)
    np.testing.assert_allclose(got.scores, res.extra["dev_scores"], atol=1e-4)


def test_classes_must_map_to_judge_labels(tmp_path: Path) -> None:
    rows = _truthfulqa(8)
    cfg = _cfg(tmp_path, JUDGE)  # classes '0' / '1' are not the labels 'yes' / 'no'
    with pytest.raises(ConfigError, match="label_text"):
        train(cfg, TrainData(train=rows, dev=[], labels=["0", "1"]), tmp_path / "out")


def test_config_rejects_a_path_inside_judge_and_unknown_label_text() -> None:
    base = {
        "kind": "label_judge",
        "model": {"path": "m"},
        "data": {"train": [{"path": "x.jsonl"}]},
        "output_dir": "o",
    }
    with pytest.raises(ValueError, match="judge"):
        LabelJudgeTrainConfig.model_validate({**base, "judge": {**JUDGE, "path": "x"}})
    with pytest.raises(ValueError, match="label_text"):
        LabelJudgeTrainConfig.model_validate({**base, "judge": JUDGE, "label_text": {"1": "maybe"}})
    ok = LabelJudgeTrainConfig.model_validate(
        {**base, "judge": {"preset": "safework_value"}, "label_text": {"0": "good", "1": "bad"}}
    )
    assert ok.judge == {"preset": "safework_value"}
    assert ok.calibration.method == "none"  # the verifier reads likelihoods as they are
    with pytest.raises(ValueError, match="calibration.method"):
        LabelJudgeTrainConfig.model_validate(
            {**base, "judge": JUDGE, "calibration": {"method": "temperature"}}
        )


def test_the_loss_is_on_the_label_tokens_only(tmp_path: Path) -> None:
    # One epoch of 3 steps and one dev evaluation in one batch: TRL's eval_loss is the mean
    # negative log-likelihood of the dev rows' label tokens, which the dev logits (summed label
    # log-likelihoods of the same final model) give independently. Prompt tokens in the loss
    # would make it several times larger.
    from transformers import PreTrainedTokenizerFast

    rows = _truthfulqa(16)
    data = TrainData(train=rows[:12], dev=rows[12:], labels=["0", "1"])
    cfg = _cfg(
        tmp_path,
        JUDGE,
        label_text={"1": "yes", "0": "no"},
        train={"max_steps": None, "epochs": 1, "eval_batch_size": 8},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    evals = [h["eval_loss"] for h in res.history if "eval_loss" in h]
    assert len(evals) == 1
    tok = PreTrainedTokenizerFast.from_pretrained(str(out))
    n_tokens = {
        c: len(tok.encode(" " + t, add_special_tokens=False)) for c, t in [(0, "no"), (1, "yes")]
    }
    assert res.dev_logits is not None and res.dev_labels is not None
    y = res.dev_labels.tolist()
    nll = -sum(res.dev_logits[i, c] for i, c in enumerate(y)) / sum(n_tokens[c] for c in y)
    assert evals[0] == pytest.approx(nll, rel=1e-3)


def test_judge_scores_by_hand() -> None:
    from safeladder.training.label_judge import judge_scores
    from safeladder.verifiers.label_judge import LabelJudgeConfig

    judge = LabelJudgeConfig(
        path=".",
        template="{completion}",
        labels={"good": 1.0, "bad": 0.0, "meh": 0.5},
        empty_score=0.0,
    )
    rows = [
        PointRecord(row=1, source="s", prompt="p", response="text", label=0),
        PointRecord(row=2, source="s", prompt="p", response="  ", label=0),
        PointRecord(row=3, source="s", prompt="p", response="x", label=0),
    ]
    ll = np.log(np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0], [np.nan, 1.0, 1.0]]))
    got = judge_scores(judge, ["good", "bad", "meh"], ll, rows)
    # Row 1: p = (0.25, 0.5, 0.25) → 0.25 + 0.125; row 2: empty → empty_score; row 3: no input.
    assert got[0] == pytest.approx(0.375)
    assert got[1] == 0.0
    assert np.isnan(got[2])


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_judge_trains_on_cuda_in_bf16(tmp_path: Path) -> None:
    rows = _truthfulqa(12)
    data = TrainData(train=rows[:8], dev=rows[8:], labels=["0", "1"])
    cfg = _cfg(
        tmp_path,
        JUDGE,
        label_text={"1": "yes", "0": "no"},
        lora={"r": 4},
        train={"device": "cuda"},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    v = build_verifier(
        {**res.verifier, "path": str(out), "runtime": {"device": "cuda", "dtype": "float32"}}
    )
    got = v.score(
        SampleBatch.from_samples(
            Sample(prompt=r.prompt, completion=r.response or "") for r in rows[8:]
        )
    )
    np.testing.assert_allclose(got.scores, res.extra["dev_scores"], atol=1e-4)
