"""Map an input row (a dict) to a ``Sample``.

Defaults: prompt ← ``prompt``; completion ← ``completion``, else ``response``; reference ←
``reference``, else ``answer``. The first candidate present in the row is used (even when its
value is null). Every other field of the row goes to ``Sample.meta``, so a reward can route on
``meta["task"]``; a field named ``meta`` that holds an object is unpacked into ``meta`` (the
row's own fields win on a clash), so rows written from ``Sample.model_dump()`` read back.

A row that does not fit raises ``InputError`` whose message names the field:

>>> to_sample({"prompt": "1+1?", "response": "2", "answer": "2", "task": "math"})
Sample(prompt='1+1?', completion='2', reference='2', meta={'task': 'math'}, images=())
>>> to_sample({"prompt": "hi"})
Traceback (most recent call last):
...
safeladder.errors.InputError: missing field 'completion' (looked for: completion, response)
>>> to_sample({"completion": "4"})
Traceback (most recent call last):
...
safeladder.errors.InputError: missing field 'prompt' (looked for: prompt)

Images: the first present of ``images`` / ``image`` (``FieldMap.images``) becomes
``Sample.images``. A cell may hold one reference or a list: a file path, a
``data:image/...;base64,`` URL, an ``http(s)`` URL (fetched only where a verifier allows it),
raw bytes (a Parquet binary column), a Hugging Face ``Image`` feature cell
(``{"bytes": ..., "path": ...}``: the bytes when present, else the path), or a string holding a
JSON list of those (a CSV cell). A relative file path resolves against ``base_dir`` (the input
file's folder in ``safeladder score``). The row's own cell is what an output carries: the
readers keep it, and the writers write bytes as ``{"sha256": ..., "bytes": N}``, never pixels.

A missing (or null) prompt is a bad row by default: scoring "" in its place would hand a
safety verifier or a judge a question nobody asked. ``FieldMap(require_prompt=False)``
(``safeladder score --allow-missing-prompt``) scores such rows with an empty prompt.

A field whose value is bad raises ``FieldValueError`` (an ``InputError``) that also carries the
field's role and the bare reason, so a caller that knows the row's place (training data: file
and row number) can say where without a second copy of the checks. ``get_path`` and
``value_matches`` read dotted paths and ``where`` filters for the training and eval readers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeladder.errors import InputError
from safeladder.images import ImageRef, coerce_images, content_text, is_pil_image
from safeladder.types import Sample


@dataclass(frozen=True)
class FieldMap:
    """Which input fields hold the prompt, the completion, the reference and the images.

    Attributes:
        prompt / completion / reference / images: candidate field names, first present wins.
        require_prompt: a row without a prompt (or with a null one) is bad; when False it
            gets ``""``.
        require_reference: a row without any reference candidate is bad (set when the user
            named the field explicitly); otherwise a missing reference is None. The
            completion is always required.
        require_images: a row without any images candidate is bad (set when the user named
            the field); otherwise a row without one has no images.
    """

    prompt: tuple[str, ...] = ("prompt",)
    completion: tuple[str, ...] = ("completion", "response")
    reference: tuple[str, ...] = ("reference", "answer")
    require_prompt: bool = True
    require_reference: bool = False
    images: tuple[str, ...] = ("images", "image")
    require_images: bool = False

    @classmethod
    def from_flags(
        cls,
        prompt: str | None = None,
        completion: str | None = None,
        reference: str | None = None,
        allow_missing_prompt: bool = False,
        images: str | None = None,
    ) -> FieldMap:
        """The defaults, with each field named by a flag replacing its candidates (and required)."""
        d = cls()
        return cls(
            prompt=(prompt,) if prompt else d.prompt,
            completion=(completion,) if completion else d.completion,
            reference=(reference,) if reference else d.reference,
            require_prompt=bool(prompt) or not allow_missing_prompt,
            require_reference=bool(reference),
            images=(images,) if images else d.images,
            require_images=bool(images),
        )

    def describe(self) -> dict[str, list[str]]:
        """JSON-able form (used in the resume fingerprint)."""
        return {
            "prompt": list(self.prompt),
            "completion": list(self.completion),
            "reference": list(self.reference),
            "images": list(self.images),
            "required": [
                n
                for n, r in (
                    ("prompt", self.require_prompt),
                    ("reference", self.require_reference),
                    ("images", self.require_images),
                )
                if r
            ],
        }


def pick_field(row: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    """``(name, value)`` of the first of ``names`` present in ``row`` (a null value counts),
    else ``(None, None)``."""
    for name in names:
        if name in row:
            return name, row[name]
    return None, None


def _missing(role: str, names: Sequence[str]) -> InputError:
    return InputError(
        f"missing field {role!r} (looked for: {', '.join(names)})",
        field=names[0] if names else role,
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class FieldValueError(InputError):
    """A field holds a value of the wrong shape: ``field 'NAME' (ROLE): REASON``.

    ``role`` is ``prompt``, ``completion`` or ``images``; ``reason`` is the message without the field
    prefix, for callers that name the place their own way.
    """

    def __init__(self, name: str, role: str, reason: str):
        super().__init__(f"field {name!r} ({role}): {reason}", field=name)
        self.role = role
        self.reason = reason


#: What ``get_path`` returns for a path the row does not have (``None`` is a value: null).
MISSING: Any = object()


def get_path(row: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested dicts / lists, or ``MISSING``.

    A key containing dots is found whole first (``{"a.b": 1}`` has ``a.b``).

    >>> get_path({"meta": {"tags": ["x", "y"]}}, "meta.tags.1")
    'y'
    >>> get_path({"a": 1}, "b") is MISSING
    True
    """
    if isinstance(row, Mapping) and path in row:
        return row[path]
    node = row
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def value_matches(value: Any, want: Any) -> bool:
    """Whether a row's ``value`` passes a ``where`` filter asking for ``want``.

    CSV cells are strings, so ``"1"`` matches ``1`` and ``"true"`` matches ``True``; a
    ``MISSING`` value matches nothing.

    >>> value_matches("1", 1), value_matches(" TRUE", True), value_matches(MISSING, None)
    (True, True, False)
    """
    if value is MISSING:
        return False
    if value == want:
        return True
    if isinstance(value, str) and not isinstance(want, str):
        if isinstance(want, bool):
            return value.strip().lower() == str(want).lower()
        return value.strip() == str(want)
    return False


