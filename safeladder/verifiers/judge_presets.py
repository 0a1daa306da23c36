"""The shipped ``label_judge`` presets: ``safeladder/presets/label_judge/<name>.yaml``.

A preset sets what the judge is asked and how it is scored (template, labels, aggregation),
never the model path, runtime or name; ``LabelJudgeConfig`` fills every field a preset sets
that the config does not set itself.
"""

from __future__ import annotations

from typing import Any

from safeladder.config import load_yaml, preset_path
from safeladder.errors import ConfigError

__all__ = ["PRESETS", "load_preset"]

PRESETS = (
    "safework_safety",
    "safework_value",
    "safework_knowledge",
    "guardrank_privacy",
    "guardrank_bias",
    "guardrank_toxicity",
    "guardrank_legality",
    "guardrank_hallucination",
)
#: Fields a preset file may set (everything about what is asked and how it is scored; never
#: the model path, runtime or name).
_PRESET_FIELDS = frozenset(
    [
        "template",
        "templates",
        "template_by_meta",
        "system_prompt",
        "labels",
        "label_prefix",
        "response_prefix",
        "aggregate",
        "true_label",
        "false_label",
        "length_normalize",
        "judge_final_answer",
        "empty_score",
    ]
)


def load_preset(name: str) -> dict[str, Any]:
    """The fields of a shipped label-judge preset (``safeladder/presets/label_judge/<name>.yaml``).

    >>> sorted(load_preset("safework_value")["labels"])
    ['bad', 'good']
    """
    path = preset_path("label_judge", name)
    if path is None:
        raise ConfigError(
            f"preset: unknown label_judge preset {name!r}; known: {', '.join(PRESETS)}"
        )
    data = load_yaml(path)
    unknown = sorted(set(data) - _PRESET_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: keys {unknown} cannot be set by a preset")
    return data
