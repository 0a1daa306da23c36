"""``safeladder eval VERIFIER --data FILE``: the evaluation report on any labelled file.

The work is ``safeladder.training.evaluate.run_eval`` (read its docstring for the conventions:
label 1 is the positive class, ``--score-means`` says which label a high score predicts, NaN
scores are left out and counted). This module parses the flags and prints the summary table.

Examples::

    safeladder eval refusal --data gptfuzz_labeled_responses.jsonl.gz --score-means 0
    safeladder eval runs/safety-clf --data dev.jsonl --score-means 0 --baseline tfidf-cv -o out/
    safeladder eval reward.yaml --data hh_rlhf_harmless_pref.jsonl --baseline length
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safeladder.cli.app import InputFormat, _cli_errors, app


def _names(flag: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return (flag,) if flag else default


@app.command("eval")
def eval_command(
    verifier: Annotated[
        str,
        typer.Argument(
            metavar="VERIFIER",
            help="A verifier preset or type name, a verifier config file (YAML / JSON), or a "
            "trained output directory holding safeladder_verifier.yaml.",
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            metavar="FILE",
            help="Labelled rows: .jsonl[.gz], .json, .csv, .parquet or a saved HF dataset dir. "
            "Pointwise: prompt, response, label (0/1); pairwise: prompt, chosen, rejected.",
        ),
    ],
    baseline: Annotated[
        str | None,
        typer.Option(
            metavar="VERIFIER",
            help="A second verifier scored on the same rows for a comparison column, or "
            "'tfidf-cv': TF-IDF + logistic regression cross-fitted on FILE (5 folds by prompt).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Write report.md, reliability.png, metrics.json, scores.jsonl and "
            "errors.jsonl (bad rows) here.",
        ),
    ] = None,
    score_means: Annotated[
        int,
        typer.Option(
            min=0,
            max=1,
            help="The label a HIGH score predicts. 1 (default): data whose label 1 is the good "
            "outcome (knowledge: 1 = correct). 0: the safety data (label 1 = unsafe) scored by "
            "a verifier of P(safe) or by refusal.",
        ),
    ] = 1,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="A score at or above it predicts label --score-means (default 0.5 for scores "
            "in [0, 1], 0 for unbounded ones).",
        ),
    ] = None,
    pairwise: Annotated[
        bool | None,
        typer.Option(
            "--pairwise/--pointwise",
            help="Force the kind of file (default: pairwise when the first row has the chosen "
            "and rejected fields).",
            show_default=False,
        ),
    ] = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD", help="Field holding the prompt (default: prompt, else question)."
        ),
    ] = None,
    response_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Field holding the response (default: response, else completion, else answer).",
        ),
    ] = None,
    label_field: Annotated[
        str, typer.Option(metavar="FIELD", help="Field holding the 0/1 label.")
    ] = "label",
    chosen_field: Annotated[
        str, typer.Option(metavar="FIELD", help="Pairwise: field of the preferred response.")
    ] = "chosen",
    rejected_field: Annotated[
        str, typer.Option(metavar="FIELD", help="Pairwise: field of the other response.")
    ] = "rejected",
    category_field: Annotated[
        str,
        typer.Option(metavar="FIELD", help="Field for the per-category breakdown ('' for none)."),
    ] = "category",
    format: Annotated[
        InputFormat | None,
        typer.Option("--format", help="Input format (default: from the file name)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="HF dataset dir holding several splits: the split to read.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Read at most N rows (good and bad).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per verifier call.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the tfidf-cv folds.")] = 0,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
) -> None:
    """Evaluate a verifier on a labelled file: accuracy, F1, AUROC, AUPRC, ECE, reliability
    diagram (pointwise) or pairwise accuracy (preferences), per category, against a baseline."""
    from safeladder.training.evaluate import EvalFields, EvalJob, format_summary, run_eval

    fields = EvalFields(
        prompt=_names(prompt_field, EvalFields.prompt),
        response=_names(response_field, EvalFields.response),
        label=label_field,
        chosen=chosen_field,
        rejected=rejected_field,
        category=category_field or None,
    )
    job = EvalJob(
        verifier=verifier,
        data=data,
        baseline=baseline,
        output=output,
        fields=fields,
        format=format.value if format is not None else None,
        split=split,
        pairwise=pairwise,
        score_means=score_means,
        threshold=threshold,
        limit=limit,
        batch_size=batch_size,
        progress=not no_progress,
        seed=seed,
    )
    with _cli_errors():
        outcome = run_eval(job)
    typer.echo(format_summary(outcome))
    for kind, path in outcome.files.items():
        typer.echo(f"{kind}: {path}")
