"""``reward_model``: a scalar-head (Bradley–Terry) reward model from a local directory.

What it checks: how much the reward model prefers the completion for its prompt.
Inputs: ``Sample.prompt`` and ``Sample.completion``, rendered by ``render``; ``reference`` and
``meta`` are not read. Score range: unbounded (the raw or normalized reward), or (0, 1) with
``squash: sigmoid``.

The model is any ``AutoModelForSequenceClassification`` checkpoint with ``num_labels: 1`` (what
TRL's RewardTrainer and OpenRLHF save). The score is the head's raw output by default;
optionally standardized ``(r - mean) / std`` and then squashed by a sigmoid into (0, 1).

A vision-language checkpoint in the format of ``safeladder.neural.vision_head`` (the VLM + a
one-row ``safeladder_score_head.safetensors``) is a reward model too: its rows are rendered with
their images by the checkpoint's processor (see ``classifier``).

Normalization stats: ``normalize: {mean: 0.3, std: 2.1}`` in the config, or ``normalize:
saved`` to read ``safeladder_reward_stats.json`` from the model directory (written at training
time; schema ``{"mean": float, "std": float, "count": int (optional)}``, other keys ignored).

Presets (``safeladder/presets/reward_model/<name>.yaml``; a preset fills what the config does
not set, and ``render`` key by key): ``skywork_reward_v2`` for the Skywork-Reward-V2 series
(Llama-3.1/3.2 and Qwen3 variants): the conversation rendered with the checkpoint's own chat
template, tokenized as the model card does (its "duplicate bos" strip then the tokenizer's
special tokens: one BOS for Llama, none for Qwen3), the score the raw logit at the row's last
token, as the card's one-row forward reads it (a checkpoint that saved no ``pad_token_id`` is
pooled at the last real token by the attention mask: see ``_saved_pad_id``).

Example::

    {"type": "reward_model", "path": "ckpt/rm", "normalize": "saved", "squash": "sigmoid"}
    {"type": "reward_model", "preset": "skywork_reward_v2",
     "path": "/models/Skywork-Reward-V2-Llama-3.1-8B", "render": {"max_length": 8192}}

Details per row: ``raw`` (the head output before normalization) and ``truncated: true`` when
the row was cut to fit ``render.max_length``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from safeladder.config import load_yaml, preset_path
from safeladder.errors import ConfigError
from safeladder.images import ImageLimits
from safeladder.neural.activations import sigmoid
from safeladder.neural.batching import Forward, last_token_index, pad_right
from safeladder.neural.rendering import RenderConfig
from safeladder.neural.runtime import RuntimeConfig
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig
from safeladder.verifiers.neural_base import NeuralVerifier

STATS_FILE = "safeladder_reward_stats.json"

#: Shipped presets (``safeladder/presets/reward_model/<name>.yaml``).
PRESETS = ("skywork_reward_v2",)
#: Fields a preset may set: how rows are rendered and scored, never the path or runtime.
_PRESET_FIELDS = frozenset(["render", "normalize", "squash"])


def load_preset(name: str) -> dict[str, Any]:
    """The fields of a shipped reward-model preset.

    >>> load_preset("skywork_reward_v2")["render"]
    {'template': 'chat'}
    """
    path = preset_path("reward_model", name)
    if path is None:
        raise ConfigError(
            f"preset: unknown reward_model preset {name!r}; known: {', '.join(PRESETS)}"
        )
    data = load_yaml(path)
    unknown = sorted(set(data) - _PRESET_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: keys {unknown} cannot be set by a preset")
    return data


class NormalizeStats(BaseModel):
    """Mean and standard deviation of the raw reward (e.g. over the training pairs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float = Field(description="Subtracted from the raw reward.")
    std: float = Field(gt=0, description="Divides the centred reward; > 0.")

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("normalize: mean and std must be finite numbers")
        return v


def read_reward_stats(model_dir: str | Path) -> NormalizeStats:
    """``NormalizeStats`` from ``model_dir/safeladder_reward_stats.json`` (ConfigError if absent)."""
    f = Path(model_dir) / STATS_FILE
    if not f.is_file():
        raise ConfigError(
            f"normalize: 'saved' but {f} does not exist; give normalize: {{mean: ..., std: ...}} "
            "or train with reward stats"
        )
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        return NormalizeStats(mean=data["mean"], std=data["std"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{f}: needs numeric 'mean' and 'std' (> 0): {exc}") from exc


class RewardModelConfig(VerifierConfig):
    """Config of a scalar reward model verifier; see the module docstring."""

    type: Literal["reward_model"] = "reward_model"
    path: str = Field(
        description="Local Hugging Face directory of a num_labels=1 sequence-classification model."
    )
    preset: Literal["skywork_reward_v2"] | None = Field(
        default=None,
        description=(
            "Shipped preset: skywork_reward_v2 (Skywork-Reward-V2 Llama/Qwen3 checkpoints: the "
            "checkpoint's chat template, tokenized as the model card does; the raw logit). It "
            "fills every field it sets that is not set here (render key by key)."
        ),
    )
    normalize: NormalizeStats | Literal["saved"] | None = Field(
        default=None,
        description=(
            "null = raw head output; {mean, std} = (r - mean) / std; 'saved' = read mean/std "
            "from the model dir's safeladder_reward_stats.json."
        ),
    )
    squash: Literal["none", "sigmoid"] = Field(
        default="none",
        description="'sigmoid' maps the (normalized) reward into (0, 1); 'none' leaves it.",
    )
    render: RenderConfig = Field(
        default_factory=RenderConfig, description="How rows become the model's input text."
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="Device, dtype, batching and caching."
    )
    image_limits: ImageLimits = Field(
        default_factory=ImageLimits,
        description=(
            "Vision-language checkpoints: limits every image of a row passes before it is "
            "decoded (count, pixels, bytes, root, http); a refused image is that row's error."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        # Explicit fields win over the preset's; render merges key by key, so that
        # render: {max_length: 8192} keeps the preset's template.
        if not isinstance(data, Mapping) or not data.get("preset"):
            return data
        if data["preset"] not in PRESETS:
            return data  # the Literal check reports it, naming the key
        merged = dict(load_preset(str(data["preset"])))
        for key, value in data.items():
            base = merged.get(key)
            if key == "render" and isinstance(base, Mapping) and isinstance(value, Mapping):
                merged[key] = {**base, **value}
            elif key == "render" and isinstance(base, Mapping) and isinstance(value, RenderConfig):
                merged[key] = {**base, **value.model_dump(exclude_unset=True)}
            else:
                merged[key] = value
        return merged

    @field_validator("path")
    @classmethod
    def _path_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("path: give the local directory of the reward model")
        return v

    @model_validator(mode="after")
    def _preset_render(self) -> RewardModelConfig:
        if self.preset is not None and self.render.template == "plain":
            raise ValueError(
                f"render.template: 'plain' contradicts preset {self.preset!r}, whose checkpoints "
                "read their own chat template; leave render.template unset (or 'chat')"
            )
        return self

    def build(self) -> Verifier:
        return RewardModelVerifier(self)


def _saved_pad_id(model_dir: str | Path) -> int | None:
    """``pad_token_id`` of the checkpoint's own ``config.json`` (None when absent or unreadable).

    The engine sets a missing one to the tokenizer's pad (or EOS) id so that batches can be
    padded; a sequence classifier then pools the last token that is not that id. A model card's
    single-row forward without a pad id pools the very last token instead, and with Llama 3.1
    Instruct's tokenizer (no pad token; EOS ``<|eot_id|>`` ends every rendered conversation)
    the two differ. Presets therefore pool the last real token themselves when the checkpoint
    saved no pad id, which is the card's number.
    """
    try:
        data = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pad = data.get("pad_token_id") if isinstance(data, dict) else None
    return pad if isinstance(pad, int) else None


def last_token_score_forward(pad_id: int) -> Forward:
    """A ``forward`` for a decoder ``*ForSequenceClassification``: the ``score`` head at each
    row's last real token (by the attention mask, whatever ``pad_token_id`` says), float32
    ``(b, num_labels)``."""

    def forward(batch: list[list[int]], model: Any, device: Any) -> np.ndarray:
        import torch

        input_ids, mask = pad_right(batch, pad_id, device)
        hidden = model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pooled = hidden[rows, last_token_index(mask).to(hidden.device)]
        return model.score(pooled).float().cpu().numpy()

    return forward


class RewardModelVerifier(NeuralVerifier):
    """Scores rows with a scalar reward head; range (-inf, inf), or [0, 1] with a sigmoid."""

    def __init__(self, config: RewardModelConfig):
        super().__init__(config)
        self.cfg = config
        loaded = self._load(config.path, config.render, config.runtime)
        n = int(getattr(loaded.config, "num_labels", 1))
        if n != 1:
            raise ConfigError(
                f"path: {config.path!r} has a {n}-label head; a reward model needs num_labels=1 "
                "(use type: classifier for label probabilities)"
            )
        if config.preset is not None and not getattr(loaded.tokenizer, "chat_template", None):
            raise ConfigError(
                f"path: preset {config.preset!r} renders with the checkpoint's chat template, but "
                f"the tokenizer in {config.path!r} has none; is this the released checkpoint?"
            )
        #: Pool the last real token explicitly (see ``_saved_pad_id``); else the model pools.
        self.pool_last_token = (
            config.preset is not None
            and loaded.processor is None
            and _saved_pad_id(loaded.path) is None
            and hasattr(loaded.replicas[0], "score")
        )
        if config.normalize == "saved":
            self.stats: NormalizeStats | None = read_reward_stats(loaded.path)
        else:
            self.stats = config.normalize
        if config.squash == "sigmoid":
            self.score_range = (0.0, 1.0)  # type: ignore[misc]

    def _fingerprint_state(self) -> str:
        return "stats:" + (self.stats.model_dump_json() if self.stats is not None else "none")

    def _forward(self) -> Forward:
        if self.pool_last_token:
            return last_token_score_forward(self.loaded.pad_id)
        return super()._forward()

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        raw = np.asarray(outputs[:, 0], dtype=np.float64)
        r = raw
        if self.stats is not None:
            r = (r - self.stats.mean) / self.stats.std
        if self.cfg.squash == "sigmoid":
            r = sigmoid(r)
        return [(float(s), "ok", {"raw": float(x)}) for s, x in zip(r, raw, strict=True)]
