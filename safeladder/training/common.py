"""Shapes every training kind shares: model sources, loop settings, records, the outcome.

The runner (``safeladder.training.runner``) reads the config, loads and splits the data into
``TrainData``, calls the kind's ``train`` function, and then evaluates, calibrates and writes
the output directory from the ``TrainOutcome`` it gets back. A kind only trains and predicts.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from safeladder.data.fields import FieldMap as CoreFieldMap

PACKAGED_MODELS = ("all-MiniLM-L6-v2",)


class RandomInit(BaseModel):
    """A random-init model built from a transformers config (tests, ablations)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: dict[str, Any] = Field(
        description="transformers config kwargs, with model_type (e.g. {model_type: bert, ...})."
    )
    tokenizer: str = Field(description="Local directory of the tokenizer to pair it with.")


class ModelSource(BaseModel):
    """Where the starting weights come from: exactly one of path, packaged, random_init."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str | None = Field(default=None, description="Local HF model directory.")
    packaged: Literal["all-MiniLM-L6-v2"] | None = Field(
        default=None, description="A model shipped by a PyPI package (offline)."
    )
    random_init: RandomInit | None = Field(default=None, description="Random init from a config.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("path", "packaged", "random_init") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"model: give exactly one of path, packaged, random_init (got {given or 'none'})"
            )
        return self


class LoraSettings(BaseModel):
    """LoRA adapter (peft) instead of full fine-tuning; the head is always trained in full."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(default=8, ge=1, description="Adapter rank.")
    alpha: int = Field(default=16, ge=1, description="LoRA scaling numerator (alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | None = Field(
        default=None, description="Module names to adapt; null = peft's default for the model."
    )


class LoopSettings(BaseModel):
    """The optimisation loop shared by every torch-based kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, description="Seeds python, numpy, torch and the data order.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1, description="Linear warm-up fraction.")
    batch_size: int = Field(default=16, ge=1, description="Per-device train batch size.")
    eval_batch_size: int = Field(default=32, ge=1, description="Per-device eval batch size.")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    max_length: int = Field(default=256, ge=8, description="Tokens per input; longer is cut.")
    eval_steps: int | None = Field(
        default=None, ge=1, description="Evaluate (and checkpoint) every N steps; null = per epoch."
    )
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="Stop after N evaluations without dev-metric improvement."
    )
    save_total_limit: int = Field(default=2, ge=1, description="Checkpoints kept.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to train.")
    bf16: bool | None = Field(default=None, description="null = bf16 on CUDA, fp32 on CPU.")
    num_threads: int = Field(default=1, ge=1, description="torch intra-op threads on CPU.")


class CalibrationSettings(BaseModel):
    """How dev-split scores become calibrated probabilities and a decision threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["temperature", "isotonic", "none"] = Field(
        default="temperature", description="Fitted on the dev split; saved with the model."
    )
    threshold: Literal["max_f1", "target_fpr", "target_fnr"] = Field(
        default="max_f1", description="How the decision threshold on P(positive) is chosen."
    )
    target_fpr: float = Field(default=0.05, gt=0, lt=1, description="For threshold: target_fpr.")
    target_fnr: float = Field(default=0.01, gt=0, lt=1, description="For threshold: target_fnr.")


@dataclass(frozen=True)
class PointRecord:
    """One labelled row. ``label`` is a class index, or a 0/1 vector for multi-label."""

    row: int  # 1-based line / row number in ``source``
    source: str  # file the row came from
    prompt: str
    response: str | None
    label: int | tuple[int, ...]
    category: str | None = None
    group: str = ""  # rows sharing a group never straddle the train/dev split


@dataclass(frozen=True)
class PairRecord:
    """One preference pair: ``chosen`` is preferred to ``rejected`` as a reply to ``prompt``."""

    row: int
    source: str
    prompt: str
    chosen: str
    rejected: str
    category: str | None = None
    group: str = ""
    margin: float | None = None  # optional preference strength (TRL's ``margin`` column)


Record = PointRecord | PairRecord


@dataclass
class TrainData:
    """The split the runner hands to a kind. ``labels`` names the classes (pointwise)."""

    train: list[Any]
    dev: list[Any]
    labels: list[str] = field(default_factory=list)
    balance: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    """What a kind returns; the runner evaluates, calibrates and saves from it.

    - ``verifier``: the dict written to ``safeladder_verifier.yaml`` (``type`` + settings;
      ``path`` is filled in by the runner), so ``build_verifier({**verifier, "path": DIR})``
      rebuilds the trained verifier.
    - pointwise kinds: ``dev_logits`` (n, C) raw logits on the dev split (C = 1 for a binary
      sigmoid head), ``dev_labels`` (n,) or (n, C) for multi-label.
    - pairwise kinds: ``dev_chosen`` / ``dev_rejected`` (n,) rewards, ``train_rewards`` for the
      centering statistics.
    - ``history``: per-evaluation dicts (step, epoch, loss, dev metric) for the report.
    """

    verifier: dict[str, Any]
    dev_logits: np.ndarray | None = None
    dev_labels: np.ndarray | None = None
    dev_chosen: np.ndarray | None = None
    dev_rejected: np.ndarray | None = None
    train_rewards: np.ndarray | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    model_dir: Path | None = None


