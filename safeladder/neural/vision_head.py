"""The safeladder VLM classifier format: a vision-language backbone plus a linear score head.

transformers has no ``*ForSequenceClassification`` class for the Qwen2-VL, Qwen2.5-VL, LLaVA or
Idefics3 / SmolVLM families, so ``classifier`` and ``reward_model`` read this format instead:

- the directory is the VLM checkpoint as ``save_pretrained`` writes it (``config.json`` with
  ``vision_config``, weights, and the processor's files: tokenizer, image processor, chat
  template); the language-model head in the weights, if any, is not used;
- ``safeladder_score_head.safetensors`` holds ``weight`` ``[num_labels, hidden]`` and optionally
  ``bias`` ``[num_labels]``, where ``hidden`` is the text model's hidden size;
- ``config.json`` carries ``id2label`` (hence ``num_labels``; one label for a reward model),
  ``label2id`` and optionally ``problem_type`` (``multi_label_classification``), at top level as
  for any sequence classifier.

The logits of a row are ``score(h)`` where ``h`` is the backbone's final hidden state (after
its final norm: ``AutoModel(...).last_hidden_state``) at the row's last non-padding token,
the pooling transformers' decoder sequence classifiers use. ``save_vision_score_head`` writes
the head and the labels into a VLM checkpoint directory.

Example::

    save_vision_score_head("ckpt/vlm-safety", weight, id2label={0: "unsafe", 1: "safe"})
    {"type": "classifier", "path": "ckpt/vlm-safety", "good_label": "safe"}
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError

__all__ = [
    "SCORE_HEAD_FILE",
    "attach_score_head",
    "save_vision_score_head",
    "vision_logits_forward",
]

SCORE_HEAD_FILE = "safeladder_score_head.safetensors"


def _hidden_size(config: Any) -> int:
    text = getattr(config, "text_config", None)
    size = getattr(text, "hidden_size", None) or getattr(config, "hidden_size", None)
    if not isinstance(size, int):
        raise ConfigError("the vision-language config has no text hidden_size")
    return size


@cache
def _score_model_class() -> Any:
    import torch
    from torch import nn

    class VisionScoreModel(nn.Module):
        """``backbone`` (an ``AutoModel`` VLM) + ``score`` (``nn.Linear(hidden, num_labels)``)."""

        def __init__(self, backbone: Any, score: Any):
            super().__init__()
            self.backbone = backbone
            self.score = score
            self.config = backbone.config

        def get_rope_index(self, *args: Any, **kwargs: Any) -> Any:
            return self.backbone.get_rope_index(*args, **kwargs)

        def forward(
            self, input_ids: Any, attention_mask: Any, position_ids: Any = None, **kw: Any
        ) -> Any:
            """Logits ``[b, num_labels]`` at each row's last real token (right padding)."""
            out = self.backbone(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
                **kw,
            )
            h = out.last_hidden_state  # [b, L, H]
            last = (attention_mask.long().sum(-1) - 1).clamp(min=0)
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
            return self.score(pooled.to(self.score.weight.dtype))

    return VisionScoreModel


def attach_score_head(backbone: Any, directory: str | os.PathLike[str]) -> Any:
    """``backbone`` wrapped with the score head saved in ``directory`` (see the module docstring).

    Raises:
        ConfigError: the head file is missing, or its shape disagrees with the config.
    """
    import torch
    from safetensors.torch import load_file

    d = Path(directory)
    f = d / SCORE_HEAD_FILE
    if not f.is_file():
        raise ConfigError(
            f"path: {str(d)!r} is a vision-language model without {SCORE_HEAD_FILE}; a VLM "
            "classifier or reward model needs the safeladder score head (see "
            "safeladder.neural.vision_head; label_judge uses the VLM as it is)"
        )
    try:
        tensors = load_file(str(f))
    except Exception as exc:
        raise ConfigError(f"{f}: cannot read the score head: {exc}") from exc
    weight = tensors.get("weight")
    cfg = backbone.config
    hidden = _hidden_size(cfg)
    n = int(getattr(cfg, "num_labels", 0) or 0)
    if weight is None or weight.ndim != 2 or weight.shape[1] != hidden:
        raise ConfigError(
            f"{f}: 'weight' must be [num_labels, {hidden}], got "
            f"{None if weight is None else tuple(weight.shape)}"
        )
    if weight.shape[0] != n:
        raise ConfigError(
            f"{f}: the head has {weight.shape[0]} outputs but config.json has {n} labels "
            "(id2label); write both with save_vision_score_head"
        )
    bias = tensors.get("bias")
    if bias is not None and tuple(bias.shape) != (n,):
        raise ConfigError(f"{f}: 'bias' must be [{n}], got {tuple(bias.shape)}")
    dtype = next(backbone.parameters()).dtype
    score = torch.nn.Linear(hidden, n, bias=bias is not None, dtype=dtype)
    with torch.no_grad():
        score.weight.copy_(weight.to(dtype))
        if bias is not None:
            score.bias.copy_(bias.to(dtype))
    return _score_model_class()(backbone, score)


def save_vision_score_head(
    directory: str | os.PathLike[str],
    weight: Any,
    bias: Any = None,
    *,
    id2label: dict[int, str] | None = None,
    problem_type: str | None = None,
) -> Path:
    """Write the score head into a saved VLM checkpoint directory and its labels into config.json.

    Args:
        directory: a VLM checkpoint saved with ``save_pretrained`` (config.json present).
        weight: ``[num_labels, hidden]`` array or tensor.
        bias: optional ``[num_labels]``.
        id2label: label names by index (default ``LABEL_i``); ``num_labels`` follows from it.
        problem_type: e.g. ``multi_label_classification``; None leaves the config's.

    Returns:
        the path of the written head file.
    """
    import torch
    from safetensors.torch import save_file

    d = Path(directory)
    cfg_file = d / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"save_vision_score_head: {str(d)!r} has no config.json")
    w = torch.as_tensor(np.asarray(weight, dtype=np.float32)).contiguous()
    if w.ndim != 2:
        raise ValueError(f"weight must be [num_labels, hidden], got shape {tuple(w.shape)}")
    tensors = {"weight": w}
    if bias is not None:
        tensors["bias"] = torch.as_tensor(np.asarray(bias, dtype=np.float32)).contiguous()
    labels = id2label or {i: f"LABEL_{i}" for i in range(w.shape[0])}
    if sorted(labels) != list(range(w.shape[0])):
        raise ValueError(f"id2label must name labels 0..{w.shape[0] - 1}, got {sorted(labels)}")
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg["id2label"] = {str(i): name for i, name in sorted(labels.items())}
    cfg["label2id"] = {name: i for i, name in sorted(labels.items())}
    if problem_type is not None:
        cfg["problem_type"] = problem_type
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    out = d / SCORE_HEAD_FILE
    save_file(tensors, str(out))
    return out


def vision_logits_forward(pad_id: int) -> Any:
    """A ``run_batched`` forward over ``VisionRow`` micro-batches: float32 logits ``[b, k]``.

    Rows are right-padded; the model is a ``VisionScoreModel`` (``attach_score_head``).
    """
    from safeladder.neural.vision import collate

    def forward(batch: list[Any], model: Any, device: Any) -> np.ndarray:
        dtype = next(model.parameters()).dtype
        c = collate(batch, pad_id, device, model, left=False, dtype=dtype)
        return model(**c.model_inputs()).float().cpu().numpy()

    return forward
