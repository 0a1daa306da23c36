"""What a command prints besides its result: ``warning: <message>`` lines without file paths,
dependency noise (progress bars, FutureWarning / DeprecationWarning) only with ``--verbose``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.errors import SafeladderWarning
from tests.helpers import REPO

SAFELADDER_MESSAGE = "noisy: 2 rows were rescored from a stale cache"


def noisy(batch: Any) -> list[float]:
    """``custom`` batch target: warns the way safeladder and a dependency do, scores 1.0."""
    warnings.warn(SAFELADDER_MESSAGE, SafeladderWarning, stacklevel=1)
    warnings.warn("torch.foo is deprecated, use torch.bar", FutureWarning, stacklevel=1)
    warnings.warn("pkg_resources is deprecated", DeprecationWarning, stacklevel=1)
    return [1.0] * len(batch)


def _eval_files(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "noisy.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"type": "custom", "target": "tests.cli.test_cli_output:noisy", "mode": "batch"}
        )
    )
    data = tmp_path / "rows.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"prompt": "p", "response": r, "label": i % 2})
            for i, r in enumerate(["a", "b"])
        )
        + "\n"
    )
    return spec, data


def _stderr(*args: Any) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.stderr


def test_warnings_print_as_one_line_without_paths(tmp_path: Path) -> None:
    spec, data = _eval_files(tmp_path)
    err = _stderr("eval", spec, "--data", data, "--no-progress")
    assert f"warning: {SAFELADDER_MESSAGE}\n" in err
    assert ".py:" not in err and "SafeladderWarning" not in err  # no "file.py:123: Category:"
    assert "deprecated" not in err  # the dependencies' warnings stay quiet by default


def test_verbose_shows_dependency_warnings(tmp_path: Path) -> None:
    spec, data = _eval_files(tmp_path)
    err = _stderr("--verbose", "eval", spec, "--data", data, "--no-progress")
    assert f"warning: {SAFELADDER_MESSAGE}\n" in err
    assert "FutureWarning: torch.foo is deprecated" in err  # Python's own format, with the path
    assert "test_cli_output.py:" in err


def test_the_command_leaves_warning_state_as_it_found_it(tmp_path: Path) -> None:
    spec, data = _eval_files(tmp_path)
    before = (
        warnings.showwarning,
        list(warnings.filters),
        os.environ.get("TRANSFORMERS_VERBOSITY"),
    )
    _stderr("eval", spec, "--data", data, "--no-progress")
    after = (warnings.showwarning, list(warnings.filters), os.environ.get("TRANSFORMERS_VERBOSITY"))
    assert after == before


@pytest.mark.slow
def test_library_progress_bars_only_with_verbose(tmp_path: Path) -> None:
    # A fresh process, as a user runs it: the packaged MiniLM encoder's load draws transformers'
    # "Loading weights" bar unless it is silenced.
    spec = tmp_path / "head.yaml"
    head = REPO / "tests" / "verifiers" / "fixtures" / "gptfuzz_minilm_head"
    spec.write_text(yaml.safe_dump({"type": "embedding_head", "path": str(head)}))
    _, data = _eval_files(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    env.pop("TRANSFORMERS_VERBOSITY", None)

    def run(*flags: str) -> str:
        cmd = [sys.executable, "-m", "safeladder.cli.app", *flags, "eval", str(spec)]
        cmd += ["--data", str(data), "--no-progress"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        assert res.returncode == 0, res.stderr
        return res.stderr

    assert "Loading weights" not in run()
    assert "Loading weights" in run("-v")
