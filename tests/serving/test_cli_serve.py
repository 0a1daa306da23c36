"""``safeladder serve``: flags → ServeSettings → the app handed to uvicorn (uvicorn.run stubbed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app

uvicorn = pytest.importorskip("uvicorn")
runner = CliRunner()


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run(application: Any, **kwargs: Any) -> None:
        calls.append({"app": application, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("SAFELADDER_API_KEY", raising=False)
    return calls


def probe_config(tmp_path: Path) -> str:
    path = tmp_path / "probe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "probe",
                "terms": [
                    {
                        "name": "chars",
                        "verifier": {"type": "custom", "target": "tests.helpers:ProbeVerifier"},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return str(path)


def test_defaults_bind_loopback_and_batch(launched: list[dict[str, Any]], tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", probe_config(tmp_path)])
    assert result.exit_code == 0, result.output
    (call,) = launched
    settings = call["app"].state.settings
    assert (call["host"], call["port"]) == ("127.0.0.1", 8000)
    assert settings.max_batch_size == 64 and settings.api_key is None
    assert call["access_log"] is False


def test_flags_reach_the_settings(launched: list[dict[str, Any]], tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k3y-from-file\n", encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "serve",
            probe_config(tmp_path),
            "--port",
            "9001",
            "--batching",
            "off",
            "--max-wait-ms",
            "2",
            "--meta",
            "task=math",
            "--missing-prompts",
            "query_is_completion",
            "--api-key-file",
            str(key_file),
            "--set",
            "terms.0.weight=2",
            "--unscorable-reward",
            "-1",
            "--log-missing-as",
            "nan",
            "--body-timeout",
            "2.5",
            "--keep-alive-timeout",
            "7",
            "--stuck-batch",
            "30",
            "--image-root",
            str(tmp_path),
            "--max-images-per-row",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    (call,) = launched
    s = call["app"].state.settings
    assert s.image_root == str(tmp_path) and s.max_images_per_row == 3
    assert s.unscorable_reward == -1.0 and s.log_missing_as == "nan"
    assert (s.body_timeout_s, s.keep_alive_timeout_s, s.stuck_batch_s) == (2.5, 7.0, 30.0)
    assert call["timeout_keep_alive"] == 7.0
    assert call["port"] == 9001 and s.max_batch_size == 1 and s.max_wait_ms == 2
    assert s.default_meta == {"task": "math"}
    assert s.missing_prompts == "query_is_completion"
    assert s.api_key.get_secret_value() == "k3y-from-file"
    assert "k3y-from-file" not in result.output + repr(s)


def test_api_key_from_the_environment(
    launched: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFELADDER_API_KEY", "env-key")
    result = runner.invoke(app, ["serve", probe_config(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert launched[0]["app"].state.settings.api_key.get_secret_value() == "env-key"
    assert "warning" not in result.output  # a key is set, so no open-server warning


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batching", "off", "--max-batch-size", "8"], "--batching off"),
        (["--api-key-file", "/nonexistent/key"], "cannot read the API key file"),
        (["--max-queue", "10", "--max-request-samples", "20"], "max_request_samples"),
        (["--set", "terms.0.weight=oops"], "weight"),
    ],
)
def test_usage_errors_exit_2(
    launched: list[dict[str, Any]], tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["serve", probe_config(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert launched == []


SERVE_CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "serve").glob("*.yaml"))


def test_there_are_serve_configs() -> None:
    assert SERVE_CONFIGS


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_serve_config_validates(path: Path) -> None:
    from safeladder.config import load_yaml
    from safeladder.serving import ServeSettings

    ServeSettings.model_validate(load_yaml(path))


def test_settings_file_with_flags_overriding_it(
    launched: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = tmp_path / "serve.yaml"
    settings.write_text(
        yaml.safe_dump(
            {"port": 9100, "max_wait_ms": 3, "log_missing_as": "nan", "default_meta": {"a": 1}}
        ),
        encoding="utf-8",
    )
    result = runner.invoke(
        app,
        [
            "serve",
            probe_config(tmp_path),
            "--settings",
            str(settings),
            "--max-wait-ms",
            "7",
            "--meta",
            "task=math",
        ],
    )
    assert result.exit_code == 0, result.output
    (call,) = launched
    s = call["app"].state.settings
    assert call["port"] == 9100 and s.log_missing_as == "nan"
    assert s.max_wait_ms == 7  # the flag wins
    assert s.default_meta == {"a": 1, "task": "math"}


def test_a_bad_settings_file_names_the_key(launched: list[dict[str, Any]], tmp_path: Path) -> None:
    settings = tmp_path / "serve.yaml"
    settings.write_text("max_wait_ms: soon\n", encoding="utf-8")
    result = runner.invoke(app, ["serve", probe_config(tmp_path), "--settings", str(settings)])
    assert result.exit_code == 2
    assert "max_wait_ms" in result.output and "serve.yaml" in result.output
    assert launched == []
