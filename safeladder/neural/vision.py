"""Vision-language checkpoints in the engine: detection, the processor, per-row inputs, collation.

A checkpoint directory is a VLM when it holds a processor config (``processor_config.json`` or
``preprocessor_config.json``) and its ``config.json`` has a ``vision_config``. Its own
``AutoProcessor`` (tokenizer + image processor + chat template) turns a row into model inputs:

1. ``row_image_refs(prompt, images)``: the row's images in the order the model sees them: the
   image parts of a chat prompt (payloads, or TRL's ``{"type": "image"}`` placeholders filled
   from ``Sample.images`` in order), then the ``Sample.images`` no placeholder took;
2. ``vision_messages``: the chat with every image as an ``{"type": "image"}`` part (unplaced
   images lead the first user turn) and text parts as text, rendered by the processor's chat
   template (``render_vision_text``);
3. ``process_row``: ``processor(text=[text], images=...)`` gives the ids with every image
   placeholder expanded to its image tokens, plus pixel tensors: one ``VisionRow``;
   ``fit_vision_row`` does 2-3 for a (prompt, completion) pair and cuts text that does not fit
   ``max_length`` as the text path does (the prompt from its start first, then the
   completion's start); images are never cut.

A ``VisionRow`` is one row's input for ``run_batched``: its length (the token budget) counts the
image tokens; its dedup / LRU cache key is the ids plus the images' content hashes
(``safeladder.images.image_key``), so identical text with different images never shares a
result. ``collate`` pads a micro-batch (left or right) and gathers the image tensors in row
order in the layout of each supported family: Qwen2-VL / Qwen2.5-VL (``pixel_values``
``[patches, C*T*P*P]``, ``image_grid_thw`` ``[images, 3]``) and LLaVA (``pixel_values``
``[images, 3, H, W]``) concatenate along their first axis, and the models assign image
features to image tokens in order; Idefics3 / SmolVLM keep a batch axis (``pixel_values``
``[rows, images, 3, H, W]``, ``pixel_attention_mask`` ``[rows, images, H, W]``), so rows are
zero-padded to the most images (and pixels) of the batch, the all-zero padding images the
model itself drops, and a text-only row among image rows is all padding. Position ids are explicit: ``mask.cumsum - 1`` per row (any padding side), or
for M-RoPE models (Qwen2-VL family) the model's own ``get_rope_index``, whose per-row offsets
(``Collated.deltas``) continue the positions of tokens appended after a cached prefix.

Importing this module does not import torch or transformers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safeladder.errors import ConfigError, InputError
from safeladder.images import ImageRef, content_text
from safeladder.neural.rendering import keep_end, keep_prompt_end

if TYPE_CHECKING:
    import torch

__all__ = [
    "PROCESSOR_FILES",
    "SUPPORTED_VISION_TYPES",
    "Collated",
    "VisionRow",
    "collate",
    "fit_vision_row",
    "is_vision_checkpoint",
    "load_processor",
    "process_row",
    "render_vision_text",
    "row_image_refs",
    "vision_messages",
    "vision_model_type",
]

#: Files whose presence (with a ``vision_config`` in config.json) makes a directory a VLM.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
#: Model types whose image tensors concatenate along their first axis (see the module docstring).
SUPPORTED_VISION_TYPES = ("qwen2_vl", "qwen2_5_vl", "llava", "idefics3", "smolvlm")
#: Families whose image tensors keep a per-row batch axis (padded, then stacked).
_BATCH_AXIS_TYPES = ("idefics3", "smolvlm")
#: Processor outputs aligned with the tokens (padded like the ids, not concatenated).
_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def _config(path: Path) -> dict[str, Any]:
    f = path / "config.json"
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"path: {f} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def is_vision_checkpoint(path: str | Path) -> bool:
    """Whether the directory holds a vision-language checkpoint (processor config + vision_config).

    Raises:
        ConfigError: ``config.json`` has a ``vision_config`` but no processor config is saved
            next to it (the image preprocessing would be unknown).
    """
    p = Path(path)
    cfg = _config(p)
    if "vision_config" not in cfg:
        return False
    if not any((p / f).is_file() for f in PROCESSOR_FILES):
        raise ConfigError(
            f"path: {str(p)!r} is a vision-language model (config.json has vision_config) but has "
            f"no processor config ({' or '.join(PROCESSOR_FILES)}); save the checkpoint's "
            "processor with processor.save_pretrained(path)"
        )
    return True


def vision_model_type(path: str | Path) -> str:
    """The ``model_type`` of a VLM directory, checked against ``SUPPORTED_VISION_TYPES``."""
    kind = str(_config(Path(path)).get("model_type", ""))
    if kind not in SUPPORTED_VISION_TYPES:
        raise ConfigError(
            f"path: vision-language model type {kind!r} in {str(path)!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_VISION_TYPES)}"
        )
    return kind


def load_processor(path: str | Path) -> Any:
    """The checkpoint's own processor: ``AutoProcessor.from_pretrained(path)``, local files only.

    Raises:
        ConfigError: it cannot be loaded (the message names the directory; a missing
            torchvision, which transformers' Qwen2-VL video processor needs, is said so).
    """
    from transformers import AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        hint = " (pip install torchvision)" if "torchvision" in str(exc).lower() else ""
        raise ConfigError(
            f"path: cannot load the processor of {str(path)!r} with AutoProcessor{hint}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(proc, "tokenizer") or not hasattr(proc, "image_processor"):
        raise ConfigError(
            f"path: the processor of {str(path)!r} ({type(proc).__name__}) has no tokenizer and "
            "image processor; a vision-language verifier needs both"
        )
    return proc


# -- rows --------------------------------------------------------------------------------------


def _is_image_part(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type") in ("image", "image_url")


def _part_payload(part: Mapping[str, Any]) -> Any:
    if part.get("type") == "image_url":
        url = part.get("image_url")
        return url.get("url") if isinstance(url, Mapping) else url
    return part.get("image")


def row_image_refs(
    prompt: Any, images: Sequence[ImageRef], row: int | None = None
) -> list[ImageRef]:
    """A row's image references in model order (see the module docstring, step 1).

    >>> row_image_refs([{"role": "user", "content": [{"type": "image"}, {"type": "text",
    ...     "text": "hi"}]}], ["a.png", "b.png"])
    ['a.png', 'b.png']

    Raises:
        InputError: the prompt has more image placeholders (``{"type": "image"}`` without a
            payload) than the row has images: an image the prompt refers to is missing.
    """
    own = list(images)
    placed: list[ImageRef] = []
    taken = 0
    if isinstance(prompt, list):
        for msg in prompt:
            content = msg.get("content") if isinstance(msg, Mapping) else None
            for part in content if isinstance(content, list) else []:
                if not _is_image_part(part):
                    continue
                payload = _part_payload(part)
                if payload:
                    placed.append(payload)
                elif taken < len(own):
                    placed.append(own[taken])
                    taken += 1
                else:
                    where = f"row {row}: " if row is not None else ""
                    raise InputError(
                        f"{where}the prompt has more image placeholders than the row has images "
                        f"({len(own)}); each {{'type': 'image'}} part needs an image in 'images'",
                        row=row,
                        field="images",
                    )
    return placed + own[taken:]


def vision_messages(prompt: Any, n_images: int, completion: str | None) -> list[dict[str, Any]]:
    """Chat messages for the processor's template: image parts as ``{"type": "image"}``.

    The prompt's own image parts stay where they are (up to ``n_images``); images beyond them
    lead the first user turn. A string prompt is one user message. ``completion`` (if not None)
    is appended as the assistant turn.
    """
    msgs: list[dict[str, Any]] = []
    placed = 0
    source = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    for m in source:
        role = str(m.get("role", "user")) if isinstance(m, Mapping) else "user"
        content = m.get("content") if isinstance(m, Mapping) else m
        parts: list[dict[str, Any]] = []
        if isinstance(content, list):
            for part in content:
                if _is_image_part(part):
                    if placed < n_images:
                        parts.append({"type": "image"})
                        placed += 1
                else:
                    text = content_text([part]) if isinstance(part, Mapping) else str(part)
                    parts.append({"type": "text", "text": text})
        else:
            parts.append({"type": "text", "text": content_text(content)})
        msgs.append({"role": role, "content": parts})
    extra = n_images - placed
    if extra > 0:
        first = next((m for m in msgs if m["role"] == "user"), None)
        if first is None:
            first = {"role": "user", "content": []}
            msgs.insert(0, first)
        first["content"] = [{"type": "image"} for _ in range(extra)] + first["content"]
    if completion is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": completion}]})
    return msgs


def render_vision_text(processor: Any, messages: list[dict[str, Any]], generation: bool) -> str:
    """The processor's chat template applied to ``messages`` (text with image placeholders)."""
    if not getattr(processor, "chat_template", None):
        raise ConfigError(
            "the vision-language processor has no chat template; save one with the checkpoint "
            "(processor.chat_template), image placement depends on it"
        )
    return str(
        processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    )


@dataclass(frozen=True, eq=False)
class VisionRow:
    """One row's multimodal model input.

    Attributes:
        ids: token ids with every image placeholder expanded (image tokens included).
        token_types: per-token values of the processor's token-aligned outputs other than the
            ids and mask (e.g. ``mm_token_type_ids``), name → int64 ``[len(ids)]``.
        images: image-aligned processor outputs (``pixel_values``, ``image_grid_thw``...), name
            → array whose first axis is concatenated across rows; empty for a text-only row.
        image_keys: content hashes of the row's images, in order.
    """

    ids: tuple[int, ...]
    token_types: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    image_keys: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    def key(self) -> tuple[Any, ...]:
        """Dedup / cache identity: the ids and the images' content hashes."""
        return (self.ids, self.image_keys)

    def digest(self) -> bytes:
        """A 16-byte digest of ``key()`` for the LRU cache."""
        h = hashlib.blake2b(np.asarray(self.ids, dtype=np.int64).tobytes(), digest_size=16)
        for k in self.image_keys:
            h.update(b"|" + k.encode())
        return h.digest()

    def extended(self, tail: Sequence[int]) -> VisionRow:
        """This row with text tokens ``tail`` appended (their token types 0)."""
        extra = np.zeros(len(tail), dtype=np.int64)
        return VisionRow(
            ids=self.ids + tuple(int(t) for t in tail),
            token_types={k: np.concatenate([v, extra]) for k, v in self.token_types.items()},
            images=self.images,
            image_keys=self.image_keys,
        )


def process_row(
    processor: Any, text: str, images: Sequence[Any], image_keys: Sequence[str], row: int
) -> VisionRow:
    """``processor(text=[text], images=images)`` as a ``VisionRow``.

    Raises:
        InputError: the processor refused the row (e.g. image placeholders and images disagree).
    """
    try:
        enc = processor(text=[text], images=list(images) if images else None, return_tensors="np")
    except Exception as exc:
        raise InputError(
            f"row {row}: the processor failed: {type(exc).__name__}: {exc}", row=row
        ) from exc
    ids = np.asarray(enc["input_ids"])[0]
    token_types: dict[str, np.ndarray] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, value in enc.items():
        if name in ("input_ids", "attention_mask"):
            continue
        arr = np.asarray(value)
        if name in _TOKEN_KEYS:
            token_types[name] = arr[0].astype(np.int64)
        elif images:
            tensors[name] = arr
    return VisionRow(tuple(int(t) for t in ids), token_types, tensors, tuple(image_keys))


def _prompt_chars(prompt: Any) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    total = 0
    for m in prompt:
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return total


def _largest(fits: Any, hi: int) -> int:
    """The largest k in [0, hi] with fits(k), given fits(0) (binary search; token counts grow
    with the characters kept, up to merges at the cut, and the k returned always fits)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_vision_row(
    processor: Any,
    prompt: Any,
    completion: str,
    images: Sequence[Any],
    image_keys: Sequence[str],
    max_length: int,
    row: int,
) -> tuple[VisionRow, bool]:
    """``(VisionRow, truncated)`` of a (prompt, completion) pair, its text cut to ``max_length``.

    The row's image tokens always stay; the text keeps the END of the prompt (cut first) and,
    when the completion alone is too long, the end of the completion with the prompt's text
    emptied (the rule of ``rendering.encode_pairs``).

    Raises:
        InputError: the images and the template's fixed text alone exceed ``max_length``.
    """
    n = len(images)

    def text_of(p: Any, c: str) -> str:
        return render_vision_text(processor, vision_messages(p, n, c), generation=False)

    text = text_of(prompt, completion)
    full = process_row(processor, text, images, image_keys, row)
    if len(full) <= max_length:
        return full, False
    tok = processor.tokenizer

    def tokens(t: str) -> int:
        return len(tok(t, add_special_tokens=False)["input_ids"])

    # Image placeholders are one token in the text and their image tokens in ``full``.
    budget = max_length - (len(full) - tokens(text))
    empty = keep_prompt_end(prompt, 0)[0]
    if tokens(text_of(empty, completion)) <= budget:
        k = _largest(
            lambda k: tokens(text_of(keep_prompt_end(prompt, k)[0], completion)) <= budget,
            _prompt_chars(prompt),
        )
        prompt, completion = keep_prompt_end(prompt, k)[0], completion
    elif tokens(text_of(empty, "")) <= budget:
        k = _largest(
            lambda k: tokens(text_of(empty, keep_end(completion, k)[0])) <= budget,
            len(completion),
        )
        prompt, completion = empty, keep_end(completion, k)[0]
    else:
        raise InputError(
            f"row {row}: its {n} images ({len(full) - tokens(text) + n} image tokens) and the "
            f"template's fixed text exceed max_length={max_length} even without the text",
            row=row,
        )
    return process_row(processor, text_of(prompt, completion), images, image_keys, row), True


# -- batches -----------------------------------------------------------------------------------


@dataclass
class Collated:
    """A padded micro-batch of ``VisionRow``.

    Attributes:
        input_ids, attention_mask: LongTensor ``[b, L]``.
        position_ids: ``[b, L]``, or ``[3, b, L]`` for M-RoPE models.
        kwargs: the other model inputs (token types ``[b, L]``, image tensors).
        deltas: M-RoPE only: ``[b, 1]`` offsets (max position + 1 - real tokens) per row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    kwargs: dict[str, Any]
    deltas: torch.Tensor | None = None

    def model_inputs(self) -> dict[str, Any]:
        """Keyword arguments of the model's forward."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
            **self.kwargs,
        }

    def next_positions(self, n: int) -> torch.Tensor:
        """Positions of ``n`` tokens appended after every row: ``[b, n]`` or ``[3, b, n]``."""
        import torch

        real = self.attention_mask.long().sum(-1, keepdim=True)  # [b, 1]
        pos = real + torch.arange(n, device=real.device)[None, :]
        if self.deltas is None:
            return pos
        pos = pos + self.deltas.to(pos.device)
        return pos[None].expand(3, -1, -1)


def _stack_padded(arrays: Sequence[np.ndarray | None]) -> torch.Tensor:
    """``[1, n_i, ...]`` per row (None: a text-only row) → zero-padded ``[rows, max n, ...]``."""
    import torch

    present = [a for a in arrays if a is not None]
    shape = [max(a.shape[d] for a in present) for d in range(1, present[0].ndim)]
    out = np.zeros((len(arrays), *shape), dtype=present[0].dtype)
    for i, a in enumerate(arrays):
        if a is not None:
            index: tuple[int | slice, ...] = (i, *(slice(0, n) for n in a.shape[1:]))
            out[index] = a[0]
    return torch.from_numpy(out)


def _rope_index(model: Any) -> Any:
    """The model's ``get_rope_index`` (M-RoPE families), wherever the wrapper keeps it."""
    for m in (model, getattr(model, "model", None), getattr(model, "backbone", None)):
        fn = getattr(m, "get_rope_index", None) if m is not None else None
        if fn is not None:
            return fn
    return None


def collate(
    rows: Sequence[VisionRow],
    pad_id: int,
    device: Any,
    model: Any,
    *,
    left: bool,
    dtype: Any = None,
) -> Collated:
    """Pad ``rows`` (left or right) and gather their image tensors for ``model``.

    Args:
        rows: the micro-batch.
        pad_id: id written at padding positions (masked out).
        device: where the tensors go.
        model: the model (M-RoPE models compute their 3-D positions with it).
        left: left padding (every row ends in the last column) or right padding.
        dtype: floating image tensors are cast to it (the model's dtype); None keeps them.
    """
    import torch

    b = len(rows)
    width = max(len(r) for r in rows)
    ids = torch.full((b, width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    types: dict[str, torch.Tensor] = {
        k: torch.zeros((b, width), dtype=torch.long) for r in rows for k in r.token_types
    }
    for i, r in enumerate(rows):
        n = len(r)
        cols = slice(width - n, width) if left else slice(0, n)
        ids[i, cols] = torch.as_tensor(r.ids, dtype=torch.long)
        mask[i, cols] = 1
        for k, v in r.token_types.items():
            types[k][i, cols] = torch.from_numpy(np.ascontiguousarray(v))
    kwargs: dict[str, Any] = {k: v.to(device) for k, v in types.items()}
    names = [k for r in rows for k in r.images]
    batch_axis = getattr(getattr(model, "config", None), "model_type", None) in _BATCH_AXIS_TYPES
    for name in dict.fromkeys(names):
        if batch_axis:
            t = _stack_padded([r.images.get(name) for r in rows])
        else:
            parts = [
                torch.from_numpy(np.ascontiguousarray(r.images[name])) for r in rows if r.images
            ]
            t = torch.cat(parts, dim=0)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        kwargs[name] = t.to(device)
    ids, mask = ids.to(device), mask.to(device)
    rope = _rope_index(model)
    deltas = None
    if rope is not None and "mm_token_type_ids" in kwargs:
        pos, deltas = rope(
            ids,
            mm_token_type_ids=kwargs["mm_token_type_ids"],
            image_grid_thw=kwargs.get("image_grid_thw"),
            attention_mask=mask,
        )
    else:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return Collated(ids, mask, pos, kwargs, deltas)
