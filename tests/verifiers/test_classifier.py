"""``classifier``: P(good label) / combined multi-label goodness, checked against plain forwards."""

from __future__ import annotations

import gc
import json
import shutil
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from safeladder import ConfigError, SafeladderWarning, Sample, SampleBatch, VerifierError
from safeladder.verifiers.classifier import ClassifierConfig
from tests.helpers import assert_batch_equals_rows, make_tiny_classifier, tiny_model_dir

torch.set_num_threads(1)


def clf(**kw: Any) -> ClassifierConfig:
    """``ClassifierConfig`` on CPU fp32 unless a test says otherwise (``auto`` would pick a GPU)."""
    kw["runtime"] = {"device": "cpu", **kw.get("runtime", {})}
    return ClassifierConfig(**kw)


# Very different lengths (a few tokens to several hundred) and duplicates.
SAMPLES = [
    Sample(prompt="Hi", completion="ok"),
    Sample(prompt="How do I bake bread? ", completion="Mix flour, water and yeast. " * 10),
    Sample(prompt="x", completion="I'm sorry, but I can't help with that request."),
    Sample(prompt="Tell me a story. ", completion="Once upon a time " * 25),
    Sample(prompt="Hi", completion="ok"),
    Sample(prompt=[{"role": "user", "content": "2+2?"}], completion="<think>2+2=4</think>4"),
    Sample(prompt="", completion="a"),
]


def plain_forward_logits(model_dir: Path, samples: list[Sample], chat: bool) -> np.ndarray:
    """One un-padded forward per sample, with the text rendered by hand (the expectation)."""
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    rows = []
    for s in samples:
        if chat:
            msgs = (
                [{"role": "user", "content": s.prompt}] if isinstance(s.prompt, str) else s.prompt
            )
            text = tok.apply_chat_template(
                [*msgs, {"role": "assistant", "content": s.completion}], tokenize=False
            )
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            p = s.prompt if isinstance(s.prompt, str) else "\n".join(m["content"] for m in s.prompt)
            ids = tok(p + s.completion)["input_ids"]
        with torch.no_grad():
            rows.append(model(input_ids=torch.tensor([ids])).logits[0].double().numpy())
    return np.stack(rows)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize(
    ("kind", "chat"),
    [("bert_classifier", False), ("qwen2_classifier", True), ("llama_classifier", True)],
)
def test_batched_scores_equal_one_at_a_time_forwards(kind: str, chat: bool) -> None:
    d = tiny_model_dir(kind)
    # A small token budget forces several micro-batches with heavy right padding.
    v = clf(
        path=str(d), good_label="safe", runtime={"device": "cpu", "max_tokens_per_batch": 600}
    ).build()
    want = softmax(plain_forward_logits(d, SAMPLES, chat))[:, 1]
    got = v.score(SAMPLES)
    assert list(got.status) == ["ok"] * len(SAMPLES)
    assert np.abs(got.scores - want).max() < 1e-4
    assert np.ptp(want) > 0.01  # the random head really separates the rows
    perm = np.random.default_rng(1).permutation(len(SAMPLES))
    shuffled = v.score(SampleBatch.from_samples(SAMPLES).take(perm))
    assert np.abs(shuffled.scores - want[perm]).max() < 1e-4
    assert_batch_equals_rows(v, SAMPLES, atol=1e-5)


def test_decoder_plain_template_pools_the_last_real_token() -> None:
    d = tiny_model_dir("qwen2_classifier")
    v = clf(path=str(d), good_label=1, render={"template": "plain"}).build()
    want = softmax(plain_forward_logits(d, SAMPLES, chat=False))[:, 1]
    assert np.abs(v.score(SAMPLES).scores - want).max() < 1e-4


def test_good_label_by_name_index_or_case(tmp_path: Path) -> None:
    d = str(tiny_model_dir("bert_classifier"))
    a = clf(path=d, good_label="safe").build().score(SAMPLES[:3])
    b = clf(path=d, good_label=1).build().score(SAMPLES[:3])
    c = clf(path=d, good_label="SAFE").build().score(SAMPLES[:3])
    u = clf(path=d, good_label="unsafe").build().score(SAMPLES[:3])
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.scores, c.scores)
    np.testing.assert_allclose(a.scores + u.scores, 1.0, atol=1e-6)
    assert set(a.details[0]["probs"]) == {"unsafe", "safe"}


