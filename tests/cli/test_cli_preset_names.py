"""A preset name cannot leave the presets folder: ``safeladder check ../../tmp/x`` used to load
``/tmp/x.yaml`` through ``safeladder/presets/rewards/../../tmp/x.yaml``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.config import preset_path

runner = CliRunner()

_REWARD = {"name": "outside", "terms": [{"name": "qa", "verifier": {"type": "qa_match"}}]}


def test_a_path_like_name_is_not_resolved_inside_the_presets_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump(_REWARD), encoding="utf-8")
    presets = Path(str(resources.files("safeladder") / "presets" / "rewards"))
    traversal = os.path.relpath(tmp_path / "outside", presets)  # "../../…/outside", no .yaml
    assert traversal.startswith("..")
    elsewhere = tmp_path / "cwd"  # where the same relative path names no file
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    result = runner.invoke(app, ["check", traversal])

    assert result.exit_code == 2, result.output
    assert "config file not found" in result.output
    assert "outside" not in result.output.split("not found")[0]  # no reward was loaded
    assert preset_path("rewards", traversal) is None


def test_a_path_is_read_as_a_file_and_a_bare_name_as_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_REWARD), encoding="utf-8")
    as_file = runner.invoke(app, ["check", str(path)])
    assert as_file.exit_code == 0, as_file.output
    assert "reward 'outside'" in as_file.output
    preset = runner.invoke(app, ["check", "default"])
    assert preset.exit_code == 0, preset.output


@pytest.mark.parametrize(
    "name", ["../default", "/etc/passwd", "rewards\\default", "default.yaml", ""]
)
def test_only_bare_names_name_presets(name: str) -> None:
    assert preset_path("rewards", name) is None
