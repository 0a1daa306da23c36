"""``safeladder eval`` results: scores → P(label 1) and thresholds, the pointwise / pairwise
``EvalReport``, the output directory, and the terminal summary (``format_summary``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.numeric import nan_to_none as num
from safeladder.training.eval_rows import EvalJob, PointItem
from safeladder.training.eval_scoring import Scored
from safeladder.training.metrics import (
    pairwise_metrics,
    pairwise_reliability,
    per_category,
    pointwise_metrics,
    reliability_bins,
)
from safeladder.training.report import EvalReport, ReliabilityBin, write_report


@dataclass
class EvalOutcome:
    """What ``run_eval`` produced: the report, the files written, the bad rows."""

    report: EvalReport
    files: dict[str, Path]
    bad_rows: list[dict[str, Any]]


# --------------------------------------------------------------------------- P(label 1)


def to_p1(scored: Scored) -> np.ndarray:
    """P(label 1) (or a score increasing in it) from the verifier's scores."""
    if scored.is_p1 or scored.score_means == 1:
        return scored.scores
    return 1.0 - scored.scores if scored.probability else -scored.scores


def score_threshold(scored: Scored, job: EvalJob) -> float:
    """--threshold, else the one chosen when the verifier was trained, else 0.5 (or 0)."""
    if job.threshold is not None:
        return job.threshold
    if scored.calibrated_threshold is not None:
        return scored.calibrated_threshold
    return 0.5 if scored.probability else 0.0


def p1_threshold(scored: Scored, job: EvalJob) -> float:
    if scored.is_p1:
        return 0.5
    t = score_threshold(scored, job)
    if scored.score_means == 1:
        return t
    # score >= t predicts label 0, so label 1 needs score < t: P(label 1) = 1 − score (or −score)
    # strictly above 1 − t (−t). The next float up turns ">=" into ">" exactly.
    return float(np.nextafter(1.0 - t if scored.probability else -t, np.inf))


def _bins(labels: np.ndarray, probs: np.ndarray) -> list[ReliabilityBin]:
    return [ReliabilityBin(**b) for b in reliability_bins(labels, probs)]


def pointwise_report(
    job: EvalJob,
    main: Scored,
    base: Scored | None,
    keep: np.ndarray,
    kept: list[PointItem],
    cats: list[str | None],
    data: dict[str, Any],
    notes: list[str],
) -> EvalReport:
    y = np.array([it.label for it in kept], dtype=np.int64)
    p = to_p1(main)[keep]
    t = p1_threshold(main, job)
    data["class balance"] = {"label 0": int((y == 0).sum()), "label 1": int((y == 1).sum())}
    data["prompt-only rows"] = sum(1 for it in kept if it.sample.completion == "")
    data["score means label"] = main.score_means

    def metrics_of(sc: Scored, thr: float) -> Any:
        def fn(yy: np.ndarray, pp: np.ndarray) -> dict[str, float]:
            return pointwise_metrics(yy, pp, thr, probabilities=sc.probability)

        return fn

    fn = metrics_of(main, t)
    report = EvalReport(
        title=f"{main.name} on {job.data.name}",
        kind="pointwise",
        verifier_name=main.name,
        metrics=fn(y, p),
        per_category=per_category(cats, fn, y, p),
        data=data,
    )
    if main.probability:
        report.reliability = _bins(y, p)
        report.reliability_note = (
            f"P(label 1) = {'score' if main.score_means == 1 else '1 - score'} of the verifier."
        )
    else:
        notes.append(
            f"{main.name}'s scores are not probabilities: ECE, Brier and the reliability "
            "diagram are left out; AUROC / AUPRC rank the scores."
        )
    if base is not None:
        bp = to_p1(base)[keep]
        bfn = metrics_of(base, p1_threshold(base, job))
        report.baseline_name = base.name
        report.baseline_metrics = bfn(y, bp)
        report.baseline_per_category = per_category(cats, bfn, y, bp)
        if base.probability:
            report.baseline_reliability = _bins(y, bp)
    auc = report.metrics["auroc"]
    means = main.score_means
    if not math.isnan(auc) and auc < 0.4:
        notes.append(
            f"AUROC {auc:.3f} is well below 0.5: the scores rank label 1 low. If a high score "
            f"means label {1 - means} for this data, rerun with --score-means {1 - means}."
        )
    if job.score_means is not None:
        direction = "--score-means"
        if main.saved_score_means is not None and main.saved_score_means != job.score_means:
            direction += (
                f", against the direction saved at training time (label "
                f"{main.saved_score_means}, {main.decision_source})"
            )
    elif main.saved_score_means is not None:
        direction = f"saved at training time, {main.decision_source}"
    else:
        direction = "default"
    notes.append(f"Direction ({direction}): a high verifier score predicts label {means}.")
    score_t = score_threshold(main, job)
    source = (
        "--threshold"
        if job.threshold is not None
        else f"chosen at training time, {main.decision_source}"
        if main.calibrated_threshold is not None
        else "default"
    )
    notes.append(
        f"Threshold ({source}): a verifier score >= {score_t:g} predicts label "
        f"{means} (on P(label 1): {t:g})."
    )
    report.notes = notes  # the model validated a copy of the list at construction
    return report