@pytest.mark.parametrize(
    ("good", "match"),
    [
        (None, "good_label: required .*'unsafe', 'safe'"),
        ("harmless", "not one of"),
        (5, "out of range"),
    ],
)
def test_bad_good_label(good: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        clf(path=str(tiny_model_dir("bert_classifier")), good_label=good).build()


def test_one_logit_head_is_a_sigmoid() -> None:
    d = tiny_model_dir("bert_reward")  # num_labels = 1
    v = clf(path=str(d)).build()
    want = sigmoid(plain_forward_logits(d, SAMPLES, chat=False)[:, 0])
    assert np.abs(v.score(SAMPLES).scores - want).max() < 1e-4


def test_bad_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path / "nope")):
        clf(path=str(tmp_path / "nope"), good_label=1).build()


# --- multi-label ---------------------------------------------------------------------------

LABELS = ["toxicity", "privacy", "bias"]


@pytest.fixture(scope="module")
def multi_probs() -> np.ndarray:
    return sigmoid(plain_forward_logits(tiny_model_dir("bert_multilabel"), SAMPLES, chat=False))


@pytest.mark.parametrize(
    ("extra", "combine"),
    [
        ({}, lambda g: g.min(axis=1)),
        ({"combine": "mean"}, lambda g: g.mean(axis=1)),
        (
            {"combine": "weights", "weights": {"toxicity": 3.0, "bias": 1.0}},
            lambda g: (3 * g[:, 0] + g[:, 2]) / 4,
        ),
    ],
)
def test_multi_label_combines_goodness(multi_probs, extra, combine) -> None:  # type: ignore[no-untyped-def]
    v = clf(path=str(tiny_model_dir("bert_multilabel")), **extra).build()
    got = v.score(SAMPLES)
    assert np.abs(got.scores - combine(1.0 - multi_probs)).max() < 1e-4  # labels flag problems
    for row, p in zip(got.details, multi_probs, strict=True):
        assert list(row["probs"]) == LABELS
        assert np.allclose(list(row["probs"].values()), p, atol=1e-4)


def test_multi_label_good_polarity(multi_probs) -> None:  # type: ignore[no-untyped-def]
    v = clf(
        path=str(tiny_model_dir("bert_multilabel")), label_polarity="good", combine="mean"
    ).build()
    assert np.abs(v.score(SAMPLES).scores - multi_probs.mean(axis=1)).max() < 1e-4


def test_multi_label_forced_on_a_single_label_model() -> None:
    d = tiny_model_dir("bert_classifier")
    v = clf(path=str(d), multi_label=True, combine="mean", label_polarity="good").build()
    p = sigmoid(plain_forward_logits(d, SAMPLES, chat=False))
    assert np.abs(v.score(SAMPLES).scores - p.mean(axis=1)).max() < 1e-4


def test_weights_validation() -> None:
    d = str(tiny_model_dir("bert_multilabel"))
    with pytest.raises(ValidationError, match="combine: 'weights' needs weights"):
        clf(path=d, combine="weights")
    with pytest.raises(ValidationError, match="weights: given but combine"):
        clf(path=d, weights={"bias": 1.0})
    with pytest.raises(ValidationError, match=">= 0"):
        clf(path=d, combine="weights", weights={"bias": -1.0})
    with pytest.raises(ConfigError, match="unknown labels \\['hate'\\]"):
        clf(path=d, combine="weights", weights={"hate": 1.0}).build()


# --- calibration ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_logits() -> np.ndarray:
    return plain_forward_logits(tiny_model_dir("bert_classifier"), SAMPLES, chat=False)


def test_temperature_from_config(bert_logits) -> None:  # type: ignore[no-untyped-def]
    v = clf(
        path=str(tiny_model_dir("bert_classifier")),
        good_label="safe",
        calibration={"kind": "temperature", "temperature": 0.25},
    ).build()
    want = softmax(bert_logits / 0.25)[:, 1]
    assert np.abs(v.score(SAMPLES).scores - want).max() < 1e-4


