"""``safeladder score CONFIG --input IN --output OUT``: score every row of a file with a reward.

The work is ``safeladder.scoring.run_score`` (read ``safeladder.scoring.engine`` for the files,
resuming and the engines); this module parses the flags into a ``ScoreJob`` and prints the
summary table. ``ScoreJob``, ``run_score``, ``Progress``, ``SidePaths`` and
``input_fingerprint`` are re-exported from ``safeladder.scoring`` for older imports.

Examples::

    safeladder score rewards.yaml --input rollouts.jsonl --output scored.jsonl
    safeladder score --input rollouts.parquet --output scored.jsonl --resume
    safeladder score rewards.yaml -i big.jsonl -o out.jsonl --engine ray --gpus-per-worker 1
"""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from safeladder.cli.base import InputFormat, Overrides, RewardConfig, app, cli_errors
from safeladder.cli.errors import EXIT_FAILURE
from safeladder.scoring import Progress, ScoreJob, SidePaths, input_fingerprint, run_score


class Engine(StrEnum):
    local = "local"
    ray = "ray"


@app.command()
def score(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Output JSONL; OUT.errors.jsonl, OUT.summary.json and OUT.progress.json "
            "are written next to it.",
        ),
    ],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            metavar="IN",
            help="Input rows: .jsonl[.gz], .json, .csv, .parquet or a saved HF dataset dir "
            "(default: the demo rows shipped in the package).",
        ),
    ] = None,
    config: RewardConfig = None,
    overrides: Overrides = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(metavar="FIELD", help="Input field holding the prompt (default: prompt)."),
    ] = None,
    completion_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Input field holding the completion (default: completion, else response).",
        ),
    ] = None,
    reference_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Input field holding the reference (default: reference, else answer).",
        ),
    ] = None,
    images_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Input field holding the row's images: a path, a data:image URL or a list of "
            "them; relative paths resolve against the input file's folder (default: images, "
            "else image; the output keeps the field as read, never the pixels).",
        ),
    ] = None,
    allow_missing_prompt: Annotated[
        bool,
        typer.Option(
            "--allow-missing-prompt",
            help="Score rows without a prompt (or with a null one) with an empty prompt "
            "instead of reporting them as bad rows.",
        ),
    ] = False,
    format: Annotated[
        InputFormat | None,
        typer.Option("--format", help="Input format (default: from the file name)."),
    ] = None,
    json_columns: Annotated[
        list[str] | None,
        typer.Option(
            "--json-column",
            metavar="COLUMN",
            help="CSV: a column whose cells hold JSON (e.g. chat prompts); repeatable.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="HF dataset dir holding several splits: the split to score."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Input rows per Reward.score call.")] = 256,
    fail_on_error: Annotated[
        bool,
        typer.Option(
            "--fail-on-error",
            help="Stop at the first malformed row (exit 1) instead of logging it.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run of the same command from its checkpoint."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT (and its side files).")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Read at most N input rows (good and bad)."),
    ] = None,
    checkpoint_every: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="Time between checkpoints for --resume (0: after every batch); "
            "a kill loses at most this much work.",
        ),
    ] = 1.0,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
    # --- scaling out (safeladder.scoring.ray_engine) ---
    engine: Annotated[
        Engine,
        typer.Option(
            help="'local' scores in this process; 'ray' spreads the chunks over a Ray actor "
            "pool ($RAY_ADDRESS, else a local Ray), with the same output files "
            "(needs pip install 'safeladder[ray]').",
        ),
    ] = Engine.local,
    num_workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="--engine ray: scoring actors, each building the reward once (default: one "
            "per --gpus-per-worker GPUs of the cluster, else one per CPU).",
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="G",
            help="--engine ray: GPUs each actor reserves (fractions share a GPU, e.g. 0.5).",
        ),
    ] = 0.0,
) -> None:
    """Score every row of a file with a reward; write one JSON line per row and a summary."""
    from safeladder.data import FieldMap
    from safeladder.scoring import ScoreJob, format_summary, run_score

    if input is None:
        input = Path(str(resources.files("safeladder") / "defaults" / "demo.jsonl"))
    job = ScoreJob(
        input=input,
        output=output,
        config=config,
        overrides=tuple(overrides or ()),
        fields=FieldMap.from_flags(
            prompt_field,
            completion_field,
            reference_field,
            allow_missing_prompt,
            images=images_field,
        ),
        format=format.value if format is not None else None,
        json_columns=tuple(json_columns or ()),
        split=split,
        batch_size=batch_size,
        fail_on_error=fail_on_error,
        resume=resume,
        overwrite=overwrite,
        limit=limit,
        progress=not no_progress,
        checkpoint_every_s=checkpoint_every,
        engine=engine.value,
        num_workers=num_workers,
        gpus_per_worker=gpus_per_worker,
    )
    with cli_errors("; rerun the same command with --resume to continue"):
        summary = run_score(job)
    typer.echo(format_summary(summary))
    if summary["rows_scored"] == 0:
        # Nothing scored (an empty input, or every row bad) is a failed run, not a table of dashes.
        first = summary.get("first_errors") or []
        shown = "".join(f"\n  line {e['line']}: {e['error']}" for e in first)
        what = "the input has no rows" if summary["bad_rows"] == 0 else "every row was bad"
        typer.echo(f"error: no row was scored: {what}{shown}", err=True)
        raise typer.Exit(EXIT_FAILURE)


__all__ = ["Progress", "ScoreJob", "SidePaths", "input_fingerprint", "run_score", "score"]
