"""Image references and their safe, lazy decoding.

A sample's images are *references*: a file path, a ``data:image/...;base64,`` URL, raw bytes, or
a ``PIL.Image.Image``; an ``http(s)://`` URL is accepted as a reference but only fetched when
``ImageLimits.allow_http`` is set (a reward must not reach the network by default). Nothing is
decoded until a verifier asks, through ``load_image`` / ``load_row_images`` /
``load_batch_images`` (each distinct image of a batch decoded once, a refused row isolated as
its own error), which apply the limits before the pixels are decoded and turn every refusal
into an ``InputError`` with the reason. ``image_key`` is the content hash for caches.

Decisions (each one a refusal rather than a guess):

- modes ``RGB`` pass through; ``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGBA``, ``RGBa``, ``La``
  are converted to RGB with any alpha composited on white; ``CMYK`` and ``YCbCr`` are converted
  by PIL. 16-bit and float modes (``I;16*``, ``I``, ``F``) are refused: their range is not
  fixed, so any conversion to 8 bits is a guess a classifier would silently score.
- an animated image (more than one frame) is refused: scoring only its first frame would let
  content on the other frames pass a safety verifier unseen.
- a zero-size image, a file that does not decode or is truncated, more pixels than
  ``max_pixels`` (read from the header, before the pixels are decoded), more bytes than
  ``max_bytes``, a path outside ``root``: refused.

PIL is imported inside the functions that need it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from safeladder.errors import InputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: One image reference: a path / data URL / http(s) URL string, raw bytes, or a PIL image.
ImageRef = Any

DATA_URL_PREFIX = "data:image/"
_SAFE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr"})


class ImageLimits(BaseModel):
    """What an image may be before it is decoded; every limit is a refusal, never a resize."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_images_per_row: int = Field(
        8, ge=0, description="Most images one row may carry; a row with more is refused."
    )
    max_pixels: int = Field(
        40_000_000,
        gt=0,
        description="Most pixels (width × height, read from the header before decoding) of one image.",
    )
    max_bytes: int = Field(
        20_000_000,
        gt=0,
        description="Most bytes of one encoded image (file size, decoded data-URL payload, raw bytes).",
    )
    allow_http: bool = Field(
        False,
        description="Fetch http(s):// image URLs; off by default so that a reward never reaches the network.",
    )
    root: str | None = Field(
        None,
        description="Folder every image file path must resolve inside (symlinks resolved); None = any path.",
    )


def is_pil_image(value: Any) -> bool:
    """Whether ``value`` is a ``PIL.Image.Image`` (without importing PIL if nothing did yet)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def check_image_ref(value: Any, where: str, *, row: int | None = None) -> ImageRef:
    """Validate the *shape* of one reference (no I/O); return it (bytearray → bytes).

    Raises:
        InputError: not a str / bytes / PIL image, an empty string, or a malformed data URL.
    """
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        if not value:
            raise InputError(f"{where}: empty image bytes", field="images", row=row)
        return value
    if isinstance(value, str):
        if not value.strip():
            raise InputError(f"{where}: empty image reference", field="images", row=row)
        if value.startswith("data:") and (
            not value.startswith(DATA_URL_PREFIX) or ";base64," not in value[:200]
        ):
            raise InputError(
                f"{where}: a data URL must look like 'data:image/<type>;base64,<payload>', "
                f"got {value[:40]!r}",
                field="images",
                row=row,
            )
        return value
    if is_pil_image(value):
        return value
    raise InputError(
        f"{where}: an image must be a file path, a data:image URL, bytes or a PIL image, "
        f"got {type(value).__name__}",
        field="images",
        row=row,
    )


def coerce_images(value: Any, where: str, *, row: int | None = None) -> tuple[ImageRef, ...]:
    """A row's images as a tuple of checked references; None → ``()``, one reference → 1-tuple."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | bytearray | memoryview) or is_pil_image(value):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InputError(
            f"{where}: images must be a list of references, got {type(value).__name__}",
            field="images",
            row=row,
        )
    return tuple(check_image_ref(v, f"{where}[{j}]", row=row) for j, v in enumerate(value))


def _is_http(ref: str) -> bool:
    return ref[:8].lower().startswith(("http://", "https://"))


def _data_url_bytes(ref: str, limits: ImageLimits) -> bytes:
    head, _, payload = ref.partition(",")
    # base64 is 4 chars per 3 bytes: refuse an oversized payload before decoding it.
    if len(payload) * 3 // 4 > limits.max_bytes + 3:
        raise InputError(
            f"data URL image is about {len(payload) * 3 // 4} bytes, over max_bytes={limits.max_bytes}"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"data URL {head[:40]!r}: payload is not valid base64 ({exc})") from exc
    if len(data) > limits.max_bytes:
        raise InputError(f"data URL image has {len(data)} bytes, over max_bytes={limits.max_bytes}")
    return data


