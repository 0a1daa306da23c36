"""Configs (YAML, key-path errors, shipped examples) and traces (JSONL round trip, report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeladder.errors import ConfigError, InputError
from safeladder.guidance import (
    GenerateConfig,
    GuidedConfig,
    best_of_n,
    load_generate_config,
    load_traces,
    render_report,
    save_traces,
    vote,
)
from safeladder.guidance.config import StepConfig
from safeladder.rewards import load_reward
from tests.guidance.fakes import EOS, MARKER, ScriptedGenerator, marker_reward
from tests.helpers import REPO

GENERATE_CONFIGS = sorted((REPO / "configs" / "generate").glob("*.yaml"))


def test_there_are_shipped_generate_configs() -> None:
    assert len(GENERATE_CONFIGS) >= 2


@pytest.mark.parametrize("path", GENERATE_CONFIGS, ids=lambda p: p.name)
def test_shipped_generate_config_validates_and_its_rewards_build(path: Path) -> None:
    cfg = load_generate_config(path)
    with load_reward(cfg.reward):
        pass
    if isinstance(cfg.search, GuidedConfig) and cfg.search.step_reward is not None:
        with load_reward(cfg.search.step_reward):
            pass


def test_yaml_errors_name_the_key_path(tmp_path: Path) -> None:
    p = tmp_path / "g.yaml"
    p.write_text("model: {path: m}\nsearch: {mode: guided, beems: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"search.*beems"):
        load_generate_config(p)
    p.write_text("model: {path: m}\nsearch: {mode: sideways}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="search"):
        load_generate_config(p)
    with pytest.raises(ConfigError, match="separator"):
        load_generate_config(
            {"model": {"path": "m"}, "search": {"mode": "guided", "step": {"separator": ""}}}
        )


def test_overrides_and_defaults() -> None:
    cfg = load_generate_config({"model": {"path": "m"}}, ["search.n=3", "sampling.seed=7"])
    assert isinstance(cfg, GenerateConfig)
    assert cfg.search.mode == "best_of_n" and cfg.search.n == 3 and cfg.sampling.seed == 7
    assert StepConfig().separator == "\n\n"


def test_traces_round_trip_and_render(tmp_path: Path) -> None:
    gen = ScriptedGenerator(lambda ctx: ["v=1 | a" + EOS, f"v=5 {MARKER}" + EOS])
    with marker_reward() as reward:
        traces = best_of_n(gen, reward, ["first prompt", [{"role": "user", "content": "chat"}]])
        traces += vote(ScriptedGenerator(lambda ctx: ["#### 3 Confidence: 0.5"]), ["q"])
    path = save_traces(traces, tmp_path / "t.jsonl")
    back = load_traces(path)
    assert [t.model_dump() for t in back] == [t.model_dump() for t in traces]
    report = render_report(back)
    assert "# Guided generation report" in report
    assert "- prompts: 3" in report
    assert "v=1 \\| a" in report  # table cells escape the pipe
    assert "safe" in report  # the vetoing term is named
    assert "confidence vote agrees with majority: 1/1" in report
    assert render_report([]).endswith("No prompts.\n")


def test_load_traces_names_the_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"mode": "guided"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1"):
        load_traces(p)


@pytest.mark.parametrize("mode", ["best_of_n", "guided", "vote"])
def test_run_search_dispatches_on_the_mode(mode: str) -> None:
    from safeladder.guidance import run_search

    cfg = load_generate_config({"model": {"path": "m"}, "search": {"mode": mode}})
    gen = ScriptedGenerator(lambda ctx: ["v=2\n#### 2" + EOS])
    with marker_reward() as reward:
        (t,) = run_search(gen, reward, ["q"], cfg)
    assert t.mode == mode and t.completion == "v=2\n#### 2" and t.score == 2.0
