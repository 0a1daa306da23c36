"""TRL adapter with images: the dataset's ``images`` / ``image`` columns reach ``Sample.images``.

The call shape is TRL 1.16's own (``trl/trainer/grpo_trainer.py``): for a VLM policy,
``_generate_and_score_completions`` takes the images from ``inputs[i]["images"]`` (else
``[inputs[i]["image"]]``), fills the prompt's image placeholders with them through
``trl.data_utils.prepare_multimodal_messages``, and ``_calculate_rewards`` then calls every
reward function with ``prompts=`` those filled prompts and every dataset column (images
included) as keyword arguments. The unit tests build exactly that call with TRL's real
``prepare_multimodal_messages``; the slow test runs a real ``GRPOTrainer`` with a tiny
random-init LLaVA policy built offline.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder import Sample, load_reward
from safeladder.errors import InputError
from safeladder.integrations.trl import as_trl, trl_batch

COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (250, 200, 180)]
IMAGE_REWARD = {"name": "img", "terms": [{"name": "img", "verifier": {"type": "image_safety"}}]}


def _png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _pil(colour: tuple[int, int, int]) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(_png(colour)))


def _fill(messages: list[dict[str, Any]], images: list[Any] | None) -> list[dict[str, Any]]:
    """What ``trl.data_utils.prepare_multimodal_messages`` makes of string-content messages:
    every content a list of parts, one ``{"type": "image", "image": img}`` per image before the
    first user message's text (importing TRL costs ~10 s, so the unit tests use this copy and
    ``test_fill_matches_trl`` checks it against the real function)."""
    images = images or []
    out = []
    first = True
    for m in messages:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}]
        if m["role"] == "user" and first:
            parts = [{"type": "image", "image": img} for img in images] + parts
            first = False
        out.append({**m, "content": parts})
    return out


def _trl_call(rows: list[dict[str, Any]], fill: Any = _fill) -> tuple[list[Any], dict[str, Any]]:
    """``(prompts, reward_kwargs)`` as GRPOTrainer builds them for ``rows`` (dataset examples)."""
    if "images" in rows[0]:
        images = [r.get("images") for r in rows]
    else:
        images = [[r["image"]] if r.get("image") is not None else None for r in rows]
    prompts = [fill(r["prompt"], imgs) for r, imgs in zip(rows, images, strict=True)]
    keys = [k for k in rows[0] if k not in ("prompt", "completion", "completion_ids")]
    kwargs = {k: [r[k] for r in rows] for k in keys}
    kwargs.update(trainer_state=None, log_extra=lambda *a: None, log_metric=lambda *a: None)
    return prompts, kwargs


def _question(text: str = "Is this safe?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def image_reward() -> Any:
    reward = load_reward(IMAGE_REWARD)
    yield reward
    reward.close()


def test_image_column_reaches_sample_images_once() -> None:
    pics = [_pil(c) for c in COLOURS[:2]]
    rows = [{"prompt": _question(), "image": p, "task": "vqa"} for p in pics]
    prompts, kwargs = _trl_call(rows)
    # TRL put each image into its prompt as well as into the "image" column.
    assert prompts[0][0]["content"][0]["image"] is pics[0]
    batch = trl_batch(prompts, ["ok", "ok"], kwargs)
    assert [len(imgs) for imgs in batch.images] == [1, 1]
    assert batch.images[0][0] is pics[0] and batch.images[1][0] is pics[1]
    # The prompt keeps a bare placeholder: the image is in Sample.images only.
    assert batch.prompts[0] == [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Is this safe?"}],
        }
    ]
    assert batch.metas == [{"task": "vqa"}, {"task": "vqa"}]  # no pixels in meta


def test_images_column_lists_per_row_in_placeholder_order() -> None:
    a, b, c = (_pil(col) for col in COLOURS[:3])
    rows = [
        {"prompt": _question(), "images": [a, b]},
        {"prompt": _question(), "images": [c]},
        {"prompt": _question(), "images": []},
    ]
    prompts, kwargs = _trl_call(rows)
    batch = trl_batch(prompts, ["x", "y", "z"], kwargs)
    assert [tuple(id(i) for i in imgs) for imgs in batch.images] == [(id(a), id(b)), (id(c),), ()]


def test_images_column_wins_over_image_as_in_grpo_trainer() -> None:
    a, b = _pil(COLOURS[0]), _pil(COLOURS[1])
    batch = trl_batch(["q"], ["x"], {"images": [[a]], "image": [b], "k": [1]})
    assert batch.images[0] == (a,) and batch.metas == [{"k": 1}]


@pytest.mark.parametrize(
    "cell",
    [
        "path",
        "bytes",
        "data_url",
        "hf_cell",
        "numpy_list",
    ],
)
def test_every_cell_shape_is_a_reference(cell: str, tmp_path: Path) -> None:
    png = _png(COLOURS[0])
    path = tmp_path / "a.png"
    path.write_bytes(png)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    value = {
        "path": str(path),
        "bytes": png,
        "data_url": url,
        "hf_cell": {"bytes": png, "path": None},
        "numpy_list": np.array([url], dtype=object),
    }[cell]
    want = {"path": str(path), "bytes": png, "data_url": url, "hf_cell": png, "numpy_list": url}
    batch = trl_batch(["q"], ["x"], {"images": [value]})
    assert batch.images == [(want[cell],)]


def test_prompt_image_parts_without_a_column_become_sample_images() -> None:
    url = "data:image/png;base64," + base64.b64encode(_png(COLOURS[2])).decode()
    prompt = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "and this?"},
            ],
        }
    ]
    batch = trl_batch([prompt], ["x"], {})
    assert batch.images == [(url,)]
    assert batch.prompts[0][0]["content"][0] == {"type": "image"}
    assert prompt[0]["content"][0]["type"] == "image_url"  # the caller's prompt is untouched


def test_a_bad_image_cell_names_the_column_and_row() -> None:
    with pytest.raises(InputError, match=r"row 1: image.*int"):
        trl_batch(["q", "q"], ["x", "y"], {"image": ["a.png", 7]})


def test_same_numbers_as_reward_score(image_reward: Any) -> None:
    pics = [_pil(c) for c in COLOURS]
    rows = [{"prompt": _question(), "image": p} for p in pics]
    rows.append({"prompt": _question("no picture"), "image": None})
    prompts, kwargs = _trl_call(rows)
    got = as_trl(image_reward)(prompts=prompts, completions=["ok"] * len(rows), **kwargs)
    direct = image_reward.score(
        [Sample(prompt="Is this safe?", completion="ok", images=(_pil(c),)) for c in COLOURS]
        + [Sample(prompt="no picture", completion="ok")]
    )
    assert got[:4] == [float(x) for x in direct.total[:4]]
    assert all(0.0 <= g <= 1.0 for g in got[:4])  # type: ignore[operator]
    assert got[4] is None  # no image: image_safety abstains, the row is unscorable (None)


def test_a_broken_image_is_that_rows_none(image_reward: Any) -> None:
    truncated = _png(COLOURS[0])[:40]
    f = as_trl(image_reward)
    got = f(prompts=["q", "q"], completions=["a", "b"], images=[[truncated], [_png(COLOURS[1])]])
    assert got[0] is None and isinstance(got[1], float)


# ------------------------------------------------------------------ TRL itself


@pytest.mark.slow
def test_fill_matches_trl() -> None:
    from trl.data_utils import prepare_multimodal_messages

    a, b = _pil(COLOURS[0]), _pil(COLOURS[1])
    messages = [{"role": "system", "content": "be brief"}, *_question(), *_question("again")]
    for images in ([a], [a, b], None):
        assert _fill(messages, images) == prepare_multimodal_messages(messages, images=images)
    rows = [{"prompt": _question(), "images": [a, b]}]
    assert _trl_call(rows, prepare_multimodal_messages)[0] == _trl_call(rows)[0]


#: A chat template that renders image parts as LLaVA's "<image>" token.
_LLAVA_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>{% elif p['type'] == 'text' %}{{ p['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_llava(dirpath: Path) -> Path:
    """A random-init 1-layer LLaVA (CLIP vision tower, Qwen2 text model, hidden 32, 28×28
    images) with its processor and an in-memory tokenizer, saved to ``dirpath``.

    LLaVA rather than Qwen2-VL: transformers 5.25 cannot build a Qwen2-VL processor without
    torchvision (its video processor class is only registered with torchvision installed),
    and the test environment has none; LlavaProcessor needs an image processor and a
    tokenizer only, and GRPOTrainer drives it the same way.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    from tests.helpers import make_tiny_tokenizer

    make_tiny_tokenizer(dirpath)
    tok = PreTrainedTokenizerFast.from_pretrained(str(dirpath))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<image>"]})
    tok.chat_template = _LLAVA_TEMPLATE
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
        ),
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=_LLAVA_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(str(dirpath))
    text = {
        "model_type": "qwen2",
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "tie_word_embeddings": False,
    }
    vision = {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "image_size": 28,
        "patch_size": 14,
        "projection_dim": 32,
    }
    cfg = LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(str(dirpath))
    return dirpath


