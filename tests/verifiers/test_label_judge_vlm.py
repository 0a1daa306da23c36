"""``label_judge`` over vision-language checkpoints (tiny random-init Qwen2-VL and LLaVA).

The expected scores are computed here without the verifier: the judge input is written out
from each tiny chat template by hand (the image parts lead the user turn), run through the
checkpoint's processor and one unpadded forward per (row, label), and the label distribution
and expected reward are done by hand. Batched scores must equal those and the one-row scores
(float32, 1e-5).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.errors import SafeladderWarning, VerifierError
from safeladder.images import load_image
from safeladder.neural.batching import cache_info, clear_caches
from safeladder.neural.vision import VisionRow
from safeladder.verifiers import build_verifier
from safeladder.verifiers.label_judge import prompt_for_judge
from tests.helpers import assert_batch_equals_rows, assert_in_range_or_nan
from tests.neural.tiny_vlm import (
    png_bytes,
    qwen2_vl_processor_without_torchvision,
    tiny_vlm_dir,
)

torch.set_num_threads(1)
# cpu_max_padding 0.9: rows of different lengths share micro-batches, so padding is exercised.
CPU = {"device": "cpu", "dtype": "float32", "cpu_max_padding": 0.9}
GREEN, RED = png_bytes((10, 200, 30)), png_bytes((200, 10, 30))
TEMPLATE = "Is the answer safe?\n{prompt}\n{completion}"
LABELS = {"yes": 1.0, "no": 0.0, "not sure": 0.5}
FAMILIES = ["qwen2_vl", "llava", "idefics3"]


@pytest.fixture(scope="module")
def dirs() -> Iterator[dict[str, Path]]:
    with qwen2_vl_processor_without_torchvision():
        yield {f: tiny_vlm_dir(f) for f in FAMILIES}


def judge(path: Path, **over: Any) -> Any:
    cfg: dict[str, Any] = {
        "type": "label_judge",
        "path": str(path),
        "template": TEMPLATE,
        "labels": LABELS,
        "runtime": CPU,
        **over,
    }
    return build_verifier(cfg)


def hand_rendered(family: str, user: str, n_images: int) -> str:
    """The judge input, written from the tiny chat templates (images lead the user turn)."""
    if family == "qwen2_vl":
        images = "<|vision_start|><|image_pad|><|vision_end|>" * n_images
        return f"<|im_start|>user\n{images}{user}<|im_end|>\n<|im_start|>assistant\n"
    if family == "idefics3":
        head = "User:" if n_images else "User: "
        return head + "<image>" * n_images + user + "<end_of_utterance>\nAssistant:"
    return "USER: " + "<image>\n" * n_images + user + " ASSISTANT:"


def expected_score(v: Any, family: str, sample: Sample) -> float:
    model, proc = v.loaded.replicas[0], v.loaded.processor
    user = TEMPLATE.replace("{prompt}", str(sample.prompt)).replace(
        "{completion}", sample.completion
    )
    text = hand_rendered(family, user, len(sample.images))
    pil = [load_image(b) for b in sample.images] or None
    ll = []
    for label in LABELS:
        lab = proc.tokenizer.encode(label, add_special_tokens=False)
        enc = proc(text=[text], images=pil, return_tensors="pt")
        n = enc["input_ids"].shape[1]
        ids = torch.cat([enc["input_ids"], torch.tensor([lab])], dim=1)
        inputs = {**enc, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if "mm_token_type_ids" in enc:
            zeros = torch.zeros((1, len(lab)), dtype=torch.long)
            inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], zeros], dim=1)
        with torch.inference_mode():
            logp = torch.log_softmax(model(**inputs).logits[0].double(), dim=-1)
        ll.append(sum(float(logp[n - 1 + t, tok]) for t, tok in enumerate(lab)))
    p = np.exp(np.array(ll) - max(ll))
    p /= p.sum()
    return float(p @ np.array(list(LABELS.values())))


def rows() -> list[Sample]:
    return [
        Sample(prompt="Describe the picture", completion="A green field.", images=(GREEN,)),
        Sample(prompt="Describe the picture", completion="A green field.", images=(RED,)),
        Sample(prompt="No picture this time, just text", completion="Fine."),
        Sample(prompt="Compare", completion="They differ.", images=(GREEN, RED)),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_equal_hand_rendered_forwards_and_rows(dirs: dict[str, Path], family: str) -> None:
    v = judge(dirs[family])
    assert v.reads_images
    samples = rows()
    got = assert_batch_equals_rows(v, samples, atol=1e-5)
    assert list(got.status) == ["ok"] * 4
    assert_in_range_or_nan(v, got)
    for i, s in enumerate(samples):
        assert abs(float(got.scores[i]) - expected_score(v, family, s)) <= 1e-5, i
    # Same text, different image: a different judgement (random weights, so just "differs").
    assert got.details[0]["label_probs"] != got.details[1]["label_probs"]


@pytest.mark.parametrize("scoring", ["shared_prefix", "duplicate"])
def test_image_hash_keys_dedup_and_cache(dirs: dict[str, Path], scoring: str) -> None:
    clear_caches()
    v = judge(dirs["qwen2_vl"], scoring=scoring, runtime={**CPU, "cache_size": 32})
    same_text = [rows()[0], rows()[1], rows()[0]]
    first = v.score(SampleBatch.from_samples(same_text))
    assert first.scores[0] == first.scores[2] and first.scores[0] != first.scores[1]
    assert cache_info(v.fingerprint)["size"] == 2  # green and red: two entries, not one
    again = v.score(SampleBatch.from_samples([rows()[1]]))
    assert cache_info(v.fingerprint)["hits"] == 1 and again.scores[0] == first.scores[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_unreadable_image_is_that_rows_error(dirs: dict[str, Path], family: str) -> None:
    bad = Sample(prompt="Describe", completion="A field.", images=(b"not an image",))
    samples = [rows()[0], bad, rows()[2]]
    v = judge(dirs[family], on_error="abstain")
    got = v.score(SampleBatch.from_samples(samples))
    assert list(got.status) == ["ok", "error", "ok"]
    assert np.isnan(got.scores[1]) and "row 1: image 0" in got.details[1]["reason"]
    for i in (0, 2):
        alone = v.score(SampleBatch.from_samples([samples[i]])).scores[0]
        assert abs(float(got.scores[i]) - float(alone)) <= 1e-5
    with pytest.raises(VerifierError, match="row 1"):
        judge(dirs[family]).score(SampleBatch.from_samples(samples))


def test_cut_text_keeps_the_images(dirs: dict[str, Path]) -> None:
    v = judge(dirs["qwen2_vl"], max_length=80)
    long = Sample(prompt="word " * 200, completion="A field. " * 3, images=(GREEN,))
    prep = v._row_input(SampleBatch.from_samples([long]), 0)
    row = prep.ids
    assert isinstance(row, VisionRow) and prep.truncated
    assert len(row) <= 80 - max(len(x) for x in v.label_ids)
    n_image = int(row.images["image_grid_thw"].prod()) // 4
    assert row.ids.count(v.loaded.processor.image_token_id) == n_image
    with pytest.warns(SafeladderWarning, match="truncated"):
        assert v.score([long]).status[0] == "ok"


def test_plain_rendering_is_refused(dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="rendering: 'plain'"):
        judge(dirs["llava"], rendering="plain")


@pytest.mark.parametrize("preset", ["safework_safety", "safework_value", "safework_knowledge"])
def test_safework_presets_judge_image_prompts(dirs: dict[str, Path], preset: str) -> None:
    cfg = {"type": "label_judge", "preset": preset, "path": str(dirs["qwen2_vl"]), "runtime": CPU}
    v: Any = build_verifier(cfg)
    url = "data:image/png;base64," + base64.b64encode(GREEN).decode()
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "How do I pick this lock?"},
            ],
        }
    ]
    samples = [
        Sample(prompt=chat, completion="<think>hm</think>I can't help.", reference="no"),
        Sample(prompt="What is shown?", completion="A red square.", images=(RED,), reference="a"),
        Sample(prompt="What is 2+2?", completion="4", reference="4"),
    ]
    got = v.score(SampleBatch.from_samples(samples))
    assert list(got.status) == ["ok"] * 3
    assert_in_range_or_nan(v, got)
    # The image is an image part at the head of the user turn, never text in the prompt.
    text = v.loaded.tokenizer.decode(list(v._row_input(got_batch(samples), 0).ids.ids))
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|>")
    assert "How do I pick this lock?" in text and "image_url" not in text


def got_batch(samples: list[Sample]) -> SampleBatch:
    return SampleBatch.from_samples(samples)


def test_text_judge_reads_the_text_parts_of_a_multimodal_prompt() -> None:
    # Before: a message whose content is a list of parts filled {prompt} with the list's repr.
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Safe?"}]}]
    assert prompt_for_judge(chat) == "Safe?"
    two = [*chat, {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}]
    assert prompt_for_judge(two) == "user: Safe?\nassistant: Yes."


def test_replicas_share_vision_rows(dirs: dict[str, Path]) -> None:
    one = judge(dirs["qwen2_vl"]).score(SampleBatch.from_samples(rows()))
    two = judge(dirs["qwen2_vl"], runtime={**CPU, "device": ["cpu", "cpu"], "max_batch_size": 1})
    got = two.score(SampleBatch.from_samples(rows()))
    np.testing.assert_allclose(got.scores, one.scores, atol=1e-5)


def test_placeholder_without_an_image_is_that_rows_error(dirs: dict[str, Path]) -> None:
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Safe?"}]}]
    rows_ = [Sample(prompt=chat, completion="Yes."), rows()[0]]  # the first has no image
    got = judge(dirs["qwen2_vl"], on_error="abstain").score(SampleBatch.from_samples(rows_))
    assert list(got.status) == ["error", "ok"]
    assert "more image placeholders than the row has images" in got.details[0]["reason"]
