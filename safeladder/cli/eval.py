"""``safeladder eval VERIFIER --data FILE``: the evaluation report on any labelled file.

The work is ``safeladder.training.evaluate.run_eval`` (read its docstring for the conventions:
label 1 is the positive class, ``--score-means`` says which label a high score predicts, NaN
scores are left out and counted). This module parses the flags and prints the summary table.

Examples (from the repository root; ../shared/data is the shared data set)::

    safeladder eval safety --data ../shared/data/gptfuzz_labeled_responses.jsonl.gz \
        --split evaluate --baseline refusal -o out/eval
    safeladder eval refusal --data ../shared/data/gptfuzz_labeled_responses.jsonl.gz \
        --where split=evaluate --score-means 0
    safeladder eval runs/embedding_head_toxigen --data ../shared/data/toxigen_demonstrations.jsonl
    safeladder eval value --data ../shared/data/hh_rlhf_harmless_pref.jsonl --baseline tfidf-cv

``--metrics guardrank`` computes MLLMGuard's GuardRank instead (ASD and PAR per dimension and
overall; ``safeladder.training.guardrank_eval``): the rows carry their dimension, and VERIFIER,
optional there, is the judge of the rows without a score (a model directory, a trained
GuardRank classifier, or a verifier config file); ``--judge DIM=SPEC`` gives a dimension its own::

    safeladder eval --metrics guardrank --data answers.jsonl -o out/guardrank
    safeladder eval /models/judge --metrics guardrank --data answers.jsonl \
        --judge hallucination=/models/halluc-judge

``--metrics matrix`` scores VERIFIER on every safety shift column of the shared sources
(GPTFuzz, JailbreakBench by attack, AdvBench / StrongREJECT pairs, ToxiGen;
``safeladder.training.shift_sets``) and on benign answers (false-flag rate): F1 at its own
threshold beside the best F1 and AUROC, columns its training data held marked
(``safeladder.training.eval_matrix``)::

    safeladder eval safety_tfidf --metrics matrix -o out/matrix
    safeladder eval runs/my_safety --metrics matrix --shared-data /data/shared --limit-per-column 200
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from safeladder.cli.base import InputFormat, app, cli_errors
from safeladder.cli.errors import EXIT_USAGE, CliError

#: ``--shared-data``'s default: the shared data beside a checkout, from its root (the examples').
DEFAULT_SHARED = Path("../shared/data")


class Metrics(StrEnum):
    """The kind of report ``safeladder eval`` computes."""

    report = "report"
    guardrank = "guardrank"
    matrix = "matrix"


def _names(flag: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return (flag,) if flag else default


def parse_judges(items: list[str]) -> dict[str, str]:
    """``["hallucination=/models/h"]`` → ``{"hallucination": "/models/h"}`` (dimension names
    canonicalised: ``noise_injection`` = ``noise-injection``)."""
    from safeladder.training.guardrank import canonical_dimension

    out: dict[str, str] = {}
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not key.strip() or not spec.strip():
            raise CliError(
                f"--judge {item!r}: expected DIMENSION=SPEC, e.g. hallucination=/models/judge",
                EXIT_USAGE,
            )
        try:
            dim = canonical_dimension(key)
        except ValueError as exc:
            raise CliError(f"--judge {item!r}: {exc}", EXIT_USAGE) from None
        if dim in out:
            raise CliError(f"--judge: {dim} is given twice", EXIT_USAGE)
        out[dim] = spec.strip()
    return out


def parse_where(items: list[str]) -> dict[str, Any]:
    """``["split=evaluate", "meta.lang=en"]`` → ``{"split": "evaluate", "meta.lang": "en"}``.

    Values are YAML (``label=1`` is the integer 1); keys stay whole (dotted paths are looked up
    in the row, not nested here).
    """
    from safeladder.config import apply_overrides

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--where {item!r}: expected KEY=VALUE, e.g. split=evaluate", EXIT_USAGE)
        out[key.strip()] = apply_overrides({}, [f"v={raw}"])["v"]
    return out


@app.command("eval")
def eval_command(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            metavar="FILE",
            help="Labelled rows: .jsonl[.gz], .json, .csv, .parquet or a saved HF dataset dir. "
            "Pointwise: prompt, response, label (0/1); pairwise: prompt, chosen, rejected. "
            "--metrics guardrank: dimension, prompt, response, score (optional), pair_id, "
            "pair_role, reference, images, lang, id, meta (see the README). Required but "
            "with --metrics matrix (which reads --shared-data).",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        Metrics,
        typer.Option(
            "--metrics",
            help="report: accuracy / F1 / AUROC / calibration of VERIFIER against 0/1 labels "
            "(or pairwise accuracy). guardrank: MLLMGuard's ASD and PAR per dimension and "
            "overall, judging rows without a score. matrix: VERIFIER on every safety shift "
            "column of --shared-data (F1 at its threshold, best F1, AUROC) and its false-flag "
            "rate on benign answers.",
        ),
    ] = Metrics.report,
    shared_data: Annotated[
        Path,
        typer.Option(
            "--shared-data",
            metavar="DIR",
            help="--metrics matrix: the directory of the shared safety sources "
            "(gptfuzz_labeled_responses.jsonl.gz, jailbreakbench_artifacts.jsonl.gz, "
            "advbench_harmful_behaviors.jsonl, strongreject_prompts.jsonl, "
            "toxigen_demonstrations.jsonl, truthfulqa_answers.jsonl, gsm8k_train.jsonl.gz).",
        ),
    ] = DEFAULT_SHARED,
    benign_scary: Annotated[
        Path | None,
        typer.Option(
            "--benign-scary",
            metavar="FILE",
            help="--metrics matrix: the benign scary-sounding answers of the false-flag set "
            "(default: configs/train/data/safety_benign_scary.jsonl of this checkout).",
            show_default=False,
        ),
    ] = None,
    benign_heldout: Annotated[
        Path | None,
        typer.Option(
            "--benign-heldout",
            metavar="DIR",
            help="--metrics matrix: the directory of the held-out benign answer sets of the "
            "false-flag set, everyday_answers_heldout.jsonl and benign_lookalike_heldout.jsonl "
            "(default: benchmarks/data of this checkout).",
            show_default=False,
        ),
    ] = None,
    limit_per_column: Annotated[
        int | None,
        typer.Option(
            "--limit-per-column",
            min=1,
            metavar="N",
            help="--metrics matrix: score a seeded sample of N rows per column and per benign "
            "subset (default: all).",
            show_default=False,
        ),
    ] = None,
    judge: Annotated[
        list[str] | None,
        typer.Option(
            "--judge",
            metavar="DIMENSION=SPEC",
            help="--metrics guardrank: the judge of one dimension (privacy, bias, toxicity, "
            "legality, hallucination), overriding VERIFIER for it; repeatable.",
        ),
    ] = None,
    rejudge: Annotated[
        bool,
        typer.Option(
            "--rejudge",
            help="--metrics guardrank: judge the rows that carry a score too; the metrics come "
            "from the judge and its agreement with those scores (accuracy, MAE) is reported.",
        ),
    ] = False,
    verifier: Annotated[
        str | None,
        typer.Argument(
            metavar="VERIFIER",
            help="A verifier preset or type name, a verifier config file (YAML / JSON), or a "
            "trained output directory holding safeladder_verifier.yaml. With --metrics "
            "guardrank: optional, the judge of the rows without a score (a model directory, a "
            "trained GuardRank classifier, or a verifier config file).",
            show_default=False,
        ),
    ] = None,
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
            "errors.jsonl (bad rows) here; --metrics guardrank: guardrank.json, guardrank.md "
            "and guardrank_rows.jsonl.",
        ),
    ] = None,
    score_means: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=1,
            help="The label a HIGH score predicts. 1: data whose label 1 is the good outcome "
            "(knowledge: 1 = correct). 0: the safety data (label 1 = unsafe) scored by a "
            "verifier of P(safe) or by refusal. Default: the direction a trained verifier "
            "recorded at training time, else 1.",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="A score at or above it predicts label --score-means (default: the threshold "
            "chosen at training time, else 0.5 for scores in [0, 1], 0 for unbounded ones).",
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
            help=(
                "Field holding the response (default: response, else completion, else answer); "
                "'' for rows with none (a judge of the request such as request_harm_tfidf: each "
                "row is scored with an empty response)."
            ),
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
        str | None,
        typer.Option(
            metavar="NAME",
            help="Read one split: of an HF dataset dir holding several, else the rows whose "
            "'split' field is NAME (JSONL / JSON / CSV / Parquet).",
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="KEY=VALUE",
            help="Keep only rows whose field KEY (a dotted path) equals VALUE (YAML), e.g. "
            "--where category=women; repeatable (all must match).",
        ),
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
    diagram (pointwise) or pairwise accuracy (preferences), per category, against a baseline.
    With --metrics guardrank: MLLMGuard's ASD and PAR per dimension and overall. With --metrics
    matrix: the verifier on every safety shift column and its false-flag rate."""
    matrix_given = {
        "--shared-data": shared_data != DEFAULT_SHARED,
        "--benign-scary": benign_scary is not None,
        "--benign-heldout": benign_heldout is not None,
        "--limit-per-column": limit_per_column is not None,
    }
    if metrics is Metrics.matrix:
        given = {
            "--data": data is not None,
            "--baseline": baseline is not None,
            "--judge": bool(judge),
            "--rejudge": rejudge,
            "--pairwise/--pointwise": pairwise is not None,
            "--split": split is not None,
            "--where": bool(where),
            "--limit": limit is not None,
            "--format": format is not None,
            "--prompt-field": prompt_field is not None,
            "--response-field": response_field is not None,
            "--label-field": label_field != "label",
            "--chosen-field": chosen_field != "chosen",
            "--rejected-field": rejected_field != "rejected",
            "--category-field": category_field != "category",
            "--seed": seed != 0,
        }
        _matrix(
            verifier,
            shared_data,
            benign_scary,
            benign_heldout,
            limit_per_column,
            output,
            score_means,
            threshold,
            batch_size,
            not no_progress,
            given,
        )
        return
    with cli_errors():
        unused = [flag for flag, on in matrix_given.items() if on]
        if unused:
            raise CliError(f"{', '.join(unused)}: only with --metrics matrix", EXIT_USAGE)
        if data is None:
            raise CliError(
                f"missing option --data (required with --metrics {metrics.value})", EXIT_USAGE
            )
    assert data is not None  # narrowed above (mypy does not see through the context manager)
    if metrics is Metrics.guardrank:
        given = {
            "--baseline": baseline is not None,
            "--score-means": score_means is not None,
            "--threshold": threshold is not None,
            "--pairwise/--pointwise": pairwise is not None,
            "--split": split is not None,
            "--where": bool(where),
            "--prompt-field": prompt_field is not None,
            "--response-field": response_field is not None,
            "--label-field": label_field != "label",
            "--chosen-field": chosen_field != "chosen",
            "--rejected-field": rejected_field != "rejected",
            "--category-field": category_field != "category",
            "--seed": seed != 0,
        }
        _guardrank(verifier, data, output, judge, rejudge, format, limit, batch_size, given)
        return
    if judge or rejudge:
        with cli_errors():
            flag = "--judge" if judge else "--rejudge"
            raise CliError(f"{flag}: only with --metrics guardrank", EXIT_USAGE)
    if verifier is None:
        with cli_errors():
            raise CliError(
                "missing argument VERIFIER (required unless --metrics guardrank)", EXIT_USAGE
            )
    from safeladder.training.evaluate import EvalFields, EvalJob, format_summary, run_eval

    with cli_errors():
        where_filter = parse_where(list(where or ()))
    fields = EvalFields(
        prompt=_names(prompt_field, EvalFields.prompt),
        response=() if response_field == "" else _names(response_field, EvalFields.response),
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
        where=where_filter,
        pairwise=pairwise,
        score_means=score_means,
        threshold=threshold,
        limit=limit,
        batch_size=batch_size,
        progress=not no_progress,
        seed=seed,
    )
    with cli_errors():
        outcome = run_eval(job)
    typer.echo(format_summary(outcome))
    for kind, path in outcome.files.items():
        typer.echo(f"{kind}: {path}")


