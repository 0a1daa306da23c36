"""``safeladder check`` and ``safeladder verifiers``: exit codes, messages, generated docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safeladder.config import preset_names
from safeladder.verifiers import REGISTRY
from tests.cli.fixtures_rewards import reward_config
from tests.cli.support import invoke, write_yaml

# ---------------------------------------------------------------- check


def test_check_ok_prints_one_line_with_the_term_names(tmp_path: Path) -> None:
    cfg = reward_config("word_count")
    cfg["terms"].append(
        {
            "name": "fmt",
            "verifier": {"type": "custom", "target": "tests.cli.fixtures_rewards:lengths"},
            "weight": 0,
        }
    )
    res = invoke("check", write_yaml(tmp_path / "r.yaml", cfg))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.count("\n") == 1
    assert (
        res.stdout.startswith("OK ")
        and "score (weight 1)" in res.stdout
        and "fmt (weight 0)" in res.stdout
    )


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c["terms"][0].update(wieght=1), "terms.0.wieght"),
        (lambda c: c["terms"][0]["verifier"].update(type="nope"), "terms.0.verifier"),
        (lambda c: c["terms"][0].update(weight="heavy"), "terms.0.weight"),
        (lambda c: c.update(terms=[]), "terms"),
    ],
)
def test_check_bad_config_exits_2_naming_the_key(tmp_path: Path, mutate: Any, key: str) -> None:
    cfg = reward_config("word_count")
    mutate(cfg)
    path = write_yaml(tmp_path / "r.yaml", cfg)
    res = invoke("check", path)
    assert res.exit_code == 2
    assert key in res.stderr and "Traceback" not in res.stderr


def test_check_missing_file_and_invalid_yaml_exit_2(tmp_path: Path) -> None:
    res = invoke("check", tmp_path / "missing.yaml")
    assert res.exit_code == 2 and "not found" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("terms: [\n  - name: x\n")
    res = invoke("check", bad)
    assert res.exit_code == 2 and "invalid YAML" in res.stderr


def test_check_applies_overrides(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    assert "weight 0.25" in invoke("check", path, "--set", "terms.0.weight=0.25").stdout
    res = invoke("check", path, "--set", "terms.0.weight=0")
    assert res.exit_code == 2 and "weight" in res.stderr
    res = invoke("check", path, "--set", "no_equals_sign")
    assert res.exit_code == 2 and "KEY.PATH=VALUE" in res.stderr


def test_check_build_imports_custom_targets(tmp_path: Path) -> None:
    cfg = reward_config("word_count")
    cfg["terms"][0]["verifier"]["target"] = "tests.cli.fixtures_rewards:no_such_function"
    path = write_yaml(tmp_path / "r.yaml", cfg)
    assert invoke("check", path).exit_code == 0  # validation alone does not import
    res = invoke("check", path, "--build")
    assert res.exit_code == 2 and "no_such_function" in res.stderr


def test_check_every_shipped_reward_preset() -> None:
    for name in preset_names("rewards"):
        res = invoke("check", name)
        # presets may reference verifiers still being written; then the error names the key
        assert res.exit_code in (0, 2), res.output
        if res.exit_code == 0:
            assert res.stdout.startswith(f"OK {name}")


# ---------------------------------------------------------------- verifiers


def test_verifiers_lists_every_registered_type_with_its_fields() -> None:
    res = invoke("verifiers")
    assert res.exit_code == 0, res.stderr
    for type_tag, cls in REGISTRY.items():
        assert f"\n{type_tag}:" in "\n" + res.stdout
        for name, info in cls.model_fields.items():
            if name != "type":
                assert f"  {name}: " in res.stdout
                if info.description:
                    # descriptions are wrapped; their first words appear verbatim
                    assert " ".join(info.description.split()[:3]) in " ".join(res.stdout.split())


def test_verifiers_one_type_shows_types_defaults_and_descriptions() -> None:
    res = invoke("verifiers", "custom")
    assert res.exit_code == 0
    out = res.stdout
    assert out.startswith("custom: a user verifier named by an import path.")
    assert "  target: str  (required)" in out
    assert "  kwargs: dict[str, Any]  (default: {})" in out
    assert "  mode: Literal['row', 'batch']  (default: 'row')" in out
    assert "  on_error: Literal['raise', 'abstain']  (default: 'raise')" in out
    assert "Import path 'package.module:attribute'" in out
    assert "think_format:" not in out


def test_verifiers_json_matches_the_config_classes() -> None:
    res = invoke("verifiers", "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert [v["type"] for v in data["verifiers"]] == list(REGISTRY)
    custom = next(v for v in data["verifiers"] if v["type"] == "custom")
    target = next(f for f in custom["fields"] if f["name"] == "target")
    assert target == {
        "name": "target",
        "type": "str",
        "required": True,
        "default": None,
        "description": REGISTRY["custom"].model_fields["target"].description,
    }
    assert set(data["presets"]) == set(preset_names("verifiers"))


def test_verifiers_lists_the_shipped_presets() -> None:
    names = preset_names("verifiers")
    if not names:
        pytest.skip("no shipped verifier presets yet")
    res = invoke("verifiers")
    assert "presets (safeladder/presets/verifiers):" in res.stdout
    for name in names:
        assert f"  {name}: type " in res.stdout
    one = invoke("verifiers", names[0])
    assert one.exit_code == 0 and f"  {names[0]}: type " in one.stdout


def test_verifiers_unknown_type_exits_2() -> None:
    res = invoke("verifiers", "no_such_type")
    assert res.exit_code == 2
    assert "unknown verifier type or preset 'no_such_type'" in res.stderr and "custom" in res.stderr


def test_no_command_prints_help() -> None:
    res = invoke()
    assert "score" in res.output and "check" in res.output and "verifiers" in res.output
