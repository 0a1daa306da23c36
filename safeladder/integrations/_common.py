"""What the trainer adapters share: the per-process reward cache and the unscorable-row policy.

Trainers that load a reward *function* by path (verl's ``custom_reward_function``, OpenRLHF's
python-file reward) call it once per sample or per batch, from threads (verl's naive manager
runs ``compute_score`` in the event loop's thread pool; OpenRLHF uses ``asyncio.to_thread``) and
from many Ray worker processes. Building a ``Reward`` per call would start verifier process
pools and load models every time, so ``shared_reward`` builds it once per process and config.

Images: trainers hand a row's images over in two places at once -- a dataset column
(TRL's ``images`` / ``image``, a verl ``extra_info`` key) and the image parts of the chat
prompt (TRL fills its ``{"type": "image"}`` placeholders with the column's images before it
calls the reward; verl's ``raw_prompt`` carries ``{"type": "image", "image": ...}`` parts).
``split_images`` turns both into one ``Sample.images`` tuple, in placeholder order, and leaves
the prompt with bare ``{"type": "image"}`` placeholders, so an image is never seen twice
(a VLM judge would otherwise get it twice, and a row's image count would double).

Unscorable rows (``RewardResult.total`` NaN: no objective term could score the row) cannot go
to verl or OpenRLHF as NaN -- a NaN reward poisons the advantage of the whole batch -- and
must never become 0.0 behind the user's back. ``finite_totals`` therefore raises an
``InputError`` naming the row and the reasons, unless the user chose a value explicitly
(``nan_score``; environment ``SAFELADDER_NAN_SCORE``); the adapters then report each such row
in an ``unscorable`` log column, so the substitution is counted, not hidden.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.data.fields import read_images
from safeladder.errors import ConfigError, InputError
from safeladder.images import ImageRef
from safeladder.jsonsafe import jsonable
from safeladder.rewards import Reward, load_reward
from safeladder.types import RewardResult

#: Reward config (YAML path or preset name) for adapters that get no keyword arguments.
ENV_REWARD_CONFIG = "SAFELADDER_REWARD_CONFIG"
#: The score given to unscorable rows where the trainer cannot take NaN (unset: raise).
ENV_NAN_SCORE = "SAFELADDER_NAN_SCORE"

logger = logging.getLogger("safeladder.integrations")

_cache: dict[tuple[int, str], Reward] = {}
_cache_lock = threading.Lock()


def _reset_after_fork() -> None:
    # A forked child inherits the parent's rewards, whose verifier pools and dispatcher threads
    # belong to the parent, and possibly a lock held by a parent thread: start afresh.
    global _cache, _cache_lock
    _cache = {}
    _cache_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def plain(value: Any) -> Any:
    """Nested mappings / sequences (OmegaConf ``DictConfig``, numpy arrays) as dicts and lists;
    NaN kept (these values are compared and routed on, not written)."""
    return jsonable(value, finite=False)


def _config_key(config: Any, overrides: Sequence[str]) -> str:
    if config is None:
        src: Any = ["default"]
    elif isinstance(config, Path):
        src = ["path", str(config.resolve())]
    elif isinstance(config, str):
        p = Path(config)
        src = ["path", str(p.resolve())] if p.is_file() else ["name", config]
    elif isinstance(config, Mapping):
        src = ["inline", plain(config)]
    else:
        raise ConfigError(
            f"reward config must be a YAML path, a preset name or a mapping, got {type(config).__name__}"
        )
    return json.dumps([src, list(overrides)], sort_keys=True, default=str)


def resolve_config(config: Any) -> Any:
    """The config to use: the explicit one, else ``$SAFELADDER_REWARD_CONFIG``, else None (default)."""
    if config is not None:
        return config
    return os.environ.get(ENV_REWARD_CONFIG) or None


def shared_reward(config: Any = None, overrides: Sequence[str] = ()) -> Reward:
    """The ``Reward`` for ``config`` in this process, built on first use (thread-safe).

    Args:
        config: a YAML path, a preset name, a mapping (e.g. an OmegaConf ``DictConfig``), or
            None for the shipped default reward. Callers resolve the environment variable
            first (``resolve_config``).
        overrides: dotted ``key.path=value`` overrides applied on top.

    The cache key is the process id and the config's identity (resolved file path, preset name
    or inline contents, plus overrides): a forked or spawned worker builds its own reward.
    """
    overrides = [str(o) for o in overrides]
    key = (os.getpid(), _config_key(config, overrides))
    reward = _cache.get(key)
    if reward is not None:
        return reward
    with _cache_lock:
        reward = _cache.get(key)
        if reward is None:
            cfg = plain(config) if isinstance(config, Mapping) else config
            reward = load_reward(cfg, overrides)
            _cache[key] = reward
            logger.info("built reward %r (fingerprint %s)", reward.name, reward.fingerprint)
    return reward


def clear_shared_rewards() -> None:
    """Close and forget every cached reward of this process (tests; a config file changed)."""
    with _cache_lock:
        rewards = list(_cache.values())
        _cache.clear()
    for r in rewards:
        r.close()


def parse_nan_score(value: Any, where: str) -> float | None:
    """``None`` (raise on unscorable rows) or the finite float to give them.

    ``value`` may be None / "" (unset), a number, or a numeric string (from the environment).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(
            f"{where}: must be a finite number (a NaN/inf reward breaks the trainer), got {value!r}"
        )
    return out


