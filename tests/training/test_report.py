"""report.md / reliability.png from an EvalReport: the tables say what the numbers say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from safeladder.training.metrics import (
    multilabel_metrics,
    pairwise_metrics,
    pointwise_metrics,
    reliability_bins,
)
from safeladder.training.report import EvalReport, ReliabilityBin, fmt, write_report

Y = np.array([1, 1, 0, 1, 0, 0, 1, 0])
P = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.95, 0.05])
B = np.array([0.6, 0.4, 0.5, 0.5, 0.4, 0.3, 0.7, 0.5])


def _pointwise_report() -> EvalReport:
    return EvalReport(
        title="safety clf",
        kind="pointwise",
        verifier_name="minilm",
        metrics=pointwise_metrics(Y, P),
        baseline_name="tfidf+logreg",
        baseline_metrics=pointwise_metrics(Y, B),
        per_category={"a": pointwise_metrics(Y[:4], P[:4]), "b": pointwise_metrics(Y[4:], P[4:])},
        baseline_per_category={"a": pointwise_metrics(Y[:4], B[:4])},
        reliability=[ReliabilityBin(**b) for b in reliability_bins(Y, P)],
        baseline_reliability=[ReliabilityBin(**b) for b in reliability_bins(Y, B)],
        calibration={
            "method": "temperature",
            "temperature": 1.7,
            "ece_before": 0.2,
            "ece_after": 0.05,
            "threshold": 0.42,
        },
        data={"train": 100, "dev": 8, "class balance": {"0": 4, "1": 4}},
        skipped={"verifier: abstain": 2},
        history=[{"step": 10, "loss": 0.5}, {"step": 20, "loss": 0.25, "dev_f1": 0.8}],
        notes=["seeded split"],
    )


def test_markdown_tables_and_png(tmp_path: Path) -> None:
    files = write_report(_pointwise_report(), tmp_path / "out")
    assert set(files) == {"report", "reliability"}
    png = files["reliability"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    md = files["report"].read_text()
    m, b = pointwise_metrics(Y, P), pointwise_metrics(Y, B)
    assert "| metric | minilm | tfidf+logreg |" in md
    assert f"| accuracy | {m['accuracy']:.4f} | {b['accuracy']:.4f} |" in md
    assert f"| auroc | {m['auroc']:.4f} | {b['auroc']:.4f} |" in md
    assert "| n | 8 | 8 |" in md
    assert "| ece | 0.2000 | 0.0500 |" in md  # calibration before / after
    assert "- **temperature**: 1.7000" in md
    assert "| category | n | positives | accuracy | f1 | auroc | accuracy (tfidf+logreg)" in md
    # category b has no baseline row: its baseline cells are n/a, not a crash or a zero.
    row_b = next(line for line in md.splitlines() if line.startswith("| b |"))
    assert row_b.endswith("| n/a | n/a | n/a |")
    assert "| step | loss | dev_f1 |" in md and "| 10 | 0.5000 | n/a |" in md
    assert "| verifier: abstain | 2 |" in md
    assert "![reliability diagram](reliability.png)" in md
    assert "- seeded split" in md


def test_json_round_trip_turns_nan_into_null() -> None:
    rep = EvalReport(
        title="t",
        kind="pointwise",
        metrics=pointwise_metrics(np.array([0, 0]), np.array([0.1, 0.7])),
    )
    data = json.loads(rep.model_dump_json())
    assert data["metrics"]["auroc"] is None
    assert data["metrics"]["accuracy"] == 0.5
    assert EvalReport.model_validate(data).title == "t"


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        EvalReport(title="t", kind="pointwise", metrics={}, colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="kind"):
        EvalReport.model_validate({"title": "t", "kind": "listwise", "metrics": {}})


def test_pairwise_without_bins_writes_no_png(tmp_path: Path) -> None:
    rep = EvalReport(
        title="rm",
        kind="pairwise",
        metrics=pairwise_metrics(np.array([1.0, 0.0]), np.array([0.0, 1.0])),
        per_category={"x": pairwise_metrics(np.array([1.0]), np.array([0.0]))},
    )
    files = write_report(rep, tmp_path)
    assert set(files) == {"report"}
    md = files["report"].read_text()
    assert "| accuracy | 0.5000 |" in md and "| mean_margin | 0 |" in md
    assert "| category | n | accuracy | mean_margin |" in md
    assert not (tmp_path / "reliability.png").exists()


def test_multilabel_table(tmp_path: Path) -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]])
    m = multilabel_metrics(y, p, ["tox", "pii"])
    md = write_report(EvalReport(title="ml", kind="multilabel", metrics=m), tmp_path)[
        "report"
    ].read_text()
    assert "| label | n | positives | precision | recall | f1 |" in md
    assert "| tox | 4 | 2 | 1 | 1 | 1 |" in md
    assert "| **macro** |" in md and "| **micro** |" in md


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (3.0, "3"),
        (0.123456, "0.1235"),
        (float("nan"), "n/a"),
        (None, "n/a"),
        (True, "true"),
        ("a|b", "a\\|b"),
        ([1, 0.5], "1, 0.5000"),
    ],
)
def test_fmt(value: object, text: str) -> None:
    assert fmt(value) == text