class TrainFields(BaseModel):
    """Which input field holds what (dotted paths reach into nested objects).

    The prompt / completion pair is the core field map (``safeladder.data.FieldMap``, one
    candidate each here): rows become ``Sample``s through ``safeladder.data.to_sample``
    (``sample_fields``); the other keys are the training columns. ``response`` is accepted
    as the YAML key of ``completion`` (the older name, and the key the saved run records in
    ``safeladder_run.json`` / ``metrics.json`` carry), so existing configs load unchanged.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)

    prompt: str = Field(default="prompt", description="Prompt text or chat messages.")
    completion: str | None = Field(
        default="response",
        validation_alias=AliasChoices("completion", "response"),
        serialization_alias="response",
        description="Response text (YAML key completion or response); null/missing = "
        "prompt-only rows.",
    )
    label: str = Field(default="label", description="Pointwise: class index, name, or list.")
    chosen: str = Field(default="chosen", description="Pairwise: the preferred response.")
    rejected: str = Field(default="rejected", description="Pairwise: the other response.")
    category: str | None = Field(default="category", description="For per-category reports.")
    group: str | None = Field(
        default=None, description="Grouping key for the split; null = the prompt text."
    )
    margin: str | None = Field(default=None, description="Pairwise: preference strength.")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own messages for these ("Extra inputs are not permitted") name neither
        # the alias nor the key that was meant.
        if not isinstance(data, Mapping):
            return data
        if "completion" in data and "response" in data:
            raise ValueError(
                "give completion or response (the same field under its older name), not both"
            )
        known = [
            a for n in cls.model_fields for a in ((n, "response") if n == "completion" else (n,))
        ]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown key {key!r}{hint}; known: {', '.join(known)}")
        return data

    def sample_fields(self, completion: str | None = None) -> CoreFieldMap:
        """The core field map reading this prompt and ``completion`` (default: the
        completion field; ``chosen`` / ``rejected`` for a pair's two sides), no reference."""
        name = completion if completion is not None else self.completion
        return CoreFieldMap(
            prompt=(self.prompt,),
            completion=(name,) if name is not None else (),
            reference=(),
            require_prompt=True,
        )


class DataSource(BaseModel):
    """One input file (JSONL / JSON / CSV / Parquet / HF dataset dir) and how to read it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="File or HF dataset directory; relative to the config file.")
    fields: TrainFields = Field(default_factory=TrainFields, description="Field mapping.")
    where: dict[str, Any] = Field(
        default_factory=dict, description="Keep rows whose field equals the value, e.g. split."
    )
    limit: int | None = Field(default=None, ge=1, description="Keep the first N matching rows.")
    label_map: dict[str, int] | None = Field(
        default=None, description="Raw label value (as a string) → class index."
    )
    augment: str | None = Field(
        default=None,
        description="Name of a row generator in safeladder.training.augment applied to the rows.",
    )
    made_by: str | None = Field(
        default=None,
        description="For a generated file: the command that writes it, named in the error when "
        "the file is missing (e.g. 'python scripts/write_shift_pools.py').",
    )


class DataConfig(BaseModel):
    """Training data: files, and a dev split either given or cut from the training rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: list[DataSource] = Field(min_length=1, description="Training sources.")
    dev: list[DataSource] | None = Field(
        default=None, description="Dev sources; null = a seeded grouped split of train."
    )
    dev_fraction: float = Field(default=0.1, gt=0, lt=1, description="Held-out share of groups.")
    split_seed: int = Field(default=0, description="Seed of the grouped split.")
    labels: list[str] | None = Field(
        default=None, description="Class names in index order; null = ['0', '1'] / inferred."
    )


class TrainConfigBase(BaseModel):
    """Fields every kind's config has; each kind adds its own and fixes ``kind``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str | None = Field(default=None, description="Shown in the report; default = kind.")
    model: ModelSource = Field(description="Starting weights.")
    data: DataConfig = Field(description="Training / dev data.")
    train: LoopSettings = Field(default_factory=LoopSettings, description="Optimisation loop.")
    calibration: CalibrationSettings = Field(
        default_factory=CalibrationSettings, description="Fitted on the dev split."
    )
    output_dir: str = Field(description="Where the trained verifier is written.")
    resume: bool = Field(default=False, description="Continue from the last checkpoint there.")
    report: bool = Field(default=True, description="Write report.md + reliability.png.")