def read_completion(value: Any) -> str:
    """A completion as text: a string as it is, or TRL's conversational form (a list of chat
    messages) reduced to the content of its **last assistant message** -- a tool exchange ends
    with the answer -- whose content may be a string or text blocks
    (``[{"type": "text", "text": ...}]``, joined in order; a null content is "").

    The one reader of conversational completions: TRL batches, input files and training rows
    all go through it.

    Raises:
        ValueError: the reason the value is not a completion (no assistant message, a content of
            another type, not a string or a list).

    >>> read_completion([{"role": "assistant", "content": "let me look"}, {"role": "tool",
    ...     "content": "42"}, {"role": "assistant", "content": [{"type": "text", "text": "42"}]}])
    '42'
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for msg in reversed(value):
            if isinstance(msg, Mapping) and msg.get("role") == "assistant":
                content = msg.get("content")
                if content is None or isinstance(content, (str, list)):
                    # TRL's content blocks of one reply are pieces of one text: joined by "".
                    return content_text(content, sep="")
                raise ValueError(
                    "assistant message content must be a string or text blocks, got "
                    f"{_type_name(content)}"
                )
        roles = [m.get("role") if isinstance(m, Mapping) else _type_name(m) for m in value]
        raise ValueError(
            f"a conversational completion needs an assistant message, got roles {roles}"
        )
    raise ValueError(
        "expected a string or a list of chat messages ending in an assistant message, got "
        f"{_type_name(value)} {value!r:.60}"
    )


def completion_text(value: Any) -> str | None:
    """``read_completion(value)``, or None where it raises."""
    try:
        return read_completion(value)
    except ValueError:
        return None


def _completion_text(name: str, value: Any) -> str:
    try:
        return read_completion(value)
    except ValueError as exc:
        raise FieldValueError(name, "completion", str(exc)) from None


def _check_prompt(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        for j, msg in enumerate(value):
            if not (
                isinstance(msg, Mapping)
                and isinstance(msg.get("role"), str)
                and _is_content(msg.get("content"))
            ):
                raise FieldValueError(
                    name,
                    "prompt",
                    f"message {j} must be an object with string 'role' and a 'content' that "
                    f"is a string or a list of typed parts, got {msg!r:.60}",
                )
        return value
    raise FieldValueError(
        name,
        "prompt",
        f"expected a string or a list of chat messages, got {_type_name(value)} {value!r:.60}",
    )


def _is_content(content: Any) -> bool:
    # A list content holds typed parts (text, image, image_url), as TRL and OpenAI write them.
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(p, Mapping) and isinstance(p.get("type"), str) for p in content
    )


def _image_item(value: Any, base_dir: Path | None) -> Any:
    if isinstance(value, Mapping) and ("bytes" in value or "path" in value):
        # A Hugging Face ``Image`` feature cell: its bytes when it has them, else its path.
        if value.get("bytes") is not None:
            return value["bytes"]
        value = value.get("path")
    if (
        isinstance(value, str)
        and base_dir is not None
        and not value.startswith("data:")
        and not value[:8].lower().startswith(("http://", "https://"))
        and value.strip()
        and not Path(value).expanduser().is_absolute()
    ):
        return str(base_dir / value)
    return value


def read_images(name: str, value: Any, base_dir: str | Path | None = None) -> tuple[ImageRef, ...]:
    """A row's image cell as checked references (see the module doc for the cell shapes).

    Raises:
        FieldValueError: the cell is not one of those shapes (the reason names the index).

    >>> read_images("images", '["a.png", "data:image/png;base64,AA=="]', "/data")
    ('/data/a.png', 'data:image/png;base64,AA==')
    """
    if isinstance(value, str) and value.lstrip().startswith("[") and value.rstrip().endswith("]"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FieldValueError(name, "images", f"invalid JSON list: {exc}") from None
    base = Path(base_dir) if base_dir is not None else None
    if isinstance(value, list | tuple):
        items = [_image_item(v, base) for v in value]
    elif (
        value is None or isinstance(value, str | bytes | bytearray | Mapping) or is_pil_image(value)
    ):
        items = [] if value is None else [_image_item(value, base)]
    else:
        items = [value]  # refused below with its type
    try:
        return coerce_images(items, "images")
    except InputError as exc:
        raise FieldValueError(name, "images", str(exc).removeprefix("images")) from None


def to_sample(
    row: Mapping[str, Any], fields: FieldMap | None = None, *, base_dir: str | Path | None = None
) -> Sample:
    """The ``Sample`` for one input row; raises ``InputError`` naming the field on a bad row.

    ``base_dir``: the folder relative image paths resolve against (None: left as they are).
    """
    fm = fields or FieldMap()
    c_name, c_value = pick_field(row, fm.completion)
    if c_name is None:
        raise _missing("completion", fm.completion)
    completion = _completion_text(c_name, c_value)

    p_name, p_value = pick_field(row, fm.prompt)
    if p_name is None:
        if fm.require_prompt:
            raise _missing("prompt", fm.prompt)
        prompt: Any = ""
    else:
        prompt = _check_prompt(p_name, p_value)
        if prompt is None and fm.require_prompt:
            raise InputError(
                f"field {p_name!r} (prompt) is null; a row needs its prompt "
                "(--allow-missing-prompt scores such rows with an empty one)",
                field=p_name,
            )

    r_name, reference = pick_field(row, fm.reference)
    if r_name is None and fm.require_reference:
        raise _missing("reference", fm.reference)

    i_name, i_value = pick_field(row, fm.images)
    if i_name is None and fm.require_images:
        raise _missing("images", fm.images)
    images = read_images(i_name, i_value, base_dir) if i_name is not None else ()

    used = {c_name, p_name, r_name, i_name}
    meta: dict[str, Any] = {}
    nested = row.get("meta")
    if isinstance(nested, Mapping) and "meta" not in used:
        meta.update(nested)
    for key, value in row.items():
        if key not in used and not (key == "meta" and isinstance(value, Mapping)):
            meta[str(key)] = value
    # model_construct: the checks above are the validation, and they name the input field.
    return Sample.model_construct(
        prompt="" if prompt is None else prompt,
        completion=completion,
        reference=reference,
        meta=meta,
        images=images,
    )


__all__ = [
    "MISSING",
    "FieldMap",
    "FieldValueError",
    "completion_text",
    "get_path",
    "pick_field",
    "read_completion",
    "read_images",
    "to_sample",
    "value_matches",
]