def _copy_with_calibration(tmp_path: Path, data: dict) -> Path:
    d = tmp_path / "clf"
    shutil.copytree(tiny_model_dir("bert_classifier"), d)
    (d / "safeladder_calibration.json").write_text(json.dumps(data))
    return d


def test_isotonic_from_the_saved_file(tmp_path: Path, bert_logits) -> None:  # type: ignore[no-untyped-def]
    # y = 0.2 + 0.4 x on [0, 1]: a hand-checkable monotone map.
    d = _copy_with_calibration(tmp_path, {"kind": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.6]})
    v = clf(path=str(d), good_label="safe").build()
    want = 0.2 + 0.4 * softmax(bert_logits)[:, 1]
    assert np.abs(v.score(SAMPLES).scores - want).max() < 1e-4
    off = clf(path=str(d), good_label="safe", calibration="none").build()
    assert np.abs(off.score(SAMPLES).scores - softmax(bert_logits)[:, 1]).max() < 1e-4


def test_saved_temperature_file(tmp_path: Path, bert_logits) -> None:  # type: ignore[no-untyped-def]
    d = _copy_with_calibration(
        tmp_path, {"kind": "temperature", "temperature": 3.0, "meta": {"n": 9}}
    )
    v = clf(path=str(d), good_label="safe").build()
    assert np.abs(v.score(SAMPLES).scores - softmax(bert_logits / 3.0)[:, 1]).max() < 1e-4


def test_invalid_calibration_file(tmp_path: Path) -> None:
    d = _copy_with_calibration(tmp_path, {"kind": "isotonic", "x": [0, 1], "y": [0.9, 0.1]})
    with pytest.raises(ConfigError, match="safeladder_calibration.json"):
        clf(path=str(d), good_label="safe").build()


def test_isotonic_per_label(multi_probs) -> None:  # type: ignore[no-untyped-def]
    cal = {"kind": "isotonic", "per_label": {"bias": {"x": [0, 1], "y": [0, 0.5]}}}
    v = clf(path=str(tiny_model_dir("bert_multilabel")), combine="mean", calibration=cal).build()
    p = multi_probs.copy()
    p[:, 2] *= 0.5
    assert np.abs(v.score(SAMPLES).scores - (1 - p).mean(axis=1)).max() < 1e-4


# --- engine behaviour seen through the verifier ---------------------------------------------


def test_identical_rows_are_scored_once() -> None:
    v = clf(path=str(tiny_model_dir("qwen2_classifier")), good_label="safe").build()
    seen: list[int] = []
    model = v.loaded.replicas[0]
    handle = model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        out = v.score([SAMPLES[1]] * 5 + [SAMPLES[2]])
    finally:
        handle.remove()
    assert sum(seen) == 2 and len(set(out.scores[:5].tolist())) == 1


def test_truncated_rows_are_flagged_counted_and_warned() -> None:
    v = clf(
        path=str(tiny_model_dir("bert_classifier")), good_label="safe", render={"max_length": 64}
    ).build()
    with pytest.warns(SafeladderWarning, match="2 of 7 rows .* truncated"):
        out = v.score(SAMPLES)
    flagged = [i for i, d in enumerate(out.details) if d.get("truncated")]
    assert flagged == [1, 3] and v.truncated_rows == 2
    assert list(out.status) == ["ok"] * 7


def test_max_length_is_capped_by_the_model_positions() -> None:
    v = clf(
        path=str(tiny_model_dir("bert_classifier")), good_label=1, render={"max_length": 100_000}
    ).build()
    assert v.max_length == 1024  # max_position_embeddings of the tiny model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SafeladderWarning)
        out = v.score([Sample(prompt="", completion="1" * 3000)])
    assert out.status[0] == "ok" and out.details[0]["truncated"]


def test_model_failure_raises_or_abstains(monkeypatch: pytest.MonkeyPatch) -> None:
    d = str(tiny_model_dir("bert_classifier"))
    for on_error in ("raise", "abstain"):
        v = clf(path=d, good_label=1, on_error=on_error).build()
        monkeypatch.setattr(v, "_forward", lambda: _boom)
        if on_error == "raise":
            with pytest.raises(VerifierError, match="boom"):
                v.score(SAMPLES[:2])
        else:
            out = v.score(SAMPLES[:2])
            assert list(out.status) == ["error", "error"] and "boom" in out.details[0]["reason"]
            assert np.isnan(out.scores).all()


