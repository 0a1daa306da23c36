"""One JSON-safe converter: nested mappings, sequences, numpy values and paths as plain JSON.

JSON has no NaN, no numpy types and no tuples; every file, log line and HTTP answer the package
writes goes through ``jsonable`` (or ``data.writers.dumps``, which uses it) so the output is
strict JSON that any reader accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["jsonable"]


def jsonable(
    value: Any, *, finite: bool = True, default: Callable[[Any], Any] | None = None
) -> Any:
    """``value`` with every part made JSON-safe, recursively.

    - mappings (dicts, OmegaConf ``DictConfig``...) → ``dict`` with ``str`` keys;
    - lists, tuples, numpy arrays and other sequences (not ``str`` / ``bytes``) → ``list``;
    - numpy scalars → the Python scalar; paths → ``str``;
    - with ``finite`` (default) a NaN or ±inf float → ``None`` (JSON null); ``finite=False``
      keeps them (for values that are compared or hashed, not written);
    - anything else is returned as it is, or as ``default(value)`` when ``default`` is given
      and the value is not a JSON scalar (e.g. ``default=str`` for details a user's verifier
      filled with arbitrary objects).

    >>> jsonable({"a": np.float32(0.5), 1: (np.int64(2), float("nan")), "p": np.arange(2)})
    {'a': 0.5, '1': [2, None], 'p': [0, 1]}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, finite=finite, default=default) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), finite=finite, default=default)
    if isinstance(value, (list, tuple)) or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))
    ):
        return [jsonable(v, finite=finite, default=default) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, PurePath):
        return str(value)
    if finite and isinstance(value, float) and not math.isfinite(value):
        return None
    if default is not None and not (value is None or isinstance(value, (bool, int, float, str))):
        return default(value)
    return value
