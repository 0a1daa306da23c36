"""``safeladder generate`` end to end with the tiny causal LM."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.guidance import load_generate_config, load_traces
from safeladder.guidance.demo_policy import (
    DEMO_CONFIG,
    DEMO_PROMPTS,
    RECIPE_FILE,
    arith_check,
)
from safeladder.types import Sample
from tests.helpers import REPO, tiny_model_dir


def test_generate_writes_outputs_trace_and_report(tmp_path: Path) -> None:
    model = str(tiny_model_dir("qwen2_causal_lm"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "2+2?", "reference": "4", "meta": {"id": 1}})
        + "\n"
        + json.dumps({"prompt": [{"role": "user", "content": "hi"}], "answer": "x"})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "gen.jsonl"
    args = ["generate", "--model", model, "-i", str(prompts), "-o", str(out), "--mode", "guided"]
    args += ["--reward", "default", "--max-new-tokens", "8", "--set", "search.candidates=2"]
    args += ["--set", "search.step.max_tokens=4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["reference"] for r in rows] == ["4", "x"] and rows[0]["meta"] == {"id": 1}
    assert all(r["mode"] == "guided" and r["generated_tokens"] > 0 for r in rows)
    traces = load_traces(tmp_path / "gen.jsonl.trace.jsonl")
    assert [t.completion for t in traces] == [r["completion"] for r in rows]
    assert "# Guided generation report" in (tmp_path / "gen.jsonl.report.md").read_text(
        encoding="utf-8"
    )
    assert "2 prompts, mode guided" in res.output
    again = CliRunner().invoke(app, args)  # refuses to overwrite
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_generate_usage_errors(tmp_path: Path) -> None:
    out = str(tmp_path / "o.jsonl")
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "-o", out, "-p", "hi"])
    assert res.exit_code == 2 and "--model" in res.output
    res = runner.invoke(app, ["generate", "-o", out, "--model", "m"])
    assert res.exit_code == 2 and "--prompt" in res.output
    res = runner.invoke(
        app, ["generate", "-o", out, "--model", "m", "-p", "x", "--mode", "guided", "--n", "2"]
    )
    assert res.exit_code == 2 and "search.candidates" in res.output
    res = runner.invoke(app, ["generate", "-o", out, "--model", str(tmp_path / "nope"), "-p", "x"])
    assert res.exit_code == 2 and "nope" in res.output


def test_the_help_and_docstring_name_configs_that_exist() -> None:
    import safeladder.cli.generate as gen

    named = re.findall(r"configs/generate/[\w.]+\.yaml", gen.__doc__ or "")
    assert named, "the examples name a shipped config"
    for rel in named:
        assert (REPO / rel).is_file(), rel
    res = CliRunner().invoke(app, ["generate", "--help"])
    assert res.exit_code == 0 and "--demo" in res.output


def test_the_shipped_demo_config_and_prompts_validate() -> None:
    cfg = load_generate_config(DEMO_CONFIG, ["model.path=/any/policy"])
    assert cfg.search.mode == "guided"
    rows = [json.loads(x) for x in DEMO_PROMPTS.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["prompt"].startswith("Q: ") and r["reference"] for r in rows)


@pytest.mark.parametrize(
    ("completion", "want"),
    [
        ("", None),  # nothing checkable yet: abstain
        ("3 + 4 = 7", 1.0),  # right, operands from the problem
        ("3 + 4 = 8", 0.0),  # wrong sum
        ("3 + 5 = 8", 0.0),  # 5 is not in the problem
        ("3 + 4 = 7\n\n#### 7", 1.0),  # 3 checks: equation, final = last result, all numbers used
        ("3 + 4 = 7\n\n#### 8", 2 / 3),  # final differs from the last result
        ("#### 7", 0.0),  # a final answer with no work: no last result, numbers unused
    ],
)
def test_demo_process_reward_by_hand(completion: str, want: float | None) -> None:
    s = Sample(
        prompt="Q: Ann has 3 pens. Ann gets 4 more. How many pens now?\nA: ", completion=completion
    )
    got = arith_check(s)
    assert got == pytest.approx(want) if want is not None else got is None


@pytest.mark.slow
def test_demo_runs_out_of_the_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any
) -> None:
    # One cache per test session (tests/test_readme.py uses the same one): trained once.
    cache = tmp_path_factory.getbasetemp() / "safeladder-demo-cache"
    monkeypatch.setenv("SAFELADDER_CACHE", str(cache))
    out = tmp_path / "demo.jsonl"
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--demo", "-o", str(out)])
    assert res.exit_code == 0, res.output
    shipped = [json.loads(x) for x in DEMO_PROMPTS.read_text(encoding="utf-8").splitlines()]
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["reference"] for r in rows] == [r["reference"] for r in shipped]
    assert all(r["mode"] == "guided" and r["generated_tokens"] > 0 for r in rows)
    # Every chosen completion was scored by the demo's process reward (never NaN here: a
    # completion with no equation would abstain and rank last).
    assert all(r["score"] is not None and 0.0 <= r["score"] <= 1.0 for r in rows)
    models = list(cache.glob("demo_policy-*"))
    assert len(models) == 1 and (models[0] / RECIPE_FILE).is_file()
    assert str(models[0]) in res.stderr
    # Second run: the cached policy, the user's own prompt, no training.
    res = runner.invoke(app, ["generate", "--demo", "-p", "Q: Bo has 2 bags with 3 coins each. How many coins in all?\nA: ", "-o", str(out), "--overwrite"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "training the demo policy" not in res.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
    res = runner.invoke(app, ["generate", "--demo", "--model", "m", "-o", str(out)])
    assert res.exit_code == 2 and "--demo brings its own model" in res.output
