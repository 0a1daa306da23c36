"""The engine's vision-language path: detection, loading, rows, the token budget, dedup, collation.

Expectations are computed independently of the engine: image-token counts from the image
processor's geometry (Qwen2-VL: grid t*h*w / merge_size**2; LLaVA: (28 / 14)**2 = 4 per image; Idefics3:
(56 / 14)**2 / 2**2 = 4 per image),
and label log-likelihoods from one unpadded forward per row on the processor's own output,
where the model computes its own positions (M-RoPE included), plus a log-softmax by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from safeladder.errors import ConfigError
from safeladder.images import image_key, load_image
from safeladder.neural.batching import cache_info, clear_caches, run_batched
from safeladder.neural.label_likelihood import (
    label_forward,
    label_loglik_duplicate,
    label_loglik_shared_prefix,
)
from safeladder.neural.runtime import RuntimeConfig, load_model
from safeladder.neural.vision import (
    VisionRow,
    is_vision_checkpoint,
    process_row,
    render_vision_text,
    row_image_refs,
    vision_messages,
)
from tests.neural.tiny_vlm import (
    png_bytes,
    qwen2_vl_processor_without_torchvision,
    tiny_vlm_dir,
)

torch.set_num_threads(1)
CPU = RuntimeConfig(device="cpu", dtype="float32", cpu_max_padding=0.9)
GREEN, RED = png_bytes((10, 200, 30)), png_bytes((200, 10, 30))
FAMILIES = ["qwen2_vl", "llava", "idefics3"]


@pytest.fixture(scope="module")
def dirs() -> Iterator[dict[str, Path]]:
    with qwen2_vl_processor_without_torchvision():
        yield {f: tiny_vlm_dir(f) for f in FAMILIES}


def _row(lm: Any, text: str, images: list[bytes], row: int = 0) -> VisionRow:
    pil = [load_image(b) for b in images]
    rendered = render_vision_text(lm.processor, vision_messages(text, len(pil), None), True)
    return process_row(lm.processor, rendered, pil, [image_key(b) for b in images], row)


def _image_tokens(family: str, row: VisionRow) -> int:
    """Image tokens of a row, from the image processor's geometry alone."""
    if not row.images:
        return 0
    if family == "qwen2_vl":
        return int(row.images["image_grid_thw"].prod(axis=1).sum()) // 4  # merge_size 2 -> 2x2
    if family == "idefics3":  # [1, images, 3, 56, 56]: (56 / 14)**2 patches, pixel shuffle 2x2
        return 4 * row.images["pixel_values"].shape[1]
    return 4 * row.images["pixel_values"].shape[0]  # (28 / 14)**2 patches, CLS dropped


