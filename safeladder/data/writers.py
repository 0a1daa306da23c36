"""Write JSON Lines: one object per line, UTF-8 (``ensure_ascii=False``), durable on request.

``JsonlWriter`` appends to a file and can ``sync()`` (flush + fsync) so that a checkpoint
recorded after it names bytes that are really on disk; ``write_json_atomic`` replaces a small
JSON file in one step (write a temporary file, fsync, ``os.replace``), so a reader sees either
the old or the new content, never half of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from safeladder.images import image_key, is_pil_image
from safeladder.jsonsafe import jsonable


def binary_ref(data: bytes) -> dict[str, Any]:
    """How an output names a binary cell: ``{"sha256": hex digest, "bytes": length}``.

    >>> binary_ref(b"abc")["bytes"]
    3
    """
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _default(value: Any) -> Any:
    # numpy scalars / arrays, datetimes from Parquet, bytes: give JSON something faithful.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        # Binary cells (Parquet binary columns, HF Image bytes) are images or other blobs:
        # an output names them by content hash and size, never copies them.
        return binary_ref(bytes(value))
    if is_pil_image(value):
        # A PIL image handed to the Python API: named by content, never its pixels (and not
        # by its repr, which holds a memory address).
        return {"sha256": image_key(value), "mode": value.mode, "size": list(value.size)}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def dumps(obj: Any) -> str:
    """One JSON line (no newline); NaN / ±inf become null, since JSON has no NaN.

    >>> dumps({"reward": float("nan"), "text": "é"})
    '{"reward": null, "text": "é"}'
    """
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_default)
    except ValueError:  # a non-finite float somewhere: rare, so only then walk the object
        return json.dumps(jsonable(obj), ensure_ascii=False, allow_nan=False, default=_default)


class JsonlWriter:
    """Append JSON objects to ``path``, one per line.

    Args:
        path: the output file.
        mode: ``"w"`` truncates, ``"a"`` appends.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "o.jsonl"
    >>> with JsonlWriter(p) as w:
    ...     w.write({"a": 1})
    >>> p.read_text()
    '{"a": 1}\\n'
    """

    def __init__(self, path: str | Path, mode: str = "w"):
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
        self.path = Path(path)
        # Binary + explicit encoding: the byte offsets we record for resuming are exact.
        self._fh = open(self.path, mode + "b")  # noqa: SIM115 - closed by close() / __exit__

    def write(self, obj: Any) -> None:
        self._fh.write(dumps(obj).encode("utf-8") + b"\n")

    def write_many(self, objs: Any) -> None:
        self._fh.write(b"".join(dumps(o).encode("utf-8") + b"\n" for o in objs))

    def write_lines(self, data: bytes) -> None:
        """Append JSON lines encoded elsewhere (UTF-8, each ending in a newline), e.g. by
        ``dumps`` in a worker process: the file holds the same bytes as ``write_many`` writes."""
        self._fh.write(data)

    def tell(self) -> int:
        """Bytes written so far (the file size once flushed)."""
        return self._fh.tell()

    def sync(self) -> None:
        """Flush and fsync, so everything written so far survives a crash."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Replace ``path`` with ``obj`` as JSON in one step (tmp file + fsync + ``os.replace``)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    data = json.dumps(jsonable(obj), ensure_ascii=False, indent=indent, default=_default)
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    _fsync_dir(p.parent)


def _fsync_dir(d: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk (POSIX).
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def truncate(path: str | Path, size: int) -> None:
    """Cut ``path`` back to ``size`` bytes (creating it empty when ``size`` is 0 and it is missing)."""
    p = Path(path)
    if not p.exists():
        if size:
            raise FileNotFoundError(f"{p} is missing but should hold {size} bytes")
        p.touch()
        return
    with open(p, "r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


__all__ = ["JsonlWriter", "binary_ref", "dumps", "truncate", "write_json_atomic"]
