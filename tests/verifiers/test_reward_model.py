"""``reward_model``: the raw scalar head, normalization, sigmoid squash — vs plain forwards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.verifiers.reward_model import RewardModelConfig
from tests.helpers import assert_batch_equals_rows, tiny_model_dir

torch.set_num_threads(1)


def rm(**kw: Any) -> RewardModelConfig:
    """``RewardModelConfig`` on CPU fp32 unless a test says otherwise (``auto`` would pick a GPU)."""
    kw["runtime"] = {"device": "cpu", **kw.get("runtime", {})}
    return RewardModelConfig(**kw)


SAMPLES = [
    Sample(prompt="Hi", completion="ok"),
    Sample(prompt="Explain tides. ", completion="The moon pulls the oceans. " * 12),
    Sample(prompt="x", completion="I'm sorry, but I can't help with that."),
    Sample(prompt=[{"role": "user", "content": "Write a poem."}], completion="Roses are red " * 25),
    Sample(prompt="Hi", completion="ok"),
    Sample(prompt="", completion="b"),
]


def plain_forward_rewards(model_dir: Path, samples: list[Sample], chat: bool) -> np.ndarray:
    """The head output of one un-padded forward per sample (the expectation)."""
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    out = []
    for s in samples:
        msgs = [{"role": "user", "content": s.prompt}] if isinstance(s.prompt, str) else s.prompt
        if chat:
            text = tok.apply_chat_template(
                [*msgs, {"role": "assistant", "content": s.completion}], tokenize=False
            )
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok("\n".join(m["content"] for m in msgs) + s.completion)["input_ids"]
        with torch.no_grad():
            out.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
    return np.array(out)


@pytest.mark.parametrize(("kind", "chat"), [("bert_reward", False), ("qwen2_reward", True)])
def test_raw_head_output_equals_one_at_a_time_forwards(kind: str, chat: bool) -> None:
    d = tiny_model_dir(kind)
    v = rm(path=str(d), runtime={"device": "cpu", "max_tokens_per_batch": 300}).build()
    want = plain_forward_rewards(d, SAMPLES, chat)
    got = v.score(SAMPLES)
    assert np.abs(got.scores - want).max() < 1e-4 and np.ptp(want) > 0.01
    assert [d_["raw"] for d_ in got.details] == pytest.approx(want.tolist(), abs=1e-4)
    perm = np.random.default_rng(0).permutation(len(SAMPLES))
    assert (
        np.abs(v.score(SampleBatch.from_samples(SAMPLES).take(perm)).scores - want[perm]).max()
        < 1e-4
    )
    assert_batch_equals_rows(v, SAMPLES, atol=1e-5)
    assert v.score_range == (-np.inf, np.inf)


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    return plain_forward_rewards(tiny_model_dir("qwen2_reward"), SAMPLES, chat=True)


def test_normalize_and_squash(raw) -> None:  # type: ignore[no-untyped-def]
    d = str(tiny_model_dir("qwen2_reward"))
    z = rm(path=d, normalize={"mean": 0.5, "std": 2.0}).build()
    assert np.abs(z.score(SAMPLES).scores - (raw - 0.5) / 2.0).max() < 1e-4
    s = rm(path=d, normalize={"mean": 0.5, "std": 2.0}, squash="sigmoid").build()
    want = 1.0 / (1.0 + np.exp(-(raw - 0.5) / 2.0))
    assert np.abs(s.score(SAMPLES).scores - want).max() < 1e-5
    assert s.score_range == (0.0, 1.0)
    plain_sig = rm(path=d, squash="sigmoid").build()
    assert np.abs(plain_sig.score(SAMPLES).scores - 1.0 / (1.0 + np.exp(-raw))).max() < 1e-5


def test_saved_stats(tmp_path: Path, raw) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "rm"
    shutil.copytree(tiny_model_dir("qwen2_reward"), d)
    with pytest.raises(ConfigError, match="safeladder_reward_stats.json does not exist"):
        rm(path=str(d), normalize="saved").build()
    (d / "safeladder_reward_stats.json").write_text(
        json.dumps({"mean": -1.0, "std": 4.0, "count": 10})
    )
    v = rm(path=str(d), normalize="saved").build()
    assert np.abs(v.score(SAMPLES).scores - (raw + 1.0) / 4.0).max() < 1e-4
    raw_v = rm(path=str(d)).build()  # the file is only read when asked for
    assert np.abs(raw_v.score(SAMPLES).scores - raw).max() < 1e-4
    (d / "safeladder_reward_stats.json").write_text(json.dumps({"mean": 0.0, "std": 0.0}))
    with pytest.raises(ConfigError, match="std"):
        rm(path=str(d), normalize="saved").build()


def test_config_validation() -> None:
    d = str(tiny_model_dir("qwen2_reward"))
    with pytest.raises(ValidationError, match="std"):
        rm(path=d, normalize={"mean": 0.0, "std": 0.0})
    with pytest.raises(ValidationError):
        rm(path=d, squash="tanh")  # type: ignore[arg-type]


def test_multi_label_head_is_rejected() -> None:
    path = str(tiny_model_dir("bert_classifier"))
    with pytest.raises(ConfigError, match="2-label head; a reward model needs num_labels=1"):
        rm(path=path).build()


def test_identical_rows_scored_once_and_fingerprint() -> None:
    v = rm(path=str(tiny_model_dir("bert_reward"))).build()
    seen: list[int] = []
    h = v.loaded.replicas[0].register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        v.score([SAMPLES[2]] * 4)
    finally:
        h.remove()
    assert seen == [1]
    w = rm(path=str(tiny_model_dir("bert_reward")), squash="sigmoid").build()
    assert v.fingerprint != w.fingerprint and v.loaded is w.loaded


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_scores_track_cpu_fp32(raw) -> None:  # type: ignore[no-untyped-def]
    d = str(tiny_model_dir("qwen2_reward"))
    v = RewardModelConfig(path=d, runtime={"device": "auto"}).build()  # auto: CUDA, bf16
    assert v.loaded.devices[0].startswith("cuda") and v.loaded.dtype == torch.bfloat16
    got = v.score(SAMPLES)
    assert got.scores.dtype == np.float32 and list(got.status) == ["ok"] * len(SAMPLES)
    assert np.abs(got.scores - raw).max() < 0.1  # bf16 weights and activations
    assert_batch_equals_rows(v, SAMPLES, atol=1e-2)
