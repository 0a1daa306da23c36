"""label_loglik_tree: every label of a row in one forward under a block mask, equal to the
per-pair (duplicate) and KV-cache (shared_prefix) computations and to plain forwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safeladder.neural.label_likelihood import (  # noqa: E402
    label_forward,
    label_loglik_duplicate,
    label_loglik_shared_prefix,
    label_loglik_tree,
    tree_supported,
)

VOCAB = 97
PAD = 0


def _model(arch: str, attn: str) -> Any:
    common: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "initializer_range": 0.2,
        "pad_token_id": PAD,
        "tie_word_embeddings": False,
    }
    cfg = {
        "llama": lambda: transformers.LlamaConfig(**common),
        "qwen2": lambda: transformers.Qwen2Config(**common),
        "mistral": lambda: transformers.MistralConfig(**common),
        # ShieldGemma's family: logit soft-capping, sliding-window layers, eager attention.
        "gemma2": lambda: transformers.Gemma2Config(**common, head_dim=8),
    }[arch]()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    return model.eval()


def _manual(model: Any, prefix: list[int], label: list[int]) -> float:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prefix + label])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(prefix) - 1 + t, tok]) for t, tok in enumerate(label))


PREFIXES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [3]]
LABELS = [[20, 21, 22], [30], [40, 41, 42, 43, 44], [20, 21, 23]]  # shared first tokens too


@pytest.mark.parametrize(
    ("arch", "attn"),
    [
        ("llama", "sdpa"),
        ("llama", "eager"),
        ("qwen2", "sdpa"),
        ("mistral", "sdpa"),
        ("gemma2", "eager"),
    ],
)
def test_tree_equals_duplicate_shared_prefix_and_plain_forwards(arch: str, attn: str) -> None:
    model = _model(arch, attn)
    assert tree_supported(model, PREFIXES)
    with torch.inference_mode():
        tree = label_loglik_tree(model, PREFIXES, LABELS, PAD, "cpu")
        dup = label_loglik_duplicate(model, PREFIXES, LABELS, PAD, "cpu")
        shared = label_loglik_shared_prefix(model, PREFIXES, LABELS, PAD, "cpu")
    assert tree.shape == (4, 4) and tree.dtype == np.float32
    manual = np.array([[_manual(model, p, lab) for lab in LABELS] for p in PREFIXES])
    np.testing.assert_allclose(tree, manual, atol=1e-4)
    np.testing.assert_allclose(tree, dup, atol=1e-4)
    np.testing.assert_allclose(tree, shared, atol=1e-4)


def test_single_token_labels_and_one_row() -> None:
    model = _model("qwen2", "sdpa")
    labels = [[20], [30], [31]]
    with torch.inference_mode():
        tree = label_loglik_tree(model, [[4, 5, 6]], labels, PAD, "cpu")
    np.testing.assert_allclose(
        tree[0], [_manual(model, [4, 5, 6], lab) for lab in labels], atol=1e-4
    )


def test_a_row_does_not_depend_on_its_batch() -> None:
    # Left padding and the block mask: a row scored alone equals the same row in a batch.
    model = _model("llama", "sdpa")
    with torch.inference_mode():
        together = label_loglik_tree(model, PREFIXES, LABELS, PAD, "cpu")
        alone = np.vstack([label_loglik_tree(model, [p], LABELS, PAD, "cpu") for p in PREFIXES])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_kernels_without_4d_masks_fall_back_to_the_kv_cache() -> None:
    model = _model("llama", "sdpa")
    model.config._attn_implementation = "flash_attention_2"  # takes no 4-D additive mask
    assert not tree_supported(model, PREFIXES)
    model.config._attn_implementation = "sdpa"
    fwd = label_forward(LABELS, PAD, "tree")
    with torch.inference_mode():
        got = fwd(PREFIXES, model, "cpu")
        want = label_loglik_duplicate(model, PREFIXES, LABELS, PAD, "cpu")
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_sliding_windows_and_huge_masks_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from safeladder.neural import label_likelihood as ll

    model = _model("mistral", "sdpa")
    model.config.sliding_window = 6  # narrower than the rows: the block mask would not apply it
    assert not tree_supported(model, PREFIXES, width=7 + 9)
    assert tree_supported(model, PREFIXES, width=6)
    with torch.inference_mode():
        got = label_loglik_tree(model, PREFIXES, LABELS, PAD, "cpu")
    manual = np.array([[_manual(model, p, lab) for lab in LABELS] for p in PREFIXES])
    np.testing.assert_allclose(got, manual, atol=1e-4)  # the KV-cache path ran, windowed
    model.config.sliding_window = None
    monkeypatch.setattr(ll, "TREE_MAX_MASK", 4 * 15 * 15)
    assert tree_supported(model, PREFIXES, width=15)
    assert not tree_supported(model, PREFIXES, width=16)