def test_detection(dirs: dict[str, Path], tmp_path: Path) -> None:
    assert all(is_vision_checkpoint(d) for d in dirs.values())
    text = tmp_path / "text"
    text.mkdir()
    (text / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert not is_vision_checkpoint(text)
    (text / "config.json").write_text(json.dumps({"model_type": "llava", "vision_config": {}}))
    with pytest.raises(ConfigError, match="no processor config"):
        is_vision_checkpoint(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_load_model_uses_processor_and_image_text_class(dirs: dict[str, Path], family: str) -> None:
    lm = load_model(dirs[family], "causal_lm", CPU)
    assert lm.processor is not None and lm.tokenizer is lm.processor.tokenizer
    assert type(lm.replicas[0]).__name__.endswith("ForConditionalGeneration")
    with pytest.raises(ConfigError, match="text encoder"):
        load_model(dirs[family], "encoder", CPU)


def test_row_image_order_and_messages() -> None:
    prompt = [
        {"role": "system", "content": "Be careful."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image"},
                {"type": "image_url", "image_url": {"url": "b.png"}},
            ],
        },
    ]
    # The placeholder takes the row's first image; the unplaced one comes last.
    assert row_image_refs(prompt, ["a.png", "c.png"]) == ["a.png", "b.png", "c.png"]
    msgs = vision_messages(prompt, 3, "fine")
    user = msgs[1]["content"]
    assert [p["type"] for p in user] == ["image", "text", "image", "image"]
    assert msgs[-1] == {"role": "assistant", "content": [{"type": "text", "text": "fine"}]}
    assert vision_messages("hi", 1, None) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_image_tokens_count_in_length_and_budget(dirs: dict[str, Path], family: str) -> None:
    lm = load_model(dirs[family], "causal_lm", CPU)
    text_only = _row(lm, "Is this safe?", [])
    with_image = _row(lm, "Is this safe?", [GREEN])
    n_img = _image_tokens(family, with_image)
    assert n_img > 1
    # The image placeholder becomes its n image tokens (plus the template's image markers).
    assert len(with_image) >= len(text_only) + n_img
    image_id = lm.processor.image_token_id
    assert with_image.ids.count(image_id) == n_img and image_id not in text_only.ids

    lab = [lm.tokenizer.encode("yes", add_special_tokens=False)]
    forward = label_forward(lab, lm.pad_id)
    rows = [with_image, _row(lm, "Is this safe?", [RED])]
    stats: dict[str, int] = {}
    # A budget that fits two text-only rows but not two image rows: the image tokens count.
    tight = CPU.model_copy(update={"cpu_max_tokens_per_batch": 2 * len(text_only) + 1})
    run_batched(rows, forward, lm, tight, stats=stats)
    assert stats["microbatches"] == 2
    roomy = CPU.model_copy(update={"cpu_max_tokens_per_batch": 2 * len(with_image)})
    run_batched(rows, forward, lm, roomy, stats=stats)
    assert stats["microbatches"] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_dedup_and_cache_key_include_image_hashes(dirs: dict[str, Path], family: str) -> None:
    lm = load_model(dirs[family], "causal_lm", CPU)
    green, green2, red = (_row(lm, "Same text", [b]) for b in (GREEN, GREEN, RED))
    assert green.ids == red.ids  # same text, same image size: only the images differ
    assert green.key() == green2.key() and green.key() != red.key()
    lab = [lm.tokenizer.encode(w, add_special_tokens=False) for w in ("yes", "no")]
    clear_caches()
    stats: dict[str, int] = {}
    cached = CPU.model_copy(update={"cache_size": 16})
    out = run_batched(
        [green, green2, red],
        label_forward(lab, lm.pad_id),
        lm,
        cached,
        cache_key=f"t-{family}",
        stats=stats,
    )
    assert stats["unique"] == 2
    assert cache_info(f"t-{family}")["size"] == 2
    assert np.array_equal(out[0], out[1]) and not np.allclose(out[0], out[2])


def _reference_loglik(
    lm: Any, row_text: str, images: list[bytes], labels: list[list[int]]
) -> np.ndarray:
    """Σ log p(label tokens) from unpadded forwards of the processor's own output + label."""
    model, proc = lm.replicas[0], lm.processor
    pil = [load_image(b) for b in images]
    out = []
    for lab in labels:
        enc = proc(text=[row_text], images=pil or None, return_tensors="pt")
        ids = torch.cat([enc["input_ids"], torch.tensor([lab])], dim=1)
        inputs = {**enc, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if "mm_token_type_ids" in enc:
            pad = torch.zeros((1, len(lab)), dtype=enc["mm_token_type_ids"].dtype)
            inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], pad], dim=1)
        with torch.inference_mode():
            logits = model(**inputs).logits[0].double()
        n = enc["input_ids"].shape[1]
        logp = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logp[n - 1 + t, tok]) for t, tok in enumerate(lab)))
    return np.array(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_label_loglik_equals_unpadded_forwards(dirs: dict[str, Path], family: str) -> None:
    lm = load_model(dirs[family], "causal_lm", CPU)
    cases = [
        ("Is this safe?", [GREEN]),
        ("Is this picture of a field safe to show to children?", [RED]),
        ("Text only, no image at all here", []),
        ("Two images", [GREEN, RED]),
    ]
    rows, texts = [], []
    for k, (text, imgs) in enumerate(cases):
        rendered = render_vision_text(lm.processor, vision_messages(text, len(imgs), None), True)
        texts.append(rendered)
        rows.append(_row(lm, text, imgs, k))
    labels = [lm.tokenizer.encode(w, add_special_tokens=False) for w in ("yes", "no", "not sure")]
    assert len(labels[2]) > 1  # a multi-token label exercises the cached continuation
    expected = np.stack(
        [_reference_loglik(lm, t, imgs, labels) for t, (_, imgs) in zip(texts, cases, strict=True)]
    )
    model = lm.replicas[0]
    with torch.inference_mode():
        shared = label_loglik_shared_prefix(model, rows, labels, lm.pad_id, "cpu")
        dup = label_loglik_duplicate(model, rows, labels, lm.pad_id, "cpu")
    # float32 forwards of rows padded to different widths: 1e-4 absolute on log-likelihoods.
    np.testing.assert_allclose(shared, expected, atol=1e-4)
    np.testing.assert_allclose(dup, expected, atol=1e-4)
