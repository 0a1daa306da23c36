"""Every shipped config validates and builds: configs/**, presets/rewards, presets/verifiers."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeladder import load_reward
from safeladder.config import preset_names
from safeladder.verifiers import build_verifier
from tests.helpers import REPO

REWARD_CONFIGS = sorted((REPO / "configs" / "reward").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert len(REWARD_CONFIGS) >= 3
    assert "default" in preset_names("rewards")


@pytest.mark.parametrize("path", REWARD_CONFIGS, ids=lambda p: p.name)
def test_reward_config_builds(path: Path) -> None:
    with load_reward(str(path)) as reward:
        assert reward.term_names


@pytest.mark.parametrize("name", preset_names("rewards"))
def test_reward_preset_builds(name: str) -> None:
    with load_reward(name) as reward:
        assert reward.term_names


@pytest.mark.parametrize("name", preset_names("verifiers"))
def test_verifier_preset_builds(name: str) -> None:
    v = build_verifier(name)
    v.close()