def _boom(batch, model, device):  # type: ignore[no-untyped-def]
    raise RuntimeError("boom")


def test_cache_across_calls() -> None:
    v = clf(
        path=str(tiny_model_dir("bert_classifier")),
        good_label=1,
        runtime={"device": "cpu", "cache_size": 16},
    ).build()
    seen: list[int] = []
    h = v.loaded.replicas[0].register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        a = v.score(SAMPLES[:3])
        b = v.score(SAMPLES[:3])
    finally:
        h.remove()
    np.testing.assert_array_equal(a.scores, b.scores)
    assert sum(seen) == 3


def test_two_verifiers_share_the_model_and_close_drops_it(tmp_path: Path) -> None:
    d = make_tiny_classifier(tmp_path / "m", 2, {0: "unsafe", 1: "safe"})
    a = clf(path=str(d), good_label="safe").build()
    b = clf(path=str(d), good_label="unsafe", name="other").build()
    assert a.loaded is b.loaded
    ref = weakref.ref(a.loaded)
    a.close()
    b.close()
    gc.collect()
    assert ref() is None
    with pytest.raises(VerifierError, match="closed"):
        a.score(SAMPLES[:1])


def test_fingerprint_includes_the_checkpoint(tmp_path: Path) -> None:
    a = make_tiny_classifier(tmp_path / "a", 2, seed=0)
    b = make_tiny_classifier(tmp_path / "b", 2, seed=1)
    shutil.copytree(a, tmp_path / "c")
    fa = clf(path=str(a), good_label=1).build().fingerprint
    fb = clf(path=str(b), good_label=1).build().fingerprint
    # same checkpoint content, different path string → the config part differs, by design
    assert fa != fb
    c1 = clf(path=str(tmp_path / "c"), good_label=1).build()
    (tmp_path / "c" / "safeladder_calibration.json").write_text(
        '{"kind": "temperature", "temperature": 2}'
    )
    c2 = clf(path=str(tmp_path / "c"), good_label=1).build()
    assert c1.fingerprint != c2.fingerprint


def test_empty_batch_and_score_range() -> None:
    v = clf(path=str(tiny_model_dir("bert_classifier")), good_label=1).build()
    assert len(v.score([])) == 0 and v.score_range == (0.0, 1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2"])
def test_gpu_decoder_classifier_tracks_cpu_fp32(attn: str) -> None:
    if attn == "flash_attention_2":
        pytest.importorskip("flash_attn")
    d = tiny_model_dir("qwen2_classifier")
    v = ClassifierConfig(
        path=str(d),
        good_label="safe",
        runtime={"device": "cuda", "attn_implementation": attn, "max_tokens_per_batch": 600},
    ).build()
    want = softmax(plain_forward_logits(d, SAMPLES, chat=True))[:, 1]
    got = v.score(SAMPLES)
    assert np.abs(got.scores - want).max() < 0.02  # bf16
    assert_batch_equals_rows(v, SAMPLES, atol=1e-2)


def test_a_row_the_chat_template_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    d = str(tiny_model_dir("qwen2_classifier"))
    rows = [SAMPLES[0], Sample(prompt="REJECT ME", completion="x"), SAMPLES[2]]
    for on_error in ("raise", "abstain"):
        v = clf(path=d, good_label="safe", on_error=on_error).build()
        real = v.loaded.tokenizer.apply_chat_template

        def picky(messages, *args, real=real, **kwargs):  # type: ignore[no-untyped-def]
            if any(m["content"] == "REJECT ME" for m in messages):
                raise ValueError("template says no")
            return real(messages, *args, **kwargs)

        monkeypatch.setattr(v.loaded.tokenizer, "apply_chat_template", picky)
        if on_error == "raise":
            with pytest.raises(VerifierError, match="row 1: the verifier's chat template failed"):
                v.score(rows)
        else:
            out = v.score(rows)
            assert list(out.status) == ["ok", "error", "ok"]
            assert "template says no" in out.details[1]["reason"]
            want = v.score([rows[0], rows[2]]).scores
            np.testing.assert_allclose(out.scores[[0, 2]], want, atol=1e-6)
        monkeypatch.undo()
