"""Tiny random-init vision-language checkpoints built offline, for the VLM tests.

Each builder saves a directory the way a real checkpoint is laid out (``config.json`` + weights,
the tokenizer with its image special tokens, the image processor's config and a chat template)
with ``save_pretrained``, so the tests exercise safeladder's real loading code
(``AutoProcessor`` / ``AutoModelForImageTextToText``). Nothing is downloaded: the tokenizer is
the in-memory BPE of ``tests.helpers.make_tiny_tokenizer`` with the special tokens added.

- ``make_tiny_qwen2_vl(dir)``: Qwen2-VL (1 vision block, 1 text layer, hidden 32); every image
  is resized to 56x56 = a 4x4 patch grid = 4 merged image tokens.
- ``make_tiny_llava(dir)``: LLaVA (CLIP vision 28x28, patch 14, Llama text); every image is
  4 image tokens (2x2 patches; the CLS feature is dropped, ``vision_feature_select_strategy:
  default``).
- ``make_tiny_idefics3(dir)``: Idefics3 (SigLIP-style vision 56x56, patch 14, pixel shuffle
  2, Llama text); every image is padded to 56x56 = 16 patches = 4 image tokens, between
  ``<fake_token_around_image>`` / ``<global-img>`` markers.
- ``tiny_vlm_dir(family)``: one of them, built once per test session.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers import make_tiny_tokenizer

#: Qwen2-VL's chat template, cut down to what the tests need: image parts become
#: <|vision_start|><|image_pad|><|vision_end|>, text parts their text (the real template's
#: layout; https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/chat_template.json).
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: LLaVA-1.5-style template: USER: <image>\n{text} ASSISTANT: {text}
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    # Wider than the 0.02 default so random heads give spread-out scores.
    "initializer_range": 0.2,
}


def vlm_tokenizer(out: Path, special: list[str], style: str) -> Any:
    """The tiny in-memory BPE tokenizer saved in ``out`` with ``special`` tokens added."""
    from transformers import PreTrainedTokenizerFast

    make_tiny_tokenizer(out, style=style)
    tok = PreTrainedTokenizerFast.from_pretrained(str(out))
    tok.add_special_tokens({"additional_special_tokens": special})
    return tok


@contextlib.contextmanager
def without_video_processor() -> Iterator[None]:
    """Let Qwen2-VL's processor be built and loaded without a video processor.

    transformers 5.x type-checks every processor attribute, ``video_processor=None`` included,
    and its video processors need torchvision, which safeladder does not depend on. A verifier
    reads images only, so inside this block a missing video processor is accepted (a real
    Qwen2-VL install with torchvision loads its video processor and never needs this).
    """
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def check(self: Any, name: str, arg: Any) -> Any:
        if name == "video_processor" and arg is None:
            return None
        return original(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = check  # type: ignore[method-assign]
    try:
        yield
    finally:
        ProcessorMixin.check_argument_for_proper_class = original  # type: ignore[method-assign]


def make_tiny_qwen2_vl(dirpath: str | Path, *, seed: int = 0) -> Path:
    """Save a seeded random-init Qwen2-VL checkpoint with its processor; returns ``dirpath``."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
    )

    out = Path(dirpath)
    out.mkdir(parents=True, exist_ok=True)
    special = [
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tok = vlm_tokenizer(out, special, "qwen2")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    side = 56 * 56
    # The PIL backend: the default one needs torchvision, which is not a dependency.
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(min_pixels=side, max_pixels=side)
    # No video processor: video processors need torchvision, and a verifier reads images only.
    with without_video_processor():
        # Built once to check that the pieces fit together; saved piece by piece below, since
        # ProcessorMixin.save_pretrained cannot save a missing video processor.
        Qwen2VLProcessor(
            image_processor=image_processor, tokenizer=tok, chat_template=QWEN2_VL_TEMPLATE
        )
    cfg = Qwen2VLConfig(
        text_config={
            **_TEXT,
            "vocab_size": len(tok),
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.eos_token_id,
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "initializer_range": 0.2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(cfg)
    model.save_pretrained(str(out))
    image_processor.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(QWEN2_VL_TEMPLATE, encoding="utf-8")
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "Qwen2VLProcessor"}), encoding="utf-8"
    )
    return out