def nan_score_from_env() -> float | None:
    return parse_nan_score(os.environ.get(ENV_NAN_SCORE), f"${ENV_NAN_SCORE}")


def why_unscorable(result: RewardResult, i: int) -> str:
    """Why row ``i``'s total is NaN: a required term that did not score, a verifier that
    raised on the row, or no objective term that scored (each with its status and reason)."""
    reason = result.unscorable_reason[i]
    return reason if reason is not None else "its total is NaN"


def finite_totals(
    result: RewardResult,
    nan_score: float | None,
    describe_row: Callable[[int], str],
    fix: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Totals with every NaN replaced by ``nan_score``, and the mask of those rows.

    Args:
        result: the batch's ``RewardResult``.
        nan_score: the explicit value for unscorable rows; None raises instead.
        describe_row: row index → how the trainer knows the row (e.g. "row 3 (index=17)").
        fix: how to set ``nan_score`` in this trainer (appended to the error).

    Returns:
        ``(total float64 (b,), unscorable bool (b,))``.

    Raises:
        InputError: a row is unscorable and ``nan_score`` is None; names the first such row,
            why its terms gave no score, and the fix.
    """
    total = result.total.astype(np.float64)
    bad = np.isnan(total)
    if bad.any():
        if nan_score is None:
            i = int(np.flatnonzero(bad)[0])
            msg = (
                f"{describe_row(i)}: {why_unscorable(result, i)}; "
                f"{int(bad.sum())} of {len(total)} rows in this batch are unscorable. The trainer "
                f"cannot take a NaN reward and safeladder never turns one into 0 silently: {fix}"
            )
            # Some trainers swallow exceptions from reward code into a debug log (OpenRLHF logs
            # them at INFO and leaves the sample's reward None): say it loudly here too.
            logger.error(msg)
            raise InputError(msg, row=i, field="score")
        total[bad] = nan_score
    return total, bad


def cell_images(value: Any, where: str, row: int | None = None) -> tuple[ImageRef, ...]:
    """One row's image cell as checked references.

    Accepts None (no image), one reference or a list / tuple / numpy object array of them: a
    file path, a ``data:image/...;base64,`` URL, bytes, a ``PIL.Image``, or a Hugging Face
    ``Image`` feature cell ``{"bytes": ..., "path": ...}`` (the bytes when present).

    Raises:
        InputError: a reference of another type, naming ``where``, the row and the index.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        return read_images(where, value)
    except InputError as exc:
        prefix = f"row {row}: " if row is not None else ""
        raise InputError(f"{prefix}{where}: {exc}", row=row, field=where) from None


def _same_ref(a: Any, b: Any) -> bool:
    # The trainer put the column's own objects into the prompt: identity for PIL images and
    # dicts, equality for strings and bytes (a JSON round trip makes copies of those).
    if a is b:
        return True
    return isinstance(a, str | bytes) and type(a) is type(b) and a == b


def split_images(prompt: Any, column: Sequence[ImageRef]) -> tuple[Any, list[ImageRef]]:
    """A row's images in placeholder order, and its prompt with bare image placeholders.

    Args:
        prompt: a string or chat messages; image parts are TRL's ``{"type": "image"[, "image":
            ref]}`` and OpenAI's ``{"type": "image_url", "image_url": {"url": ref}}``.
        column: the row's images from the dataset column (already ``cell_images``-checked).

    Returns:
        ``(prompt, images)``: a part that carries its image gives that image (the column
        image it came from is used up, matched by identity or equal str / bytes); a bare
        placeholder takes the next unused column image, as TRL's
        ``prepare_multimodal_messages`` fills them; column images left over come last. Every
        image part of the returned prompt is a bare ``{"type": "image"}``; a string prompt is
        returned as is. The input is not modified.

    >>> split_images([{"role": "user", "content": [{"type": "image", "image": "a.png"},
    ...     {"type": "text", "text": "what?"}]}], ["a.png"])
    ([{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'what?'}]}], ['a.png'])
    """
    cols = list(column)
    used = [False] * len(cols)
    out: list[ImageRef] = []

    def take_next() -> None:
        for k, flag in enumerate(used):
            if not flag:
                used[k] = True
                out.append(cols[k])
                return

    def take(ref: Any) -> None:
        for k, c in enumerate(cols):
            if not used[k] and _same_ref(c, ref):
                used[k] = True
                break
        out.append(ref)

    if not isinstance(prompt, list):
        return prompt, cols
    messages: list[Any] = []
    for msg in prompt:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if not isinstance(content, list):
            messages.append(msg)
            continue
        parts: list[Any] = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "image":
                if part.get("image") is not None:
                    take(part["image"])
                else:
                    take_next()
                parts.append({"type": "image"})
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, Mapping) else url
                if url:
                    take(url)
                parts.append({"type": "image"})
            else:
                parts.append(part)
        messages.append({**msg, "content": parts})
    out += [c for c, flag in zip(cols, used, strict=True) if not flag]
    return messages, out


def row_images(prompt: Any, column: Any, where: str, row: int) -> tuple[Any, tuple[ImageRef, ...]]:
    """``split_images`` over a raw column cell; every image checked (``cell_images``)."""
    prompt, refs = split_images(prompt, cell_images(column, where, row))
    checked = cell_images(refs, f"{where} (with the prompt's image parts)", row)
    return prompt, checked
