"""YAML → pydantic. The only place safeladder reads YAML.

``load_yaml`` reads a file, ``apply_overrides`` applies dotted ``key.path=value`` overrides
(``--set`` on the CLI), and ``validate`` turns pydantic errors into a ``ConfigError`` that
names the key path (``terms.1.verifier.type``) and the source file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from safeladder.errors import ConfigError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping from ``path``; errors name the file (and line for syntax errors)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(data).__name__}")
    return data


def is_preset_name(name: str) -> bool:
    r"""A preset name is a bare name: no path separator, no ``..``, not absolute, no suffix.

    >>> [is_preset_name(n) for n in ("default", "../../tmp/x", "/tmp/x", "a\\b", "x.yaml", "..")]
    [True, False, False, False, False, False]
    """
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and "." not in name
        and name.strip() == name
        and not Path(name).is_absolute()
    )


def preset_path(kind: str, name: str) -> Path | None:
    """Path of a shipped preset ``safeladder/presets/<kind>/<name>.yaml``, or None.

    Only a bare name (``is_preset_name``) can name a preset, so no argument reaches a file
    outside the presets folder: ``../../tmp/x`` is None here, and callers treat it as the file
    path it looks like.
    """
    if not is_preset_name(name):
        return None
    base = resources.files("safeladder") / "presets" / kind / f"{name}.yaml"
    p = Path(str(base))
    return p if p.is_file() else None


def preset_names(kind: str) -> list[str]:
    """Names of the shipped presets of one kind (``verifiers`` or ``rewards``)."""
    d = Path(str(resources.files("safeladder") / "presets" / kind))
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.0.c=value`` overrides to a nested dict/list structure; values are YAML.

    >>> apply_overrides({"terms": [{"weight": 1}]}, ["terms.0.weight=0.5"])
    {'terms': [{'weight': 0.5}]}
    """
    out: Any = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE")
        key, raw = item.split("=", 1)
        parts = [k for k in key.strip().split(".") if k]
        if not parts:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = out
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"override {item!r}: {where} is not an index of a list of {len(node)}"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[:depth])} is a value, not a mapping"
                )
    return dict(out)


def _deepcopy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """The path of keys as the user wrote them: drops the union tags pydantic inserts
    (``terms.0.verifier.custom.target`` → ``terms.0.verifier.target``)."""
    parts: list[str] = []
    node = data
    for seg in loc:
        if isinstance(node, Mapping) and seg not in node and node.get("type") == seg:
            continue  # discriminated-union tag, not a key of the input
        if isinstance(node, BaseModel) and getattr(node, "type", None) == seg:
            continue
        parts.append(str(seg))
        if isinstance(node, Mapping):
            node = node.get(seg)
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            node = node[seg]
        else:
            node = None
    return ".".join(parts) or "<root>"


def format_validation_error(
    exc: ValidationError, source: str | None = None, data: Any = None
) -> str:
    """One line per problem: ``<source>: <key.path>: <message> (got <value>)``."""
    lines = []
    for err in exc.errors():
        loc = _key_path(tuple(err["loc"]), data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `safeladder verifiers` lists the fields)"
        got = err.get("input")
        show = err["type"] not in ("missing", "extra_forbidden") and not isinstance(
            got, (dict, list)
        )
        got_s = f" (got {got!r:.60})" if show else ""
        lines.append(f"{source + ': ' if source else ''}{loc}: {msg}{got_s}")
    return "\n".join(lines)


def validate(model: type[T] | Any, data: Any, source: str | None = None) -> T:
    """Validate ``data`` against a pydantic model class or a type (e.g. an annotated union)."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)  # type: ignore[return-value]
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, data)) from exc
