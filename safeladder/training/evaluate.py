"""The engine of ``safeladder eval``: score a labelled file with a verifier, write the report.

Inputs (read with ``safeladder.data.read_rows``: JSONL[.gz], JSON, CSV, Parquet, HF dirs):

- **pointwise** rows: a prompt (``prompt``, else ``question``), a response (``response``, else
  ``completion``, else ``answer``; null = a prompt-only row, scored with an empty completion)
  and a 0/1 ``label``. ``score_means`` says which label a HIGH score predicts: 1 for data
  whose label 1 is the good outcome (knowledge rows: 1 = correct); 0 for the safety data of
  ../shared/data, whose label 1 = unsafe while a safety verifier scores P(safe). When it is
  not given, a trained verifier's own direction is used (``score_predicts_positive`` in its
  calibration record, see ``saved_decision``), else 1. Metrics are always about label 1:
  P(label 1) = score (or 1 − score when ``score_means`` is 0; −score for scores that are not
  probabilities).
- **pairwise** rows: ``prompt``, ``chosen``, ``rejected``; detected from the first good row
  having both ``chosen`` and ``rejected`` (or forced with ``pairwise``). Both responses are
  scored; accuracy = share of pairs with score(chosen) > score(rejected).

Row selection: ``split`` reads one split of an HF ``DatasetDict`` directory, and of any other
file keeps the rows whose ``split`` field equals it; ``where`` keeps rows whose (dotted) fields
equal the given values (CSV cells are strings, so ``"1"`` matches 1). ``limit`` counts the rows
that pass these filters.

Rows that do not decode or do not fit are bad rows: counted, listed with their line numbers
(``errors.jsonl``), left out. A score of NaN (abstain / timeout / error status) is never read
as a number: the row is left out of the metrics and counted by status in ``skipped``; when a
baseline is given, a row either side abstained on is left out of both columns, so both are
measured on the same rows.

The threshold (``--threshold``) is on the verifier's own score: a score at or above it
predicts label ``score_means``. Default: the threshold chosen at training time (the
calibration record of a trained directory), else 0.5 for [0, 1] scores, 0 for unbounded ones.

Baselines: any verifier spec, or ``tfidf-cv``: TF-IDF + logistic regression cross-fitted on
the file itself (5 folds grouped by prompt, so no prompt is scored by a model that saw it) —
a quick "how far do bag-of-words features get on this data".

Output directory: ``report.md``, ``reliability.png`` (pointwise with [0, 1] scores; pairwise
with unbounded rewards, as Bradley–Terry probabilities), ``metrics.json`` (the ``EvalReport``),
``scores.jsonl`` (line, label / pair, scores, statuses) and ``errors.jsonl`` (bad rows).

The work is split by job: ``eval_rows`` (the job, reading rows into items), ``eval_scoring``
(verifier specs, batched scoring, the saved decision, the ``tfidf-cv`` column) and
``eval_report`` (P(label 1), thresholds, the report, the files, ``format_summary``); this
module runs them in order (``run_eval``) and re-exports their public names.

``--metrics matrix`` is ``eval_matrix.run_matrix``: the verifier on every safety shift column of
``shift_sets`` (F1 at its threshold, best F1, AUROC, the false-flag rate on benign answers).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError, InputError
from safeladder.training.baseline import CROSS_FIT as TFIDF_CV
from safeladder.training.baseline import CV_FOLDS
from safeladder.training.eval_report import (
    EvalOutcome,
    format_summary,
    pairwise_report,
    pointwise_report,
    write_outputs,
)
from safeladder.training.eval_rows import (
    SPLIT_FIELD,
    EvalFields,
    EvalJob,
    PairItem,
    PointItem,
    parse_label,
    read_items,
    row_filter,
)
from safeladder.training.eval_scoring import (
    TRAIN_METRICS_FILE,
    VERIFIER_FILE,
    Scored,
    resolve_verifier,
    saved_decision,
    score_samples,
    score_with,
    tfidf_cv,
)


def run_eval(job: EvalJob) -> EvalOutcome:
    """Run ``safeladder eval``; write the output directory when ``job.output`` is set.

    Raises:
        InputError: no usable rows, or labels of one class for ``tfidf-cv``.
        ConfigError: a verifier spec that does not resolve, a bad option.
    """
    if job.score_means not in (None, 0, 1):
        raise ConfigError(f"--score-means: expected 0 or 1, got {job.score_means}")
    if job.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {job.batch_size}")
    pairwise, items, bad = read_items(job)
    if not items:
        first = f"; first bad row: line {bad[0]['line']}: {bad[0]['error']}" if bad else ""
        raise InputError(f"{job.data}: no usable rows ({len(bad)} bad){first}")
    main = score_with(job.verifier, items, pairwise, job, "verifier")
    main.score_means = _pick_score_means(job.score_means, main.saved_score_means, 1)
    base: Scored | None = None
    if job.baseline is not None:
        if isinstance(job.baseline, str) and job.baseline == TFIDF_CV:
            base = tfidf_cv(items, pairwise, job.seed)
        else:
            base = score_with(job.baseline, items, pairwise, job, "baseline")
        # Every verifier scores "higher is better", so without a direction of its own the
        # baseline's high score predicts the same label as the verifier's.
        base.score_means = _pick_score_means(
            job.score_means, base.saved_score_means, main.score_means
        )
    skipped: Counter[str] = Counter()
    if bad:
        skipped["bad rows"] = len(bad)
    keep = np.ones(len(items), dtype=bool)
    for who, sc in (("verifier", main), ("baseline", base)):
        if sc is None:
            continue
        for i, st in enumerate(sc.status):
            if st != "ok":
                if keep[i]:
                    skipped[f"{who}: {st}"] += 1
                keep[i] = False
    kept = [it for it, k in zip(items, keep, strict=True) if k]
    cats = [it.category for it in kept]
    notes: list[str] = []
    data: dict[str, Any] = {
        "file": str(job.data),
        "rows read": len(items) + len(bad),
        "usable rows": len(items),
        "rows in the metrics": len(kept),
    }
    if not kept:
        raise InputError(
            f"{job.data}: every usable row was left out ({dict(skipped)}); nothing to measure"
        )
    if pairwise:
        report = pairwise_report(job, main, base, keep, cats, data, notes)
    else:
        report = pointwise_report(job, main, base, keep, kept, cats, data, notes)
    report.skipped = dict(skipped)
    files: dict[str, Path] = {}
    if job.output is not None:
        files = write_outputs(job, report, items, main, base, bad, pairwise)
    return EvalOutcome(report=report, files=files, bad_rows=bad)


def _pick_score_means(given: int | None, saved: int | None, fallback: int) -> int:
    """``--score-means`` when given, else the direction saved at training time, else fallback."""
    if given is not None:
        return given
    return saved if saved is not None else fallback


__all__ = [
    "CV_FOLDS",
    "SPLIT_FIELD",
    "TFIDF_CV",
    "TRAIN_METRICS_FILE",
    "VERIFIER_FILE",
    "EvalFields",
    "EvalJob",
    "EvalOutcome",
    "PairItem",
    "PointItem",
    "format_summary",
    "parse_label",
    "read_items",
    "resolve_verifier",
    "row_filter",
    "run_eval",
    "saved_decision",
    "score_samples",
]
