"""Describe the registered verifier types from their pydantic config classes.

Nothing here is written by hand: the field names, types, defaults and ``Field(description=...)``
texts come from each config class, and the one-line summary from its module docstring, so the
``safeladder verifiers`` listing cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from safeladder.verifiers.base import VerifierConfig

# "typing.Literal[...]", "collections.abc.Sequence" → "Literal[...]", "Sequence"
_MODULE_PREFIX = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*)")


def type_name(annotation: Any) -> str:
    """A short readable name of a field's type.

    >>> from typing import Literal
    >>> type_name(int), type_name(str | None), type_name(bool | Literal["auto"])
    ('int', 'str | None', "bool | Literal['auto']")
    >>> type_name(dict[str, Any]), type_name(tuple[float, float] | None)
    ('dict[str, Any]', 'tuple[float, float] | None')
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    if annotation is Ellipsis:
        return "..."
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None and args:
        return (
            f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
        )
    if isinstance(annotation, type):
        return annotation.__name__
    return _MODULE_PREFIX.sub("", str(annotation))


def field_default(info: FieldInfo) -> tuple[bool, Any]:
    """``(required, default)``; a ``default_factory`` is called to show its value."""
    if info.is_required():
        return True, None
    if info.default_factory is not None:
        return False, info.default_factory()  # type: ignore[call-arg]
    return False, None if info.default is PydanticUndefined else info.default


def summary_line(cls: type, type_tag: str = "") -> str:
    """First line of the verifier module's docstring (else of the config class), without a
    leading ``<type>``: and without RST backquotes."""
    doc = getattr(sys.modules.get(cls.__module__), "__doc__", None) or cls.__doc__ or ""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    if type_tag:
        line = line.removeprefix(f"``{type_tag}``:").removeprefix(f"{type_tag}:").strip()
    return line.replace("``", "")


def describe_fields(cls: type[BaseModel]) -> list[dict[str, Any]]:
    """One dict per config field except the ``type`` tag: name, type, required, default,
    description; the type's own fields first, then the ones every verifier shares."""
    shared = [n for n in cls.model_fields if n in VerifierConfig.model_fields]
    own = [n for n in cls.model_fields if n not in VerifierConfig.model_fields]
    out = []
    for name in own + shared:
        info = cls.model_fields[name]
        if name == "type":
            continue
        required, default = field_default(info)
        out.append(
            {
                "name": name,
                "type": type_name(info.annotation),
                "required": required,
                "default": default,
                "description": info.description or "",
            }
        )
    return out


def describe_type(type_tag: str, cls: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": type_tag,
        "summary": summary_line(cls, type_tag),
        "fields": describe_fields(cls),
    }


def format_type(desc: dict[str, Any], width: int = 100) -> str:
    """The text block of one verifier type."""
    lines = [f"{desc['type']}: {desc['summary']}" if desc["summary"] else desc["type"]]
    for f in desc["fields"]:
        default = "required" if f["required"] else f"default: {f['default']!r}"
        lines.append(f"  {f['name']}: {f['type']}  ({default})")
        if f["description"]:
            lines.extend(
                textwrap.wrap(
                    f["description"],
                    width=width,
                    initial_indent="      ",
                    subsequent_indent="      ",
                )
            )
    return "\n".join(lines)


__all__ = [
    "describe_fields",
    "describe_type",
    "field_default",
    "format_type",
    "summary_line",
    "type_name",
]
