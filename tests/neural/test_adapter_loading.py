"""A peft LoRA adapter directory loads as its base model with the adapter merged in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from safeladder import Sample, build_verifier
from safeladder.errors import ConfigError
from safeladder.neural.runtime import adapter_base, clear_model_cache
from tests.helpers import tiny_model_dir

ROWS = [
    Sample(prompt="How do I kill a Python process?", completion="Run kill <pid>."),
    Sample(prompt="hi", completion="I'm sorry, but I can't help with that."),
    Sample(prompt="Tell me a story", completion="Once upon a time " * 8),
]


def _adapter(tmp_path: Path, base_ref: str | None = None) -> tuple[Path, Path]:
    """(adapter dir, merged dir) of a random non-zero LoRA on the tiny BERT classifier."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir("bert_classifier"), base)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(base))
    # init_lora_weights=False gives B != 0, so the adapter really changes the outputs.
    cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "classifier" in name and p.requires_grad:
                p.add_(0.5)  # the head is trained in full (modules_to_save)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter))
    model.config.save_pretrained(str(adapter))
    shutil.copy(base / "tokenizer.json", adapter)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        if (base / f).is_file():
            shutil.copy(base / f, adapter)
    conf = json.loads((adapter / "adapter_config.json").read_text())
    conf["base_model_name_or_path"] = base_ref if base_ref is not None else "../base"
    (adapter / "adapter_config.json").write_text(json.dumps(conf))
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(str(merged))
    shutil.copy(base / "tokenizer.json", merged)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        if (base / f).is_file():
            shutil.copy(base / f, merged)
    return adapter, merged


def test_adapter_dir_scores_like_the_merged_model(tmp_path: Path) -> None:
    clear_model_cache()
    adapter, merged = _adapter(tmp_path)
    assert adapter_base(adapter) == (tmp_path / "base").resolve()
    base = build_verifier(
        {"type": "classifier", "path": str(tmp_path / "base"), "good_label": "safe"}
    ).score(ROWS)
    via_adapter = build_verifier(
        {"type": "classifier", "path": str(adapter), "good_label": "safe"}
    ).score(ROWS)
    via_merged = build_verifier(
        {"type": "classifier", "path": str(merged), "good_label": "safe"}
    ).score(ROWS)
    np.testing.assert_allclose(via_adapter.scores, via_merged.scores, atol=1e-5)
    # The adapter and head moved the scores: the base alone is not what was loaded.
    assert np.max(np.abs(via_adapter.scores - base.scores)) > 1e-3


def test_adapter_with_a_missing_base_is_a_clear_error(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, base_ref="org/some-hub-model")
    with pytest.raises(ConfigError, match="never downloaded"):
        build_verifier({"type": "classifier", "path": str(adapter), "good_label": "safe"})


def test_adapter_with_an_unknown_packaged_base_is_refused(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, base_ref="packaged:gpt-17")
    with pytest.raises(ConfigError, match="unknown packaged model"):
        build_verifier({"type": "classifier", "path": str(adapter), "good_label": "safe"})
