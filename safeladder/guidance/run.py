"""One entry point for a whole ``GenerateConfig``: load the model and rewards, run the mode.

``safeladder generate`` is a thin shell over ``run_generate``; Python users can call it (or
``run_search`` with their own generator and reward) directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from safeladder.config import apply_overrides, load_yaml, validate
from safeladder.errors import ConfigError
from safeladder.guidance.best_of_n import best_of_n
from safeladder.guidance.config import GenerateConfig, GuidedConfig, VoteConfig
from safeladder.guidance.corrections import CorrectionMemory
from safeladder.guidance.generator import HFGenerator, TextGenerator
from safeladder.guidance.guided_search import guided_search
from safeladder.guidance.trace import Trace
from safeladder.guidance.voting import vote
from safeladder.rewards.reward import Reward, load_reward
from safeladder.types import Prompt, Sample


def load_generate_config(
    source: str | Path | Mapping[str, Any] | GenerateConfig, overrides: Iterable[str] = ()
) -> GenerateConfig:
    """A validated ``GenerateConfig`` from a YAML path, a mapping or a config (+ dotted overrides).

    Errors are ``ConfigError`` naming the file and the key path, e.g. ``search.beams``.
    """
    overrides = list(overrides)
    if isinstance(source, GenerateConfig) and not overrides:
        return source
    where: str | None = None
    if isinstance(source, GenerateConfig):
        data: Any = source.model_dump(mode="json")
    elif isinstance(source, (str, Path)):
        data, where = load_yaml(source), str(source)
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        raise ConfigError(f"cannot read a generate config from {type(source).__name__}")
    if overrides:
        data = apply_overrides(data, overrides)
    return validate(GenerateConfig, data, where)


def run_search(
    generator: TextGenerator,
    reward: Reward,
    prompts: Sequence[Sample | Mapping[str, Any] | Prompt],
    config: GenerateConfig,
    *,
    step_reward: Reward | None = None,
    corrections: CorrectionMemory | None = None,
) -> list[Trace]:
    """Run ``config.search`` (best_of_n | guided | vote) with ``config.sampling``'s budget and seed.

    With ``config.corrections`` set (or a ``corrections`` memory given), the nearest stored
    corrections are injected into each prompt the model sees (``safeladder.guidance.corrections``).
    """
    memory = corrections
    if memory is None and config.corrections is not None:
        memory = CorrectionMemory(config.corrections)
    try:
        return _run_mode(generator, reward, prompts, config, step_reward, memory)
    finally:
        if memory is not None and memory is not corrections:
            memory.close()


def _run_mode(
    generator: TextGenerator,
    reward: Reward,
    prompts: Sequence[Sample | Mapping[str, Any] | Prompt],
    config: GenerateConfig,
    step_reward: Reward | None,
    memory: CorrectionMemory | None,
) -> list[Trace]:
    s = config.sampling
    search = config.search
    common: dict[str, Any] = {
        "max_new_tokens": s.max_new_tokens,
        "seed": s.seed,
        "corrections": memory,
    }
    if isinstance(search, GuidedConfig):
        return guided_search(generator, reward, prompts, search, step_reward=step_reward, **common)
    if isinstance(search, VoteConfig):
        return vote(generator, prompts, search, reward=reward, **common)
    return best_of_n(generator, reward, prompts, search, **common)


def run_generate(
    config: GenerateConfig, prompts: Sequence[Sample | Mapping[str, Any] | Prompt]
) -> list[Trace]:
    """Load the model (``config.model``) and the reward(s), run the search, release the rewards."""
    generator = HFGenerator(config.model, config.sampling)
    reward = load_reward(config.reward)
    step_reward: Reward | None = None
    try:
        if isinstance(config.search, GuidedConfig) and config.search.step_reward is not None:
            step_reward = load_reward(config.search.step_reward)
        return run_search(generator, reward, prompts, config, step_reward=step_reward)
    finally:
        reward.close()
        if step_reward is not None:
            step_reward.close()
        generator.close()
