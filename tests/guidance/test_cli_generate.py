"""``safeladder generate`` end to end with the tiny causal LM."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.guidance import load_traces
from tests.helpers import tiny_model_dir


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
