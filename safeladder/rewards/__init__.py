"""Reward composition: weighted terms, metric-only terms, gates, routes, normalization.

- ``config``: ``RewardConfig`` (terms, gates, routes, required terms) as frozen pydantic models;
- ``reward``: ``Reward`` runs each verifier once per batch and combines the terms into a
  ``RewardResult``; ``load_reward`` builds one from YAML, a dict or a preset;
- ``normalize``: batch / group z-scores and ranks.

Imports types, errors, config, data and verifiers; never scoring, adapters, the server or the CLI.
"""

from safeladder.rewards.config import GateConfig, RewardConfig, RouteConfig, TermConfig
from safeladder.rewards.reward import Reward, load_reward, parse_reward_config

__all__ = [
    "GateConfig",
    "Reward",
    "RewardConfig",
    "RouteConfig",
    "TermConfig",
    "load_reward",
    "parse_reward_config",
]
