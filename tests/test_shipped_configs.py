"""Every shipped config validates and builds: configs/**, presets/rewards, presets/verifiers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safeladder import load_reward
from safeladder.config import preset_names
from safeladder.verifiers import build_verifier
from tests.helpers import REPO, SHARED_DATA

REWARD_CONFIGS = sorted((REPO / "configs" / "reward").glob("*.yaml"))
TRAIN_CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))


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


def test_there_are_train_configs_for_every_kind() -> None:
    from safeladder.training.config import KIND_CONFIGS, load_train_config

    kinds = {load_train_config(p).kind for p in TRAIN_CONFIGS}
    assert kinds == set(KIND_CONFIGS)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_train_config_validates(path: Path) -> None:
    from safeladder.training.config import load_train_config

    cfg = load_train_config(path)
    assert cfg.output_dir
    # Data paths resolve against the config's directory; the shared data set sits beside the
    # repository (../shared/data), so check the files when it is there.
    # Files under the repository's out/ are written by a script (not there in a clean clone):
    # the source must name it (`made_by`), and the script must exist.
    generated = (REPO / "out").resolve()
    if SHARED_DATA.is_dir():
        for src in [*cfg.data.train, *(cfg.data.dev or [])]:
            if Path(src.path).resolve().is_relative_to(generated):
                scripts = re.findall(r"scripts/\w+\.py", src.made_by or "")
                assert scripts and all((REPO / s).is_file() for s in scripts), src.path
                continue
            assert Path(src.path).exists(), src.path
