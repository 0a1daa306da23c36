"""The package's architecture, checked: imports point down the layer order, no private name
crosses a subpackage, no module grows past 600 lines, and every module imports with its
``__all__`` resolvable.

The layer order (DESIGN.md)::

    types, errors, config, shared helpers → data → neural → verifiers → rewards → scoring
        → integrations · serving · guidance · training → cli → the package root (public API)

A module may import from its own layer and the layers before it. Imports inside functions
count too: a lazy import that points up is still an upward dependency.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "safeladder"
MAX_LINES = 600

#: First dotted component under ``safeladder`` → layer. Top-level modules not listed here
#: (``types``, ``errors``, ``config``, ``timeout_pool`` and other shared helpers) are layer 0.
LAYERS: dict[str, int] = {
    "data": 1,
    "neural": 2,
    "verifiers": 3,
    "corrections": 3,  # the correction memory: used by verifiers (repeats_correction) and guidance
    "rewards": 4,
    "scoring": 5,
    "integrations": 6,
    "serving": 6,
    "guidance": 6,
    "training": 6,
    "cli": 7,
    "__init__": 8,  # the package root: the public API imports everything, nothing imports it
    "__main__": 8,  # python -m safeladder: the command line
}

#: Upward imports that are deliberate, each with its reason.
ALLOWED_UP: dict[tuple[str, str], str] = {
    (
        "safeladder.rewards.reward",
        "safeladder.integrations.trl",
    ): "deprecated Reward.as_trl() / as_trl_terms() shims (README's old spelling) that warn and "
    "delegate to safeladder.integrations.trl",
}


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts == ["safeladder"]:
        return LAYERS["__init__"]
    return LAYERS.get(parts[1], 0)


def subpackage_of(module: str) -> str:
    """``safeladder.verifiers.math_answer`` → ``safeladder.verifiers``; a top-level module is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imports_of(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """Every ``safeladder`` import in the file: ``(target module, imported names, line)``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "safeladder":
                    out.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == "safeladder":
                out.append((target, [a.name for a in node.names], node.lineno))
    return out


ALL_MODULES = modules()


def test_every_import_points_down_the_layer_order() -> None:
    bad = []
    for module, path in ALL_MODULES:
        mine = layer_of(module)
        for target, _names, line in imports_of(module, path):
            if layer_of(target) > mine and (module, target) not in ALLOWED_UP:
                bad.append(
                    f"{path.relative_to(REPO)}:{line}: {module} (layer {mine}) imports "
                    f"{target} (layer {layer_of(target)})"
                )
    assert not bad, "imports that point up the layer order:\n" + "\n".join(bad)


def test_no_private_name_crosses_a_subpackage() -> None:
    bad = []
    for module, path in ALL_MODULES:
        for target, names, line in imports_of(module, path):
            if subpackage_of(target) == subpackage_of(module):
                continue
            private_module = any(p.startswith("_") and p != "__init__" for p in target.split("."))
            private_names = [n for n in names if n.startswith("_") and not n.endswith("__")]
            if private_module or private_names:
                what = ", ".join(private_names) if private_names else target
                bad.append(
                    f"{path.relative_to(REPO)}:{line}: {module} imports private {what} from {target}"
                )
    assert not bad, "private names used across subpackages:\n" + "\n".join(bad)


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for _m, path in ALL_MODULES
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_subpackage_init_says_what_lives_there_and_what_it_imports() -> None:
    bare = []
    for _m, path in ALL_MODULES:
        if path.name != "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if len(doc.split()) < 12 or (path.parent != PACKAGE and "import" not in doc.lower()):
            bare.append(str(path.relative_to(REPO)))
    assert not bare, (
        f"__init__ docstrings that do not say what lives there and what it imports: {bare}"
    )


#: Modules that need an optional extra, and the extra's import that tells whether it is here.
OPTIONAL: dict[str, str] = {
    "safeladder.serving.ray_serve": "ray",
    "safeladder.scoring.ray_engine": "ray",
}


@pytest.mark.parametrize("module", [m for m, _ in ALL_MODULES if m != "safeladder.__main__"])
def test_every_module_imports_and_its_all_resolves(module: str) -> None:
    if module in OPTIONAL:
        pytest.importorskip(OPTIONAL[module])
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__", ()):
        assert hasattr(mod, name), f"{module}.__all__ lists {name!r}, which it does not define"
