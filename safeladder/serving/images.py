"""What the reward server lets a request's images be, checked before the rows are queued.

A row's images are its ``images`` list and the image parts of its chat prompt
(``safeladder.images.prompt_images``: ``{"type": "image", "image": ref}`` and OpenAI's
``{"type": "image_url", "image_url": {"url": ref}}``). On the wire a reference is a string:

- a ``data:image/<type>;base64,<payload>`` URL: always accepted (within the limits);
- a file path: only when ``ServeSettings.image_root`` is set, and only inside it (a relative
  path is relative to it; symlinks are resolved). The row is scored with the resolved
  absolute path. Without ``image_root`` a path is a 422: a server must not read whatever file
  a client names;
- an ``http(s)://`` URL: a 422 (the server never fetches).

Limits (``ServeSettings``): more than ``max_images_per_row`` images in a row, an image over
``max_image_bytes`` (decoded data-URL payload, file size), or over ``max_image_pixels`` (width
× height from the header, read without decoding the pixels; PIL's decompression-bomb refusal
counts as over) are a 413 whose message names the row and the image (``body.samples[3].images
[1]``). An image that cannot be decoded at all (truncated, not an image, animated) is *not*
refused here: it reaches the reward, whose image verifiers give that row an ``error`` status
with the reason -- one bad row never fails its neighbours.

PIL is imported inside the functions that need it; the checks run in a worker thread
(``asyncio.to_thread``), off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safeladder.errors import InputError
from safeladder.images import DATA_URL_PREFIX, coerce_images
from safeladder.serving.errors import ApiError
from safeladder.serving.settings import ServeSettings
from safeladder.types import Sample


def _too_large(msg: str, loc: list[str | int]) -> ApiError:
    return ApiError(413, msg, loc, "image_too_large")


def _header_pixels(data: bytes) -> int | str | None:
    """Width × height from the image header; PIL's message for a decompression bomb (over
    PIL's own hard limit, where it refuses to open the file); None when the bytes are not a
    readable image (left to the verifier)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except Image.DecompressionBombError as exc:
            return str(exc)
        except Exception:
            return None  # not an image, truncated header...: the verifier reports it per row
    return int(w) * int(h)