def _refuse_unused(given: dict[str, bool], mode: str) -> None:
    """A usage error naming the flags given that ``--metrics MODE`` does not read."""
    unused = [flag for flag, on in given.items() if on]
    if unused:
        raise CliError(f"{', '.join(unused)}: not used by --metrics {mode}", EXIT_USAGE)


def _matrix(
    verifier: str | None,
    shared: Path,
    scary: Path | None,
    heldout: Path | None,
    limit_per_column: int | None,
    output: Path | None,
    score_means: int | None,
    threshold: float | None,
    batch_size: int,
    progress: bool,
    given: dict[str, bool],
) -> None:
    """``eval --metrics matrix``: parse, run ``run_matrix``, print the table."""
    from safeladder.training.eval_matrix import MatrixJob, format_matrix, run_matrix
    from safeladder.training.shift_sets import DEFAULT_SCARY, HELDOUT_DIR

    with cli_errors():
        _refuse_unused(given, "matrix")
        if verifier is None:
            raise CliError("missing argument VERIFIER (required with --metrics matrix)", EXIT_USAGE)
        job = MatrixJob(
            verifier=verifier,
            shared=shared,
            scary=scary if scary is not None else DEFAULT_SCARY,
            heldout=heldout if heldout is not None else HELDOUT_DIR,
            output=output,
            score_means=score_means,
            threshold=threshold,
            limit_per_column=limit_per_column,
            batch_size=batch_size,
            progress=progress,
        )
        outcome = run_matrix(job)
    typer.echo(format_matrix(outcome.record))
    for kind, path in outcome.files.items():
        typer.echo(f"{kind}: {path}")


def _guardrank(
    verifier: str | None,
    data: Path,
    output: Path | None,
    judge: list[str] | None,
    rejudge: bool,
    format: InputFormat | None,
    limit: int | None,
    batch_size: int,
    given: dict[str, bool],
) -> None:
    """``eval --metrics guardrank``: parse, run ``run_guardrank``, print the table."""
    from safeladder.training.guardrank_eval import GuardRankJob, format_guardrank, run_guardrank

    with cli_errors():
        _refuse_unused(given, "guardrank")
        job = GuardRankJob(
            data=data,
            judge=verifier,
            judges=parse_judges(list(judge or ())),
            output=output,
            format=format.value if format is not None else None,
            limit=limit,
            batch_size=batch_size,
            rejudge=rejudge,
        )
        outcome = run_guardrank(job)
    typer.echo(format_guardrank(outcome))
    for kind, path in outcome.files.items():
        typer.echo(f"{kind}: {path}")
