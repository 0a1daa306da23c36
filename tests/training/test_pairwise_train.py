"""End-to-end training of the ``pairwise`` kind (TRL RewardTrainer) on tiny random-init models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder.training.common import PairRecord, TrainData
from safeladder.training.pairwise import PairwiseTrainConfig, train
from safeladder.types import Sample, SampleBatch
from safeladder.verifiers import build_verifier
from tests.helpers import read_shared, tiny_model_dir, tiny_train_loop


def _cfg(tmp_path: Path, model: dict[str, Any], **over: Any) -> PairwiseTrainConfig:
    loop = tiny_train_loop(96, over.pop("train", {}))
    return PairwiseTrainConfig.model_validate(
        {
            "kind": "pairwise",
            "model": model,
            "data": {"train": [{"path": "unused.jsonl"}]},
            "output_dir": str(tmp_path / "out"),
            "train": loop,
            **over,
        }
    )


def _hh(n: int) -> list[PairRecord]:
    rows = read_shared("hh_rlhf_harmless_pref.jsonl", limit=n)
    return [
        PairRecord(
            row=i + 1,
            source="hh",
            prompt=r["prompt"][-200:],
            chosen=r["chosen"][:200],
            rejected=r["rejected"][:200],
        )
        for i, r in enumerate(rows)
    ]


def _rewards(out: Path, verifier: dict[str, Any], prompts: list[str], texts: list[str]) -> Any:
    # CPU float32, like the training predictions (the verifier's auto runtime picks bf16 on CUDA).
    v = build_verifier({**verifier, "path": str(out), "runtime": {"device": "cpu"}})
    got = v.score(
        SampleBatch.from_samples(
            Sample(prompt=p, completion=t) for p, t in zip(prompts, texts, strict=True)
        )
    )
    return np.asarray(got.scores, dtype=np.float64)


@pytest.mark.parametrize("kind", ["qwen2_reward", "bert_reward"])
def test_reward_model_trains_and_reloads_with_the_same_rewards(tmp_path: Path, kind: str) -> None:
    # BERT tokenizers have no eos_token for TRL to append: pre-tokenized pairs avoid that path.
    rows = _hh(16)
    data = TrainData(train=rows[:12], dev=rows[12:])
    out = tmp_path / "out"
    res = train(_cfg(tmp_path, {"path": str(tiny_model_dir(kind))}), data, out, progress=False)
    assert res.dev_chosen is not None and res.dev_rejected is not None
    assert res.dev_chosen.shape == res.dev_rejected.shape == (4,)
    assert res.train_rewards is not None and res.train_rewards.shape == (24,)  # 12 pairs x 2
    assert res.verifier["type"] == "reward_model"
    assert (out / "config.json").is_file() and not (out / "checkpoints").exists()
    prompts = [r.prompt for r in rows[12:]]
    np.testing.assert_allclose(
        _rewards(out, res.verifier, prompts, [r.chosen for r in rows[12:]]),
        res.dev_chosen,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        _rewards(out, res.verifier, prompts, [r.rejected for r in rows[12:]]),
        res.dev_rejected,
        atol=1e-4,
    )


def _toy_pairs(n: int, offset: int = 0) -> list[PairRecord]:
    """Chosen says ALPHA, rejected says BETA, around the same filler words."""
    words = ["fox", "dog", "question", "problem", "answer", "step", "lazy", "brown"]
    out = []
    for i in range(n):
        k = i + offset
        filler = " ".join(words[(k + j) % len(words)] for j in range(3))
        out.append(
            PairRecord(
                row=k + 1,
                source="toy",
                prompt=f"Say something about {words[k % len(words)]}.",
                chosen=f"{filler} ALPHA",
                rejected=f"{filler} BETA",
                margin=1.0 if k % 2 else None,
            )
        )
    return out


def _random_bert() -> dict[str, Any]:
    return {
        "random_init": {
            "config": {
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "max_position_embeddings": 128,
            },
            "tokenizer": str(tiny_model_dir("bert_reward")),
        }
    }


def test_a_tiny_reward_model_learns_a_separable_preference(tmp_path: Path) -> None:
    data = TrainData(train=_toy_pairs(48), dev=_toy_pairs(16, offset=48))
    cfg = _cfg(
        tmp_path,
        _random_bert(),
        train={"max_steps": 36, "batch_size": 8, "learning_rate": 3e-3, "max_length": 48},
    )
    res = train(cfg, data, tmp_path / "out", progress=False)
    assert res.extra["margin"] is True  # some pairs carry a margin
    assert res.dev_chosen is not None and res.dev_rejected is not None
    assert float((res.dev_chosen > res.dev_rejected).mean()) >= 0.9


def test_margin_and_reward_centering_change_the_loss(tmp_path: Path) -> None:
    data = TrainData(train=_toy_pairs(24), dev=_toy_pairs(8, offset=24))
    loop = {"max_steps": 12, "batch_size": 8, "learning_rate": 3e-3, "max_length": 48}

    def run(name: str, **over: Any) -> Any:
        cfg = _cfg(tmp_path, _random_bert(), train=loop, **over)
        return train(cfg, data, tmp_path / name, progress=False)

    plain = run("plain", use_margin=False)
    margin = run("margin")
    centred = run("centred", use_margin=False, center_rewards_coefficient=1.0)
    assert plain.extra["margin"] is False and margin.extra["margin"] is True
    assert plain.dev_chosen is not None and margin.dev_chosen is not None
    assert np.abs(plain.dev_chosen - margin.dev_chosen).max() > 1e-4
    # The centering penalty coef * (r_c + r_r)^2 keeps the rewards nearer to 0 on average.
    assert plain.train_rewards is not None and centred.train_rewards is not None
    assert abs(centred.train_rewards.mean()) < abs(plain.train_rewards.mean())


def test_lora_reward_model_adapter_reloads(tmp_path: Path) -> None:
    rows = _hh(12)
    data = TrainData(train=rows[:8], dev=rows[8:])
    base = tiny_model_dir("qwen2_reward")
    cfg = _cfg(
        tmp_path,
        {"path": str(base)},
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        save="adapter",
        normalize="saved",
        train={"learning_rate": 1e-2},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    assert (out / "adapter_config.json").is_file()
    assert res.verifier["normalize"] == "saved"
    # normalize: saved reads the stats the runner writes; raw rewards without them.
    raw = {k: v for k, v in res.verifier.items() if k != "normalize"}
    assert res.dev_chosen is not None
    np.testing.assert_allclose(
        _rewards(out, raw, [r.prompt for r in rows[8:]], [r.chosen for r in rows[8:]]),
        res.dev_chosen,
        atol=1e-4,
    )


def test_non_pairs_are_refused(tmp_path: Path) -> None:
    from safeladder.errors import InputError
    from safeladder.training.common import PointRecord

    bad = PointRecord(row=3, source="x.jsonl", prompt="p", response="r", label=0)
    cfg = _cfg(tmp_path, {"path": str(tiny_model_dir("bert_reward"))})
    with pytest.raises(InputError, match="x.jsonl:3"):
        train(cfg, TrainData(train=[bad], dev=[]), tmp_path / "out", progress=False)


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_reward_model_trains_on_cuda_in_bf16(tmp_path: Path) -> None:
    rows = _hh(12)
    data = TrainData(train=rows[:8], dev=rows[8:])
    cfg = _cfg(
        tmp_path,
        {"path": str(tiny_model_dir("qwen2_reward"))},
        center_rewards_coefficient=0.01,
        train={"device": "cuda"},
    )
    out = tmp_path / "out"
    res = train(cfg, data, out, progress=False)
    assert res.dev_chosen is not None
    v = build_verifier(
        {**res.verifier, "path": str(out), "runtime": {"device": "cuda", "dtype": "float32"}}
    )
    got = v.score(
        SampleBatch.from_samples(Sample(prompt=r.prompt, completion=r.chosen) for r in rows[8:])
    )
    np.testing.assert_allclose(got.scores, res.dev_chosen, atol=1e-4)
