"""Reward composition: weighted terms, metric-only terms, gates, routes, normalization."""

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