def make_tiny_llava(dirpath: str | Path, *, seed: int = 0) -> Path:
    """Save a seeded random-init LLaVA checkpoint with its processor; returns ``dirpath``."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(dirpath)
    out.mkdir(parents=True, exist_ok=True)
    tok = vlm_tokenizer(out, ["<image>"], "byte_level")
    from transformers.models.clip import CLIPImageProcessorPil

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
    )
    proc = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=1,
    )
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
            projection_dim=32,
            initializer_range=0.2,
        ),
        text_config=LlamaConfig(
            **_TEXT,
            vocab_size=len(tok),
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=False,
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    model.save_pretrained(str(out))
    proc.save_pretrained(str(out))
    return out


#: Idefics3 / SmolVLM's template, cut down: "User:<image>text<end_of_utterance>\nAssistant:"
#: (https://huggingface.co/HuggingFaceTB/SmolVLM-Instruct/blob/main/chat_template.json).
IDEFICS3_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def make_tiny_idefics3(dirpath: str | Path, *, seed: int = 0) -> Path:
    """Save a seeded random-init Idefics3 checkpoint with its processor; returns ``dirpath``."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    out = Path(dirpath)
    out.mkdir(parents=True, exist_ok=True)
    special = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    tok = vlm_tokenizer(out, special, "byte_level")
    side = {"longest_edge": 56}
    image_processor = Idefics3ImageProcessorPil(
        size=side, max_image_size=side, do_image_splitting=False
    )
    # image_seq_len = (56 / 14)**2 / scale_factor**2 = 4 tokens per image.
    proc = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=4,
        chat_template=IDEFICS3_TEMPLATE,
    )
    cfg = Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 14,
            "initializer_range": 0.2,
        },
        text_config={
            "model_type": "llama",
            **_TEXT,
            "vocab_size": len(tok),
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "tie_word_embeddings": False,
        },
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(cfg)
    model.save_pretrained(str(out))
    proc.save_pretrained(str(out))
    return out


_BUILT: dict[str, Path] = {}


def tiny_vlm_dir(family: str) -> Path:
    """A tiny VLM directory (``qwen2_vl``, ``llava``, ``idefics3``) built once per test session;
    read-only.

    Call it inside ``qwen2_vl_processor_without_torchvision()`` (the Qwen2-VL build needs it).
    """
    import atexit
    import shutil
    import tempfile

    if family not in _BUILT:
        make = {
            "qwen2_vl": make_tiny_qwen2_vl,
            "llava": make_tiny_llava,
            "idefics3": make_tiny_idefics3,
        }[family]
        root = Path(tempfile.mkdtemp(prefix=f"safeladder-vlm-{family}-"))
        atexit.register(shutil.rmtree, root, True)
        _BUILT[family] = make(root / family)
    return _BUILT[family]


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (40, 32)) -> bytes:
    """A solid-colour PNG with a diagonal line (so resizing keeps some structure)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, color)
    ImageDraw.Draw(im).line((0, 0, size[0], size[1]), fill=(255 - color[0], 30, 200), width=3)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@contextlib.contextmanager
def qwen2_vl_processor_without_torchvision() -> Iterator[None]:
    """``AutoProcessor.from_pretrained`` builds a Qwen2-VL / Qwen2.5-VL processor without a video
    processor.

    transformers' Qwen2-VL processors always load a video processor, which needs torchvision
    (not a safeladder dependency, absent from the test environment). Inside this block a
    directory whose ``processor_config.json`` names ``Qwen2VLProcessor`` or
    ``Qwen2_5_VLProcessor`` is loaded from its own files (image processor, tokenizer, chat
    template) with no video processor: the object AutoProcessor returns on a machine with
    torchvision, minus the video part. Other directories go through the real ``AutoProcessor``.
    """
    import transformers
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    real = AutoProcessor.from_pretrained

    def load(path: Any, *args: Any, **kwargs: Any) -> Any:
        cfg = Path(path) / "processor_config.json"
        data = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
        name = data.get("processor_class")
        if name not in ("Qwen2VLProcessor", "Qwen2_5_VLProcessor"):
            return real(path, *args, **kwargs)
        template = (Path(path) / "chat_template.jinja").read_text(encoding="utf-8")
        return getattr(transformers, name)(
            image_processor=AutoImageProcessor.from_pretrained(str(path), **kwargs),
            tokenizer=AutoTokenizer.from_pretrained(str(path), **kwargs),
            chat_template=template,
        )

    with without_video_processor():
        AutoProcessor.from_pretrained = load  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            AutoProcessor.from_pretrained = real  # type: ignore[method-assign]