class ImageChecker:
    """Checks and resolves the image references of request rows against ``settings``."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.root = (
            Path(settings.image_root).expanduser().resolve()
            if settings.image_root is not None
            else None
        )

    def _data(self, ref: str, loc: list[str | int]) -> bytes | None:
        """The encoded bytes of a data URL (None: malformed, left to the verifier)."""
        payload = ref.partition(",")[2]
        limit = self.settings.max_image_bytes
        if len(payload) * 3 // 4 > limit + 3:  # base64: 4 chars per 3 bytes
            raise _too_large(
                f"image data URL is about {len(payload) * 3 // 4} bytes; the limit is {limit} "
                "(max_image_bytes)",
                loc,
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(data) > limit:
            raise _too_large(
                f"image data URL is {len(data)} bytes; the limit is {limit} (max_image_bytes)", loc
            )
        return data

    def _path(self, ref: str, loc: list[str | int]) -> tuple[str, bytes | None]:
        """The resolved path of a file reference inside ``image_root``, and its bytes (None:
        missing, left to the verifier, which names it)."""
        if self.root is None:
            raise ApiError(
                422,
                f"image {ref[:80]!r} is a file path; this server reads no image files (set image_root "
                "in its settings, safeladder serve --settings YAML, to allow paths inside a "
                "folder); send a data:image URL",
                loc,
                "image_path_refused",
            )
        path = Path(ref).expanduser()
        resolved = (self.root / path).resolve() if not path.is_absolute() else path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ApiError(
                422,
                f"image path {ref[:80]!r} resolves outside image_root {str(self.root)!r}",
                loc,
                "image_path_refused",
            )
        if not resolved.is_file():
            return str(resolved), None
        size = resolved.stat().st_size
        limit = self.settings.max_image_bytes
        if size > limit:
            raise _too_large(
                f"image file {ref[:80]!r} is {size} bytes; the limit is {limit} (max_image_bytes)",
                loc,
            )
        return str(resolved), resolved.read_bytes()

    def check_ref(self, ref: Any, loc: list[str | int]) -> Any:
        """One reference checked; returns it as the row should carry it (paths resolved).

        Raises:
            ApiError: 413 over a limit, 422 a reference this server does not read.
        """
        if not isinstance(ref, str):
            return ref  # bytes / PIL only come from Python callers, never from JSON
        if ref.startswith(DATA_URL_PREFIX):
            data = self._data(ref, loc)
        elif ref[:8].lower().startswith(("http://", "https://")):
            raise ApiError(
                422,
                f"image URL {ref[:80]!r}: the server does not fetch http(s) images; send a "
                "data:image URL",
                loc,
                "image_url_refused",
            )
        else:
            ref, data = self._path(ref, loc)
        if data is not None:
            pixels = _header_pixels(data)
            limit = self.settings.max_image_pixels
            if isinstance(pixels, str) or (pixels is not None and pixels > limit):
                size = (
                    f"{pixels} pixels" if isinstance(pixels, int) else f"too many pixels ({pixels})"
                )
                raise _too_large(f"image has {size}; the limit is {limit} (max_image_pixels)", loc)
        return ref

    def _prompt(self, prompt: Any, loc: list[str | int]) -> Any:
        """The prompt with each image part's reference checked (and resolved)."""
        if not isinstance(prompt, list):
            return prompt
        out = []
        for m, msg in enumerate(prompt):
            content = msg.get("content") if isinstance(msg, Mapping) else None
            if not isinstance(content, list):
                out.append(msg)
                continue
            parts = []
            for k, part in enumerate(content):
                where = [*loc, m, "content", k]
                kind = part.get("type") if isinstance(part, Mapping) else None
                if kind == "image" and part.get("image") is not None:
                    part = {**part, "image": self.check_ref(part["image"], [*where, "image"])}
                elif kind == "image_url":
                    url = part.get("image_url")
                    if isinstance(url, Mapping) and url.get("url"):
                        checked = self.check_ref(url["url"], [*where, "image_url", "url"])
                        part = {**part, "image_url": {**url, "url": checked}}
                    elif isinstance(url, str) and url:
                        part = {**part, "image_url": self.check_ref(url, [*where, "image_url"])}
                parts.append(part)
            out.append({**msg, "content": parts})
        return out

    def row(
        self,
        images: Sequence[Any],
        prompt: Any,
        images_loc: list[str | int],
        prompt_loc: list[str | int],
    ) -> tuple[tuple[Any, ...], Any]:
        """A row's ``(images, prompt)`` checked; the image count includes the prompt's image
        parts. ``images_loc`` / ``prompt_loc``: where the row's images / prompt are in the body
        (``["body", "samples", 3, "images"]``); an image's index is appended to ``images_loc``.
        """
        from safeladder.images import prompt_images

        n = len(images) + len(prompt_images(prompt))
        limit = self.settings.max_images_per_row
        if n > limit:
            raise ApiError(
                413,
                f"{n} images in this row; the limit is {limit} (max_images_per_row)",
                images_loc,
                "too_many_images",
            )
        checked = tuple(self.check_ref(ref, [*images_loc, j]) for j, ref in enumerate(images))
        return checked, self._prompt(prompt, prompt_loc)

    @staticmethod
    def any_images(samples: Sequence[Sample]) -> bool:
        """Whether any sample carries an image (cheap: no I/O), so text-only requests skip the
        worker-thread hop."""
        from safeladder.images import prompt_images

        return any(s.images or prompt_images(s.prompt) for s in samples)

    def samples(self, samples: Sequence[Sample], field: str) -> list[Sample]:
        """Every sample checked; a sample whose references changed (paths) is a new copy."""
        out = []
        for i, s in enumerate(samples):
            if not s.images and not isinstance(s.prompt, list):
                out.append(s)
                continue
            loc: list[str | int] = ["body", field, i]
            images, prompt = self.row(s.images, s.prompt, [*loc, "images"], [*loc, "prompt"])
            if images != s.images or prompt != s.prompt:
                s = s.model_copy(update={"images": images, "prompt": prompt})
            out.append(s)
        return out

    def queries(
        self, cells: Sequence[Sequence[str] | None] | None, prompts: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """/get_reward's ``images`` extension: one checked tuple per query (``cells``: the
        body's ``images``, one list or None per query)."""
        n = len(prompts)
        if cells is None:
            return [() for _ in range(n)]
        if len(cells) != n:
            raise ApiError(
                422,
                f"has {len(cells)} items but query has {n}",
                ["body", "images"],
                "length_mismatch",
            )
        out = []
        for i, (cell, prompt) in enumerate(zip(cells, prompts, strict=True)):
            loc: list[str | int] = ["body", "images", i]
            try:
                refs = coerce_images(cell, "images", row=i)
            except InputError as exc:
                raise ApiError(422, str(exc), loc, "bad_image") from None
            out.append(self.row(refs, prompt, loc, ["body", "prompts", i])[0])
        return out


__all__ = ["ImageChecker"]
