"""Fixtures shared by the trainer-integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from safeladder.integrations import _common as common


@pytest.fixture
def default_reward_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The trainers' calls with the *default* reward and no options: no reward config, NaN
    policy or meta from the environment, and no reward cached by an earlier test."""
    for var in (common.ENV_REWARD_CONFIG, common.ENV_NAN_SCORE, "SAFELADDER_META"):
        monkeypatch.delenv(var, raising=False)
    yield
    common.clear_shared_rewards()
