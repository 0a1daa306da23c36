"""YAML loading, dotted overrides and error messages that name the key path."""

from __future__ import annotations

import pytest

from safeladder.config import apply_overrides, load_yaml
from safeladder.errors import ConfigError


def test_overrides_set_nested_values_as_yaml() -> None:
    data = {"terms": [{"name": "a", "weight": 1.0, "verifier": {"type": "length"}}]}
    out = apply_overrides(
        data, ["terms.0.weight=0.25", "terms.0.verifier.max_length=512", "routes.key=task"]
    )
    assert out["terms"][0]["weight"] == 0.25
    assert out["terms"][0]["verifier"]["max_length"] == 512
    assert out["routes"] == {"key": "task"}
    assert data["terms"][0]["weight"] == 1.0  # input untouched


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("terms.3.weight=1", r"terms\.3 is not an index of a list of 1"),
        ("terms.0.weight.x=1", "is a value, not a mapping"),
        ("noequals", "expected KEY.PATH=VALUE"),
        ("terms.0.weight=[unclosed", "not valid YAML"),
    ],
)
def test_override_errors(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        apply_overrides({"terms": [{"weight": 1.0}]}, [override])


def test_load_yaml_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("terms: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}
