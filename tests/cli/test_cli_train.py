"""``safeladder train`` and ``python train_verifier.py``: the same run, flags, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app
from tests.helpers import REPO, SHARED_DATA

runner = CliRunner()


def _config(tmp_path: Path, **over: Any) -> Path:
    src = str(SHARED_DATA / "toxigen_demonstrations.jsonl")
    data = {
        "kind": "embedding_head",
        "name": "cli-test",
        "data": {
            "train": [
                {"path": src, "where": {"label": 1}, "limit": 25},
                {"path": src, "where": {"label": 0}, "limit": 25},
            ],
            "dev_fraction": 0.3,
        },
        "features": {"blocks": ["prompt"]},
        "output_dir": "from-config",
        **over,
    }
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def test_config_errors_exit_2_naming_the_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path, head="svm")
    res = runner.invoke(app, ["train", str(cfg), "--no-progress"])
    assert res.exit_code == 2
    assert f"error: {cfg}: head: Input should be 'logistic', 'mlp' or 'torch'" in res.output
    res = runner.invoke(app, ["train", str(cfg), "--set", "head=logistic", "--set", "train.seed=x"])
    assert res.exit_code == 2 and "train.seed: Input should be a valid integer" in res.output


def test_bad_rows_exit_1_naming_file_row_and_field(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a", "label": 0}\n{"prompt": "b", "lable": 1}\n')
    cfg = _config(tmp_path, data={"train": [{"path": "rows.jsonl"}]})
    res = runner.invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert f"{rows}: row 2: field 'label': missing label" in res.output


@pytest.mark.slow
def test_cli_and_train_verifier_py_give_the_same_output(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    res = runner.invoke(app, ["train", str(cfg), "--output-dir", str(a), "--no-progress"])
    assert res.exit_code == 0, res.output
    for line in (
        "split: train",
        "class balance (dev)",
        "dev metrics",
        "auroc",
        "threshold on",
        "self-check: 8 dev rows",
        "verifier: safeladder_verifier.yaml",
    ):
        assert line in res.output, line

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train_verifier.py"),
            str(cfg),
            "--output-dir",
            str(b),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["metrics"] == mb["metrics"] and ma["baseline"] == mb["baseline"]
    assert ma["split"] == mb["split"] and ma["threshold"] == mb["threshold"]
    head_a, head_b = (json.loads((d / "safeladder_head.json").read_text()) for d in (a, b))
    assert head_a["weights"] == head_b["weights"]

    # A second run into a finished output is refused (exit 2) until --overwrite.
    res = runner.invoke(app, ["train", str(cfg), "--output-dir", str(a), "--no-progress"])
    assert res.exit_code == 2 and "holds a finished run; pass --overwrite" in res.output