def _path_bytes(ref: str, limits: ImageLimits) -> bytes:
    path = Path(ref).expanduser()
    if limits.root is not None:
        root = Path(limits.root).expanduser().resolve()
        resolved = (root / path).resolve() if not path.is_absolute() else path.resolve()
        if not resolved.is_relative_to(root):
            raise InputError(f"image path {ref!r} resolves outside the allowed root {str(root)!r}")
        path = resolved
    if not path.is_file():
        raise InputError(f"image file {ref!r} does not exist (or is not a file)")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputError(f"image file {ref!r} has {size} bytes, over max_bytes={limits.max_bytes}")
    return path.read_bytes()


def _http_bytes(ref: str, limits: ImageLimits) -> bytes:
    if not limits.allow_http:
        raise InputError(
            f"image URL {ref[:80]!r}: http(s) images are not fetched unless allow_http is set"
        )
    import urllib.request

    try:
        with urllib.request.urlopen(ref, timeout=10) as resp:
            data: bytes = resp.read(limits.max_bytes + 1)
    except OSError as exc:
        raise InputError(f"image URL {ref[:80]!r} could not be fetched: {exc}") from exc
    if len(data) > limits.max_bytes:
        raise InputError(f"image URL {ref[:80]!r} is over max_bytes={limits.max_bytes}")
    return data


def image_bytes(ref: ImageRef, limits: ImageLimits | None = None) -> bytes:
    """The encoded bytes behind a str / bytes reference (file contents, data-URL payload).

    Raises:
        InputError: see the module docstring; a PIL image has no encoded bytes.
    """
    limits = limits or ImageLimits()
    ref = check_image_ref(ref, "image")
    if isinstance(ref, bytes):
        if len(ref) > limits.max_bytes:
            raise InputError(f"image has {len(ref)} bytes, over max_bytes={limits.max_bytes}")
        return ref
    if not isinstance(ref, str):
        raise InputError("a PIL image has no encoded bytes")
    if ref.startswith("data:"):
        return _data_url_bytes(ref, limits)
    if _is_http(ref):
        return _http_bytes(ref, limits)
    return _path_bytes(ref, limits)


def image_key(ref: ImageRef, limits: ImageLimits | None = None) -> str:
    """A content hash (hex sha256) of an image, for caches and deduplication.

    Bytes, data URLs and files hash their encoded bytes (the same PNG as a path or as a data URL
    has one key); a PIL image hashes ``mode``, ``size`` and its pixel bytes.

    >>> image_key(b"abc") == image_key("data:image/png;base64,YWJj")
    True
    """
    if is_pil_image(ref):
        h = hashlib.sha256(f"pil:{ref.mode}:{ref.size[0]}x{ref.size[1]}:".encode())
        h.update(ref.tobytes())
        return h.hexdigest()
    return hashlib.sha256(image_bytes(ref, limits)).hexdigest()


def _check_header(im: PILImage.Image, limits: ImageLimits) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InputError(f"image has zero size ({w}x{h})")
    if w * h > limits.max_pixels:
        raise InputError(f"image is {w}x{h} = {w * h} pixels, over max_pixels={limits.max_pixels}")
    frames = int(getattr(im, "n_frames", 1))
    if frames > 1:
        raise InputError(
            f"image is animated ({frames} frames); animated images are refused "
            "(scoring one frame would leave the others unseen)"
        )
    if im.mode not in _SAFE_MODES:
        raise InputError(
            f"image mode {im.mode!r} cannot be converted to RGB safely "
            "(16-bit and float images are refused)"
        )


