"""The shipped ``label_judge`` presets: ``safeladder/presets/label_judge/<name>.yaml``.

A preset sets what the judge is asked and how it is scored (template, labels, aggregation),
never the model path, runtime or name; ``LabelJudgeConfig`` fills every field a preset sets
that the config does not set itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from safeladder.config import load_yaml, preset_path
from safeladder.errors import ConfigError

__all__ = ["PRESETS", "PresetName", "load_preset", "merge_preset"]

#: The shipped presets (``LabelJudgeConfig.preset`` accepts exactly these).
PresetName = Literal[
    "safework_safety",
    "safework_value",
    "safework_knowledge",
    "guardrank_privacy",
    "guardrank_bias",
    "guardrank_toxicity",
    "guardrank_legality",
    "guardrank_hallucination",
    # Released guard models in their own formats (each file cites its source).
    "llama_guard_3",
    "llama_guard_4",
    "shieldgemma_dangerous_content",
    "shieldgemma_harassment",
    "shieldgemma_hate_speech",
    "shieldgemma_sexually_explicit",
    "wildguard",
    "harmbench_classifier",
]
PRESETS: tuple[str, ...] = get_args(PresetName)
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
        # Guard-model formats (safeladder.verifiers.judge_fields).
        "rendering",
        "chat_template_kwargs",
        "message_content",
        "add_bos",
        "labels_in_context",
        "fields",
        "categories",
        "category_after",
        "category_sep",
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


def merge_preset(data: Any) -> Any:
    """A config mapping with its ``preset``'s fields filled in where it does not set them.

    >>> merge_preset({"preset": "safework_value", "aggregate": "argmax"})["aggregate"]
    'argmax'
    """
    # Explicit fields win over the preset's: the preset only fills what is not given.
    if not isinstance(data, Mapping) or not data.get("preset"):
        return data
    name = data["preset"]
    if name not in PRESETS:
        return data  # the Literal check reports it, naming the key
    merged = dict(load_preset(str(name)))
    merged.update(data)
    return merged