# transformers warns about its own renames and TRL about its defaults: not ours.
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.slow
def test_grpo_trainer_with_a_vlm_policy_scores_the_dataset_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets import Dataset
    from PIL import Image
    from transformers import LlavaForConditionalGeneration, LlavaProcessor
    from trl import GRPOConfig, GRPOTrainer

    model_dir = _tiny_llava(tmp_path / "llava")
    reward = load_reward(IMAGE_REWARD)
    batches: list[Any] = []
    real = reward.score

    def spy(batch: Any) -> Any:
        batches.append(batch)
        return real(batch)

    monkeypatch.setattr(reward, "score", spy)
    ds = Dataset.from_list(
        [
            {"prompt": _question("What colour is it?"), "image": Image.new("RGB", (32, 32), c)}
            for c in COLOURS
        ]
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        use_vllm=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        max_steps=2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=LlavaForConditionalGeneration.from_pretrained(str(model_dir)),
        processing_class=LlavaProcessor.from_pretrained(str(model_dir)),
        reward_funcs=as_trl(reward),
        args=args,
        train_dataset=ds,
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and len(batches) == 2
    colours = {
        c: real([Sample(prompt="", completion="x", images=(Image.new("RGB", (32, 32), c),))]).total[
            0
        ]
        for c in COLOURS
    }
    for batch, step in zip(batches, logs, strict=True):
        assert all(len(imgs) == 1 for imgs in batch.images)  # each image once, not twice
        got = []
        for imgs, prompt in zip(batch.images, batch.prompts, strict=True):
            assert prompt[0]["content"][0] == {"type": "image"}
            (colour,) = {imgs[0].getpixel((0, 0))}
            got.append(colour)
        assert set(got) <= set(COLOURS)
        # TRL logs the mean of what the callable returned: the image scores of these rows.
        want = float(np.mean([colours[c] for c in got]))
        assert step["rewards/img/mean"] == pytest.approx(want, abs=1e-5)
        assert step["img/unscorable_rate"] == 0.0
    reward.close()
