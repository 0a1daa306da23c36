"""``safeladder train CONFIG``: train a verifier from a training config (``configs/train/``).

``python train_verifier.py CONFIG`` runs this same command (``main``). The work is
``safeladder.training.runner.run_training``; this module parses the flags, turns them into
config overrides (so they are validated like the file) and prints the summary table: split
sizes, class balance, dev metrics next to the TF-IDF baseline, the threshold, the files.

Examples::

    safeladder train configs/train/embedding_head_toxigen.yaml
    safeladder train cfg.yaml --set train.seed=1 --output-dir runs/seed1 --no-progress
    safeladder train cfg.yaml --resume
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from safeladder.cli.base import Overrides, app, cli_errors

#: Metrics shown in the summary table, in this order (others stay in metrics.json).
POINTWISE_ROWS = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "ece", "brier")
PAIRWISE_ROWS = ("accuracy", "ties", "mean_margin", "median_margin")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{int(v)}" if v.is_integer() and abs(v) < 1e12 else f"{v:.4f}"
    return str(v)


def format_train_summary(summary: Any) -> str:
    """The table ``safeladder train`` prints for a ``TrainSummary``."""
    lines = [f"trained {summary.kind} verifier {summary.name!r} in {summary.seconds:.1f} s"]
    sp = summary.split
    lines.append(
        f"split: train {sp['train']} rows ({sp['train_groups']} groups), "
        f"dev {sp['dev']} rows ({sp['dev_groups']} groups)"
    )
    for side in ("train", "dev"):
        classes = summary.balance.get(side, {}).get("classes")
        if classes:
            parts = [f"{k}: {c['count']} ({c['share']:.0%})" for k, c in classes.items()]
            lines.append(f"class balance ({side}): " + ", ".join(parts))
    m, b = summary.metrics, summary.baseline_metrics or {}
    rows = PAIRWISE_ROWS if "mean_margin" in m else POINTWISE_ROWS
    shown = [k for k in rows if k in m]
    if not shown:  # multi-label: macro block
        macro = m.get("macro", {}) if isinstance(m.get("macro"), dict) else {}
        m = macro
        shown = [k for k in POINTWISE_ROWS if k in macro]
    if shown:
        w = max(len(k) for k in shown)
        lines.append(f"dev metrics   {'metric':<{w}}  {'model':>8}  {'tfidf':>8}")
        for k in shown:
            lines.append(f"              {k:<{w}}  {_fmt(m.get(k)):>8}  {_fmt(b.get(k)):>8}")
    if summary.threshold is not None:
        t = summary.threshold
        shown_t = ", ".join(_fmt(float(x)) for x in t) if isinstance(t, list) else _fmt(float(t))
        lines.append(f"threshold on P(label 1): {shown_t}")
    check = summary.self_check
    if "skipped" in check:
        lines.append(f"self-check: skipped ({check['skipped']})")
    else:
        lines.append(
            f"self-check: {check['rows']} dev rows rebuilt from the output match "
            f"(max |diff| {check['max_abs_diff']:.2g})"
        )
    lines.append(f"output: {summary.output_dir}")
    for key, path in summary.files.items():
        lines.append(f"  {key}: {path.name}")
    for note in summary.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


@app.command()
def train(
    config: Annotated[
        str, typer.Argument(metavar="CONFIG", help="Training config YAML (configs/train/*.yaml).")
    ],
    overrides: Overrides = None,
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", metavar="DIR", help="Write the trained verifier here."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run from its last checkpoint."),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous run in the output directory.")
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bars.")
    ] = False,
) -> None:
    """Train a verifier; write the model, safeladder_verifier.yaml, metrics.json and a report."""
    from safeladder.training.config import load_train_config
    from safeladder.training.runner import run_training

    extra = list(overrides or ())
    if output_dir is not None:
        extra.append(f"output_dir={json.dumps(output_dir)}")  # a JSON string is YAML: stays a str
    if resume:
        extra.append("resume=true")
    with cli_errors("; rerun with --resume to continue from the last checkpoint"):
        cfg = load_train_config(config, extra)
        summary = run_training(cfg, progress=not no_progress, overwrite=overwrite)
    typer.echo(format_train_summary(summary))


def main(argv: list[str] | None = None) -> Any:
    """``python train_verifier.py CONFIG [flags]``: the same command as ``safeladder train``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    return app(args=["train", *args], prog_name="train_verifier.py")


__all__ = ["format_train_summary", "main", "train"]
