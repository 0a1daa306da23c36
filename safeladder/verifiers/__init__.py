"""Verifier registry: one module per ``type``, one line per module in ``VerifierSpec``.

``build_verifier`` builds any registered verifier from a dict, a config object, or the name of a
shipped preset (``safeladder/presets/verifiers/<name>.yaml``) or of a type with defaults.

Rule verifiers are pure functions of a row; the neural ones subclass ``neural_base`` and run on
the engine in ``safeladder.neural``. Layer: imports types / errors / config / answers, ``data``
and ``neural``; never rewards, scoring, adapters, the server, training or the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from safeladder.config import load_yaml, preset_names, preset_path, validate
from safeladder.errors import ConfigError
from safeladder.verifiers.answer_match import AnswerMatchConfig
from safeladder.verifiers.base import RuleVerifier, Verifier, VerifierConfig
from safeladder.verifiers.choice_answer import ChoiceAnswerConfig
from safeladder.verifiers.classifier import ClassifierConfig
from safeladder.verifiers.confidence_calibration import ConfidenceCalibrationConfig
from safeladder.verifiers.custom import CustomConfig
from safeladder.verifiers.embedding_head import EmbeddingHeadConfig
from safeladder.verifiers.ensemble import EnsembleConfig
from safeladder.verifiers.image_safety import ImageSafetyConfig
from safeladder.verifiers.kk_logic import KKLogicConfig
from safeladder.verifiers.label_judge import LabelJudgeConfig
from safeladder.verifiers.length import LengthConfig
from safeladder.verifiers.math_answer import MathAnswerConfig
from safeladder.verifiers.process_reward import ProcessRewardConfig
from safeladder.verifiers.qa_match import QAMatchConfig
from safeladder.verifiers.refusal import RefusalConfig
from safeladder.verifiers.repeats_correction import RepeatsCorrectionConfig
from safeladder.verifiers.repetition import RepetitionConfig
from safeladder.verifiers.reward_model import RewardModelConfig
from safeladder.verifiers.step_scorer import StepScorerConfig
from safeladder.verifiers.tfidf import TfidfConfig
from safeladder.verifiers.think_format import ThinkFormatConfig
from safeladder.verifiers.unwarranted_refusal import UnwarrantedRefusalConfig

VerifierSpec = Annotated[
    ThinkFormatConfig
    | MathAnswerConfig
    | ChoiceAnswerConfig
    | QAMatchConfig
    | AnswerMatchConfig
    | LengthConfig
    | RepetitionConfig
    | RefusalConfig
    | ConfidenceCalibrationConfig
    | KKLogicConfig
    | ClassifierConfig
    | RewardModelConfig
    | LabelJudgeConfig
    | EmbeddingHeadConfig
    | StepScorerConfig
    | ProcessRewardConfig
    | ImageSafetyConfig
    | RepeatsCorrectionConfig
    | EnsembleConfig
    | TfidfConfig
    | UnwarrantedRefusalConfig
    | CustomConfig,
    Field(discriminator="type"),
]

#: type tag → config class, derived from the union so it cannot drift from it.
REGISTRY: dict[str, type[VerifierConfig]] = {
    cls.model_fields["type"].default: cls
    for cls in VerifierSpec.__origin__.__args__  # type: ignore[attr-defined]
}


def _shipped_paths(data: Any, preset: Path) -> Any:
    """A relative ``path`` in a verifier YAML file, made absolute against the file's folder.

    So a shipped preset finds the model inside the package, and a trained output's
    ``safeladder_verifier.yaml`` (``path: .``) loads from any working directory. An ensemble's
    member configs written in the file, and member YAML files named relative to it, are resolved
    the same way (a member given by name is a preset), and so is an ``unwarranted_refusal``'s
    ``request_judges``.
    """
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    if isinstance(out.get("path"), str):
        p = Path(out["path"])
        if not p.is_absolute():
            out["path"] = str((preset.parent / p).resolve())
    if out.get("type") == "ensemble" and isinstance(out.get("members"), list):
        out["members"] = [_member_paths(m, preset) for m in out["members"]]
    if out.get("type") == "unwarranted_refusal" and isinstance(out.get("request_judges"), list):
        out["request_judges"] = [
            _member_paths(
                j if isinstance(j, Mapping) and "verifier" in j else {"verifier": j}, preset
            )
            for j in out["request_judges"]
        ]
    return out


def _member_paths(member: Any, preset: Path) -> Any:
    """An ensemble member with its config (inline, or a relative YAML file name) resolved
    against the ensemble file's folder; a member named by preset stays a name."""
    if not isinstance(member, Mapping):
        return member
    ref = member.get("verifier")
    if isinstance(ref, Mapping):
        return {**member, "verifier": _shipped_paths(ref, preset)}
    if (
        isinstance(ref, str)
        and ref.endswith((".yaml", ".yml"))
        and not Path(ref).is_absolute()
        and preset_path("verifiers", ref) is None
    ):
        return {**member, "verifier": str((preset.parent / ref).resolve())}
    return member


def parse_verifier_config(config: Any, source: str | None = None) -> VerifierConfig:
    """A validated verifier config from a dict / config object / preset name / YAML path."""
    if isinstance(config, VerifierConfig):
        return config
    if isinstance(config, (str, Path)):
        name = str(config)
        path = preset_path("verifiers", name)
        if path is not None:
            return parse_verifier_config(_shipped_paths(load_yaml(path), path), source=str(path))
        if name in REGISTRY:
            return validate(VerifierSpec, {"type": name}, source)
        if name.endswith((".yaml", ".yml")) or Path(name).is_file():
            return parse_verifier_config(_shipped_paths(load_yaml(name), Path(name)), source=name)
        known = sorted(set(preset_names("verifiers")) | set(REGISTRY))
        raise ConfigError(f"unknown verifier {name!r}; known presets and types: {', '.join(known)}")
    if isinstance(config, Mapping):
        if "type" not in config:
            raise ConfigError(
                f"{source + ': ' if source else ''}verifier config needs a 'type' (one of {sorted(REGISTRY)})"
            )
        if config["type"] not in REGISTRY:
            raise ConfigError(
                f"{source + ': ' if source else ''}type: unknown verifier type {config['type']!r}; "
                f"known: {', '.join(sorted(REGISTRY))}"
            )
        return validate(VerifierSpec, dict(config), source)
    raise ConfigError(f"cannot build a verifier from {type(config).__name__}")


def build_verifier(config: Any) -> Verifier:
    """Build a verifier.

    Args:
        config: a dict such as ``{"type": "math_answer"}``, a verifier config object, or a
            string naming a shipped preset (``"logic_rl_format"``) or a type (``"math_answer"``).

    >>> build_verifier({"type": "qa_match"}).score([{"completion": "Paris", "reference": "paris"}]).scores
    array([1.], dtype=float32)
    """
    return parse_verifier_config(config).build()


__all__ = [
    "REGISTRY",
    "RuleVerifier",
    "Verifier",
    "VerifierConfig",
    "VerifierSpec",
    "build_verifier",
    "parse_verifier_config",
]
