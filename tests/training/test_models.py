"""Model loading, LoRA wrapping, saving and prediction helpers of the HF training kinds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from safeladder.errors import ConfigError
from safeladder.training.common import LoopSettings, LoraSettings, ModelSource
from safeladder.training.models import (
    apply_lora,
    base_reference,
    build_model,
    offline,
    predict_logits,
    resolve_device,
    save_model,
    token_limit,
    use_bf16,
)
from tests.helpers import tiny_model_dir

TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
}


def _random_bert() -> ModelSource:
    return ModelSource.model_validate(
        {"random_init": {"config": TINY_BERT, "tokenizer": str(tiny_model_dir("bert_classifier"))}}
    )


def test_random_init_classifier_has_the_labels_and_the_tokenizer_vocab() -> None:
    model, tok = build_model(_random_bert(), "sequence_classification", labels=["safe", "unsafe"])
    assert model.config.num_labels == 2
    assert model.config.id2label == {0: "safe", 1: "unsafe"}
    assert model.config.problem_type == "single_label_classification"
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id
    # Seeded: the same seed gives the same weights, another seed different ones.
    again, _ = build_model(_random_bert(), "sequence_classification", labels=["a", "b"])
    other, _ = build_model(_random_bert(), "sequence_classification", labels=["a", "b"], seed=1)
    w = model.classifier.weight.detach().numpy()
    assert np.array_equal(w, again.classifier.weight.detach().numpy())
    assert not np.array_equal(w, other.classifier.weight.detach().numpy())


def test_reward_head_and_multi_label_problem_types() -> None:
    reward, _ = build_model(_random_bert(), "sequence_classification")
    assert reward.config.num_labels == 1
    multi, _ = build_model(
        _random_bert(), "sequence_classification", labels=["a", "b", "c"], multi_label=True
    )
    assert multi.config.problem_type == "multi_label_classification"


def test_a_local_classifier_gets_a_new_head_of_another_shape() -> None:
    src = ModelSource(path=str(tiny_model_dir("bert_classifier")))  # 2 labels on disk
    model, _ = build_model(src, "sequence_classification", labels=["x", "y", "z"])
    assert model.classifier.weight.shape[0] == 3


def test_decoder_gets_a_pad_token_and_pad_token_id() -> None:
    model, tok = build_model(ModelSource(path=str(tiny_model_dir("qwen2_causal_lm"))), "causal_lm")
    assert tok.pad_token_id is not None
    assert model.config.pad_token_id == tok.pad_token_id


def test_random_init_needs_a_model_type_and_a_tokenizer_dir(tmp_path: Path) -> None:
    tok = str(tiny_model_dir("bert_classifier"))
    bad = ModelSource.model_validate(
        {"random_init": {"config": {"hidden_size": 8}, "tokenizer": tok}}
    )
    with pytest.raises(ConfigError, match="model_type"):
        build_model(bad, "sequence_classification", labels=["a", "b"])
    nodir = ModelSource.model_validate(
        {"random_init": {"config": TINY_BERT, "tokenizer": str(tmp_path / "nope")}}
    )
    with pytest.raises(ConfigError, match="random_init.tokenizer"):
        build_model(nodir, "sequence_classification", labels=["a", "b"])
    with pytest.raises(ConfigError, match="model.path"):
        build_model(ModelSource(path=str(tmp_path / "nope")), "causal_lm")


def test_lora_trains_the_head_in_full() -> None:
    model, _ = build_model(
        ModelSource(path=str(tiny_model_dir("bert_classifier"))),
        "sequence_classification",
        labels=["a", "b"],
    )
    wrapped = apply_lora(model, LoraSettings(r=2), "sequence_classification")
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert any("classifier" in n and "modules_to_save" in n for n in trainable)
    assert not any("embeddings" in n for n in trainable)
    with pytest.raises(ConfigError, match="lora"):
        apply_lora(model, LoraSettings(r=2, target_modules=["no_such_module"]), "causal_lm")


def test_device_and_precision_defaults() -> None:
    assert resolve_device(LoopSettings(device="cpu")) == "cpu"
    assert use_bf16(LoopSettings(bf16=True), "cpu") is False  # never bf16 on CPU
    assert use_bf16(LoopSettings(), "cuda") is True
    assert use_bf16(LoopSettings(bf16=False), "cuda") is False


def test_token_limit_is_capped_by_positions() -> None:
    model, tok = build_model(_random_bert(), "sequence_classification", labels=["a", "b"])
    assert token_limit(model, tok, 1000) == 64
    assert token_limit(model, tok, 32) == 32


def test_predict_logits_keeps_input_order_and_matches_one_by_one() -> None:
    import torch

    model, tok = build_model(_random_bert(), "sequence_classification", labels=["a", "b"])
    rows = [tok.encode(t) for t in ["a long sentence about the fox", "hi", "the dog", "x"]]
    got = predict_logits(model, rows, tok.pad_token_id, batch_size=3, device="cpu")
    with torch.no_grad():
        one = [model(input_ids=torch.tensor([r])).logits[0].numpy() for r in rows]
    np.testing.assert_allclose(got, np.stack(one), atol=1e-5)


def test_save_merged_and_adapter(tmp_path: Path) -> None:
    src = ModelSource(path=str(tiny_model_dir("bert_classifier")))
    model, tok = build_model(src, "sequence_classification", labels=["a", "b"])
    wrapped = apply_lora(model, LoraSettings(r=2), "sequence_classification")
    save_model(wrapped, tok, tmp_path / "a", save="adapter", base_ref=base_reference(src))
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= files
    assert "model.safetensors" not in files
    base = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert base["base_model_name_or_path"] == str(tiny_model_dir("bert_classifier").resolve())
    save_model(wrapped, tok, tmp_path / "m", save="merged", base_ref=None)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files


def test_packaged_base_is_named_packaged() -> None:
    assert base_reference(ModelSource(packaged="all-MiniLM-L6-v2")) == ("packaged:all-MiniLM-L6-v2")
    assert base_reference(_random_bert()) is None


def test_offline_sets_and_restores_the_hub_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    with offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
