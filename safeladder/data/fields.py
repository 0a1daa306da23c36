"""Map an input row (a dict) to a ``Sample``.

Defaults: prompt ← ``prompt``; completion ← ``completion``, else ``response``; reference ←
``reference``, else ``answer``. The first candidate present in the row is used (even when its
value is null). Every other field of the row goes to ``Sample.meta``, so a reward can route on
``meta["task"]``; a field named ``meta`` that holds an object is unpacked into ``meta`` (the
row's own fields win on a clash), so rows written from ``Sample.model_dump()`` read back.

A row that does not fit raises ``InputError`` whose message names the field:

>>> to_sample({"prompt": "1+1?", "response": "2", "answer": "2", "task": "math"})
Sample(prompt='1+1?', completion='2', reference='2', meta={'task': 'math'})
>>> to_sample({"prompt": "hi"})
Traceback (most recent call last):
...
safeladder.errors.InputError: missing field 'completion' (looked for: completion, response)
>>> to_sample({"completion": "4"})
Traceback (most recent call last):
...
safeladder.errors.InputError: missing field 'prompt' (looked for: prompt)

A missing (or null) prompt is a bad row by default: scoring "" in its place would hand a
safety verifier or a judge a question nobody asked. ``FieldMap(require_prompt=False)``
(``safeladder score --allow-missing-prompt``) scores such rows with an empty prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safeladder.errors import InputError
from safeladder.types import Sample


@dataclass(frozen=True)
class FieldMap:
    """Which input fields hold the prompt, the completion and the reference.

    Attributes:
        prompt / completion / reference: candidate field names, first present wins.
        require_prompt: a row without a prompt (or with a null one) is bad; when False it
            gets ``""``.
        require_reference: a row without any reference candidate is bad (set when the user
            named the field explicitly); otherwise a missing reference is None. The
            completion is always required.
    """

    prompt: tuple[str, ...] = ("prompt",)
    completion: tuple[str, ...] = ("completion", "response")
    reference: tuple[str, ...] = ("reference", "answer")
    require_prompt: bool = True
    require_reference: bool = False

    @classmethod
    def from_flags(
        cls,
        prompt: str | None = None,
        completion: str | None = None,
        reference: str | None = None,
        allow_missing_prompt: bool = False,
    ) -> FieldMap:
        """The defaults, with each field named by a flag replacing its candidates (and required)."""
        d = cls()
        return cls(
            prompt=(prompt,) if prompt else d.prompt,
            completion=(completion,) if completion else d.completion,
            reference=(reference,) if reference else d.reference,
            require_prompt=bool(prompt) or not allow_missing_prompt,
            require_reference=bool(reference),
        )

    def describe(self) -> dict[str, list[str]]:
        """JSON-able form (used in the resume fingerprint)."""
        return {
            "prompt": list(self.prompt),
            "completion": list(self.completion),
            "reference": list(self.reference),
            "required": [
                n
                for n, r in (("prompt", self.require_prompt), ("reference", self.require_reference))
                if r
            ],
        }


def _pick(row: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
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


def completion_text(value: Any) -> str | None:
    """A completion as text: a string, or TRL's conversational form (a list holding one
    assistant message) reduced to its content; None for anything else."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], Mapping)
        and value[0].get("role") == "assistant"
        and isinstance(value[0].get("content"), str)
    ):
        return str(value[0]["content"])
    return None


def _completion_text(name: str, value: Any) -> str:
    text = completion_text(value)
    if text is not None:
        return text
    raise InputError(
        f"field {name!r} (completion): expected a string or a list with one assistant message "
        f"{{'role': 'assistant', 'content': str}}, got {_type_name(value)} {value!r:.60}",
        field=name,
    )


def _check_prompt(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        for j, msg in enumerate(value):
            if not (
                isinstance(msg, Mapping)
                and isinstance(msg.get("role"), str)
                and isinstance(msg.get("content"), str)
            ):
                raise InputError(
                    f"field {name!r} (prompt): message {j} must be an object with string 'role' "
                    f"and 'content', got {msg!r:.60}",
                    field=name,
                )
        return value
    raise InputError(
        f"field {name!r} (prompt): expected a string or a list of chat messages, "
        f"got {_type_name(value)} {value!r:.60}",
        field=name,
    )


def to_sample(row: Mapping[str, Any], fields: FieldMap | None = None) -> Sample:
    """The ``Sample`` for one input row; raises ``InputError`` naming the field on a bad row."""
    fm = fields or FieldMap()
    c_name, c_value = _pick(row, fm.completion)
    if c_name is None:
        raise _missing("completion", fm.completion)
    completion = _completion_text(c_name, c_value)

    p_name, p_value = _pick(row, fm.prompt)
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

    r_name, reference = _pick(row, fm.reference)
    if r_name is None and fm.require_reference:
        raise _missing("reference", fm.reference)

    used = {c_name, p_name, r_name}
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
    )


__all__ = ["FieldMap", "to_sample"]
