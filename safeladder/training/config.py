"""The training config: one YAML file, one ``kind``, validated into that kind's config class.

``TrainConfig`` is the discriminated union over ``kind`` (classifier | pairwise | label_judge |
embedding_head | tfidf); each kind's module defines its config class and its ``train`` function, and
``kind_module(kind)`` finds the module. Adding a kind is one line in the union and one in
``KIND_MODULES``.

``load_train_config(path, overrides)`` reads the YAML (``safeladder.config.load_yaml``), applies
``--set key.path=value`` overrides, validates (errors name the file and the key path, e.g.
``configs/train/x.yaml: data.train.0.limit: Input should be greater than or equal to 1``), and
resolves relative data paths against the config file's directory, so a config runs from any
working directory.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from pydantic import Field

from safeladder.config import apply_overrides, load_yaml, validate
from safeladder.errors import ConfigError
from safeladder.training.classifier import ClassifierTrainConfig
from safeladder.training.common import DataConfig, TrainConfigBase
from safeladder.training.embedding_head import EmbeddingHeadTrainConfig
from safeladder.training.label_judge import LabelJudgeTrainConfig
from safeladder.training.pairwise import PairwiseTrainConfig
from safeladder.training.tfidf import TfidfTrainConfig

TrainConfig = Annotated[
    ClassifierTrainConfig
    | PairwiseTrainConfig
    | LabelJudgeTrainConfig
    | EmbeddingHeadTrainConfig
    | TfidfTrainConfig,
    Field(discriminator="kind"),
]

#: kind tag → its config class, derived from the union so the two cannot drift apart.
KIND_CONFIGS: dict[str, type[TrainConfigBase]] = {
    cls.model_fields["kind"].default: cls
    for cls in TrainConfig.__origin__.__args__  # type: ignore[attr-defined]
}

#: kind tag → the module holding its config class and ``train`` (imported on use); derived
#: too: a kind's config class lives in the module that trains it.
KIND_MODULES: dict[str, str] = {kind: cls.__module__ for kind, cls in KIND_CONFIGS.items()}


def kind_module(kind: str) -> ModuleType:
    """The module that trains ``kind`` (defines ``train(cfg, data, out_dir, *, progress)``)."""
    if kind not in KIND_MODULES:
        raise ConfigError(f"kind: unknown training kind {kind!r}; known: {', '.join(KIND_MODULES)}")
    return importlib.import_module(KIND_MODULES[kind])


def is_pairwise(cfg: TrainConfigBase) -> bool:
    """Whether the kind trains on preference pairs (``PairRecord``) rather than labelled rows."""
    return cfg.kind == "pairwise" or getattr(cfg, "mode", None) == "pairwise"


def _resolve_data_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    block = data.get("data")
    if not isinstance(block, Mapping):
        return data
    block = dict(block)
    for side in ("train", "dev"):
        sources = block.get(side)
        if not isinstance(sources, list):
            continue
        out = []
        for s in sources:
            if isinstance(s, Mapping) and isinstance(s.get("path"), str):
                p = Path(s["path"]).expanduser()
                s = {**s, "path": str(p if p.is_absolute() else os.path.normpath(base / p))}
            out.append(s)
        block[side] = out
    return {**data, "data": block}


def parse_train_config(
    data: Mapping[str, Any], source: str | None = None, base_dir: Path | None = None
) -> TrainConfigBase:
    """Validate a config dict; relative data paths are taken from ``base_dir`` when given."""
    raw = dict(data)
    if "kind" not in raw:
        raise ConfigError(
            f"{source + ': ' if source else ''}kind: missing; one of {', '.join(KIND_MODULES)}"
        )
    if raw["kind"] not in KIND_MODULES:
        raise ConfigError(
            f"{source + ': ' if source else ''}kind: unknown training kind {raw['kind']!r}; "
            f"known: {', '.join(KIND_MODULES)}"
        )
    if base_dir is not None:
        raw = _resolve_data_paths(raw, base_dir)
    # Validate against the kind's own class: the error paths then read as the user wrote them
    # (``data.train.0.limit``), without the union's tag in front.
    cfg: TrainConfigBase = validate(KIND_CONFIGS[raw["kind"]], raw, source)
    return cfg


def load_train_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfigBase:
    """Read, override and validate a training config file (see the module docstring).

    >>> cfg = load_train_config("configs/train/embedding_head_toxigen.yaml")  # doctest: +SKIP
    >>> cfg.kind  # doctest: +SKIP
    'embedding_head'
    """
    p = Path(path)
    data = apply_overrides(load_yaml(p), overrides)
    return parse_train_config(data, str(p), p.resolve().parent)


__all__ = [
    "KIND_CONFIGS",
    "KIND_MODULES",
    "DataConfig",
    "TrainConfig",
    "is_pairwise",
    "kind_module",
    "load_train_config",
    "parse_train_config",
]