def _to_rgb(im: PILImage.Image) -> PILImage.Image:
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("CMYK", "YCbCr", "1", "L"):
        return im.convert("RGB")
    # Everything left may carry alpha (LA, P with transparency, RGBA...): composite on white.
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def load_image(ref: ImageRef, limits: ImageLimits | None = None) -> PILImage.Image:
    """Decode one reference into an RGB ``PIL.Image`` after checking it against ``limits``.

    Returns:
        an RGB image (a PIL image already in RGB is returned as is, not copied).

    Raises:
        InputError: the reason it was refused (see the module docstring).
    """
    from PIL import Image

    limits = limits or ImageLimits()
    ref = check_image_ref(ref, "image")
    if is_pil_image(ref):
        _check_header(ref, limits)
        return _to_rgb(ref)
    data = image_bytes(ref, limits)
    # Our own max_pixels check comes from the header; PIL's bomb guard is silenced so that an
    # image between the two limits is not a warning, and it is still an error past 2× its own.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                _check_header(probe, limits)
                probe.verify()
            im = Image.open(io.BytesIO(data))
            im.load()
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            raise InputError(f"image is a decompression bomb: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # PIL signals a corrupt / truncated / unknown file with these.
            raise InputError(f"image could not be decoded: {exc}") from exc
    return _to_rgb(im)


def load_row_images(
    images: Sequence[ImageRef], limits: ImageLimits | None = None, *, row: int | None = None
) -> list[PILImage.Image]:
    """Decode a row's images in order; the error names the row and the image index.

    Raises:
        InputError: more than ``limits.max_images_per_row`` images, or one image refused.
    """
    limits = limits or ImageLimits()
    where = f"row {row}: " if row is not None else ""
    if len(images) > limits.max_images_per_row:
        raise InputError(
            f"{where}{len(images)} images, over max_images_per_row={limits.max_images_per_row}",
            row=row,
            field="images",
        )
    out = []
    for j, ref in enumerate(images):
        try:
            out.append(load_image(ref, limits))
        except InputError as exc:
            raise InputError(f"{where}image {j}: {exc}", row=row, field="images") from exc
    return out


def prompt_images(prompt: Any) -> list[ImageRef]:
    """Image payloads carried by the parts of chat messages, in order.

    Reads TRL-style ``{"type": "image", "image": ref}`` and OpenAI-style
    ``{"type": "image_url", "image_url": {"url": ref}}`` parts; a part without a payload (TRL's
    ``{"type": "image"}`` placeholder, whose image lives in the row's ``images``) is skipped.

    >>> prompt_images([{"role": "user", "content": [
    ...     {"type": "image_url", "image_url": {"url": "a.png"}}, {"type": "text", "text": "hi"}]}])
    ['a.png']
    """
    if not isinstance(prompt, list):
        return []
    out: list[ImageRef] = []
    for msg in prompt:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "image" and part.get("image") is not None:
                out.append(part["image"])
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, Mapping) else url
                if url:
                    out.append(url)
    return out


def carries_images(images: Sequence[ImageRef], prompt: Any) -> bool:
    """Whether a row carries images: its own ``images`` or image parts with a payload in its
    chat prompt (``prompt_images``).

    >>> carries_images((), "hi"), carries_images(("a.png",), "hi")
    (False, True)
    """
    return bool(images) or bool(prompt_images(prompt))


def content_text(content: Any, sep: str = "\n") -> str:
    """Text of one message content: a string, or the ``text`` parts of a list of parts joined
    by ``sep`` (image parts skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, Mapping) and p.get("type", "text") == "text"
        )
    return str(content)


def load_batch_images(
    rows: Sequence[Sequence[ImageRef]], limits: ImageLimits | None = None
) -> list[list[PILImage.Image] | InputError]:
    """Decode every row's images once per batch, isolating rows from each other.

    An image that appears in several rows (the same path or data URL, equal bytes, the same
    PIL object) is read and decoded once; the rows share the decoded image (treat it as
    read-only). A row whose images are refused gets its ``InputError`` (naming the row and
    the image index) in place of its list; the other rows are unaffected.

    Returns:
        one entry per row, in order: the row's RGB images, or the error that refused it.
    """
    limits = limits or ImageLimits()
    decoded: dict[Any, PILImage.Image | InputError] = {}
    out: list[list[PILImage.Image] | InputError] = []
    for i, refs in enumerate(rows):
        if len(refs) > limits.max_images_per_row:
            out.append(
                InputError(
                    f"row {i}: {len(refs)} images, over max_images_per_row="
                    f"{limits.max_images_per_row}",
                    row=i,
                    field="images",
                )
            )
            continue
        images: list[PILImage.Image] = []
        failed: InputError | None = None
        for j, ref in enumerate(refs):
            if isinstance(ref, bytes):
                key: Any = ("bytes", hashlib.sha256(ref).hexdigest())
            elif isinstance(ref, str):
                key = ("str", ref)
            else:
                key = ("obj", id(ref))
            if key not in decoded:
                try:
                    decoded[key] = load_image(ref, limits)
                except InputError as exc:
                    decoded[key] = exc
            got = decoded[key]
            if isinstance(got, InputError):
                failed = InputError(f"row {i}: image {j}: {got}", row=i, field="images")
                break
            images.append(got)
        out.append(failed if failed is not None else images)
    return out