def pairwise_report(
    job: EvalJob,
    main: Scored,
    base: Scored | None,
    keep: np.ndarray,
    cats: list[str | None],
    data: dict[str, Any],
    notes: list[str],
) -> EvalReport:
    c, r = main.scores[keep, 0], main.scores[keep, 1]
    report = EvalReport(
        title=f"{main.name} on {job.data.name}",
        kind="pairwise",
        verifier_name=main.name,
        metrics=pairwise_metrics(c, r),
        per_category=per_category(cats, pairwise_metrics, c, r),
        data=data,
    )
    if not main.probability:
        yy, pp = pairwise_reliability(c, r)
        report.reliability = _bins(yy, pp)
        report.reliability_note = (
            "Bradley–Terry probabilities sigmoid(score(chosen) − score(rejected)), each pair "
            "counted both ways (label 1 = the first response is the chosen one)."
        )
    if base is not None:
        bc, br = base.scores[keep, 0], base.scores[keep, 1]
        report.baseline_name = base.name
        report.baseline_metrics = pairwise_metrics(bc, br)
        report.baseline_per_category = per_category(cats, pairwise_metrics, bc, br)
        if report.reliability and not base.probability:
            yy, pp = pairwise_reliability(bc, br)
            report.baseline_reliability = _bins(yy, pp)
    if report.metrics["ties"] > 0:
        notes.append(f"{int(report.metrics['ties'])} pair(s) scored equal (counted one half each).")
    report.notes = notes  # the model validated a copy of the list at construction
    return report


def write_outputs(
    job: EvalJob,
    report: EvalReport,
    items: list[Any],
    main: Scored,
    base: Scored | None,
    bad: list[dict[str, Any]],
    pairwise: bool,
) -> dict[str, Path]:
    from safeladder.data import JsonlWriter

    assert job.output is not None
    out = job.output
    out.mkdir(parents=True, exist_ok=True)
    files = write_report(report, out)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    files["metrics"] = metrics_path

    with JsonlWriter(out / "scores.jsonl") as w:
        for i, it in enumerate(items):
            rec: dict[str, Any] = {"line": it.line, "category": it.category}
            if pairwise:
                rec["score_chosen"] = num(main.scores[i, 0])
                rec["score_rejected"] = num(main.scores[i, 1])
            else:
                rec["label"] = it.label
                rec["score"] = num(main.scores[i])
            rec["status"] = main.status[i]
            if base is not None:
                if pairwise:
                    rec["baseline_chosen"] = num(base.scores[i, 0])
                    rec["baseline_rejected"] = num(base.scores[i, 1])
                else:
                    rec["baseline"] = num(base.scores[i])
                rec["baseline_status"] = base.status[i]
            w.write(rec)
    files["scores"] = out / "scores.jsonl"
    errors = out / "errors.jsonl"
    if bad:
        with JsonlWriter(errors) as w:
            for b in bad:
                w.write(b)
        files["errors"] = errors
    elif errors.exists():
        errors.unlink()  # a stale file from an earlier run would list rows that are fine now
    return files


def format_summary(outcome: EvalOutcome) -> str:
    """A plain-text table for the terminal: metric | verifier | baseline."""
    from safeladder.training.report import fmt

    rep = outcome.report
    m, b = rep.metrics, rep.baseline_metrics
    keys = [k for k in m if not isinstance(m[k], dict)]
    header = ["metric", rep.verifier_name] + ([rep.baseline_name or "baseline"] if b else [])
    rows = [[k, fmt(m[k])] + ([fmt(b.get(k))] if b else []) for k in keys]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    if rep.skipped:
        lines.append("left out: " + ", ".join(f"{k} {v}" for k, v in rep.skipped.items()))
    for bad in outcome.bad_rows[:5]:
        lines.append(f"bad row: line {bad['line']}: {bad['error']}")
    if len(outcome.bad_rows) > 5:
        lines.append(f"... and {len(outcome.bad_rows) - 5} more bad rows (see errors.jsonl)")
    lines += [f"note: {n}" for n in rep.notes]
    return "\n".join(lines)


__all__ = [
    "EvalOutcome",
    "format_summary",
    "p1_threshold",
    "pairwise_report",
    "pointwise_report",
    "score_threshold",
    "to_p1",
    "write_outputs",
]
