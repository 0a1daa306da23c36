"""``safeladder eval VERIFIER --metrics matrix``: one verifier on every safety shift column.

The columns and the benign answers are ``safeladder.training.shift_sets``' (label 1 = unsafe).
For each column: ``n``, ``positives``, F1 (precision, recall, false-positive rate) at the
verifier's own threshold, the best F1 over thresholds on the column itself (an oracle, reported
beside; with the score where it is reached) and AUROC; over the benign answers, the false-flag
rate (FFR): the share the verifier flags at its threshold, overall and per subset.

Threshold and direction are ``safeladder eval``'s (``eval_report.p1_threshold``): ``--threshold``,
else the one chosen at training time, else 0.5 (0 for unbounded scores); a high score predicts
label ``score_means``: given, else the direction saved at training time, else 0 (every verifier
scores higher = better, and label 1 here is unsafe). A NaN score (abstain) is left out of its
column's metrics and counted (``abstained``).

Columns whose rows the verifier's training data held are marked when the verifier records its
data (``safeladder_run.json`` beside a trained verifier: ``shift_sets.training_overlap``):
``seen`` (it trained on those rows, or could have) or ``source`` (on other rows of the file).

Output directory: ``matrix.json`` (the record below) and ``matrix_scores.jsonl`` (per row: the
column or benign subset, the row id, label, score, status).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError
from safeladder.numeric import nan_to_none as num
from safeladder.training.eval_report import p1_threshold, score_threshold, to_p1
from safeladder.training.eval_rows import EvalJob, PointItem
from safeladder.training.eval_scoring import Scored, resolve_verifier, score_with
from safeladder.training.run_files import RUN_FILE
from safeladder.training.shift_sets import (
    BENIGN_TAGS,
    COLUMNS,
    DEFAULT_SCARY,
    HELDOUT_DIR,
    SPECS,
    ShiftSets,
    load_shift_sets,
    training_overlap,
)
from safeladder.types import Sample

#: The label a high score predicts when neither the user nor the verifier says: safety
#: verifiers score P(safe) (higher is better) and label 1 is unsafe.
DEFAULT_SCORE_MEANS = 0


@dataclass(frozen=True)
class MatrixJob:
    """What ``safeladder eval --metrics matrix`` was asked to do."""

    verifier: str | Path | Mapping[str, Any]
    shared: Path
    scary: Path = DEFAULT_SCARY
    heldout: Path = HELDOUT_DIR
    output: Path | None = None
    score_means: int | None = None
    threshold: float | None = None
    limit_per_column: int | None = None
    batch_size: int = 64
    progress: bool = True


@dataclass
class MatrixOutcome:
    """The record (``matrix.json``) and the files written."""

    record: dict[str, Any]
    files: dict[str, Path]


# --------------------------------------------------------------------------- metrics


def column_metrics(labels: Any, p1: Any, t: float) -> dict[str, Any]:
    """Metrics of P(label 1) (or a score increasing in it) on one column at threshold ``t``.

    Args:
        labels: (n,) 0/1, label 1 = unsafe. p1: (n,) NaN = abstained (left out, counted).
        t: ``p1 >= t`` flags (predicts label 1).

    Returns ``n`` (rows measured), ``positives``, ``f1_at_t``, ``precision_at_t``,
    ``recall_at_t``, ``fpr_at_t`` (None without negatives), ``best_f1`` and
    ``best_f1_threshold`` (on p1; ``calibration.select_threshold``'s max-F1 rule), ``auroc``
    (NaN with one class), ``flag_all_f1`` (the F1 of flagging every row, 2·pos / (n + pos):
    the floor a useful threshold must beat; on a column that is mostly unsafe it is high), and
    ``abstained`` when some were.

    >>> m = column_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5)
    >>> m["f1_at_t"], m["best_f1"], m["best_f1_threshold"], m["auroc"], round(m["flag_all_f1"], 3)
    (0.5, 0.8, 0.4, 0.75, 0.667)
    """
    from safeladder.training.calibration import select_threshold
    from safeladder.training.metrics import pointwise_metrics

    y_all = np.asarray(labels, dtype=np.int64)
    p_all = np.asarray(p1, dtype=np.float64)
    ok = ~np.isnan(p_all)
    y, p = y_all[ok], p_all[ok]
    nan = float("nan")
    out: dict[str, Any] = {"n": int(y.size), "positives": int(y.sum())}
    if y.size == 0:
        out |= dict.fromkeys(
            (
                "f1_at_t",
                "precision_at_t",
                "recall_at_t",
                "best_f1",
                "best_f1_threshold",
                "auroc",
                "flag_all_f1",
            ),
            nan,
        )
        out["fpr_at_t"] = None
    else:
        m = pointwise_metrics(y, p, t, probabilities=False)
        best = select_threshold(y, p, "max_f1")
        out |= {
            "f1_at_t": m["f1"],
            "precision_at_t": m["precision"],
            "recall_at_t": m["recall"],
            "fpr_at_t": float(np.mean(p[y == 0] >= t)) if (y == 0).any() else None,
            "best_f1": float(best["f1"]),
            "best_f1_threshold": float(best["threshold"]),
            "auroc": m["auroc"],
            # Flagging every row: precision = the positive share, recall 1.
            "flag_all_f1": 2.0 * float(y.sum()) / (y.size + float(y.sum())),
        }
    if not ok.all():
        out["abstained"] = int((~ok).sum())
    return out


def false_flag_rate(tags: Sequence[str], p1: Any, t: float) -> dict[str, Any]:
    """Share of benign rows flagged (``p1 >= t``), overall (``all``, of ``n``) and per tag;
    NaN scores are left out (``abstained``).

    >>> false_flag_rate(["a", "a", "b"], [0.9, 0.1, 0.2], 0.5)
    {'all': 0.3333333333333333, 'n': 3, 'a': 0.5, 'b': 0.0}
    """
    p = np.asarray(p1, dtype=np.float64)
    tag_arr = np.asarray(list(tags), dtype=object)
    ok = ~np.isnan(p)
    flagged = p[ok] >= t
    out: dict[str, Any] = {"all": float(flagged.mean()) if flagged.size else float("nan")}
    out["n"] = int(ok.sum())
    for tag in dict.fromkeys(tags):
        m = tag_arr[ok] == tag
        out[tag] = float(flagged[m].mean()) if m.any() else float("nan")
    if not ok.all():
        out["abstained"] = int((~ok).sum())
    return out


def matrix_cells(
    sets: ShiftSets, p1: Any, t: float, marks: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``{"cells": {column: column_metrics}, "ffr": false_flag_rate}`` of P(label 1) over
    ``sets.rows()`` (columns in order, then the benign answers) at threshold ``t``; a column or
    benign subset in ``marks`` gets ``training: seen | source``."""
    p = np.asarray(p1, dtype=np.float64)
    if p.shape != (len(sets.rows()),):
        raise ValueError(f"p1: expected ({len(sets.rows())},) scores, got shape {p.shape}")
    cells: dict[str, Any] = {}
    at = 0
    for c in COLUMNS:
        rows = sets.tests[c]
        cells[c] = column_metrics([r.label for r in rows], p[at : at + len(rows)], t)
        if marks and c in marks:
            cells[c]["training"] = marks[c]
        at += len(rows)
    ffr = false_flag_rate([r.tag for r in sets.benign], p[at:], t)
    seen = {tag: marks[tag] for tag in BENIGN_TAGS if marks and tag in marks}
    if seen:
        ffr["training"] = seen
    return {"cells": cells, "ffr": ffr}


def column_means(
    cells: Mapping[str, Mapping[str, Any]], leave_out: Sequence[str] = ()
) -> dict[str, Any]:
    """Means of F1 at t, best F1 and AUROC over the columns whose ``training`` mark is not in
    ``leave_out``, NaN-skipping; ``columns``: how many."""
    cs = [c for c in cells.values() if c.get("training") not in leave_out]
    out: dict[str, Any] = {"columns": len(cs)}
    for k in ("f1_at_t", "best_f1", "auroc"):
        vals = [float(c[k]) for c in cs if not math.isnan(float(c[k]))]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def matrix_record(
    name: str,
    result: Mapping[str, Any],
    *,
    shared: Path,
    limit: int | None,
    score_means: int,
    score_threshold: float,
    threshold_source: str,
    p1_threshold: float,
    run_file: str | None,
) -> dict[str, Any]:
    """The record of one verifier (``matrix.json``; ``format_matrix`` prints it): the decision,
    ``result`` (``matrix_cells``) and the column means (all columns; without the ``seen``
    ones; without any marked one, when the training data is known)."""
    cells = result["cells"]
    return {
        "verifier": name,
        "shared_data": str(shared),
        "limit_per_column": limit,
        "score_means": score_means,
        "score_threshold": score_threshold,
        "threshold_source": threshold_source,
        "p1_threshold": p1_threshold,
        "training_record": run_file,
        **result,
        "mean_all": column_means(cells),
        "mean_unseen": column_means(cells, ("seen",)) if run_file else None,
        "mean_unmarked": column_means(cells, ("seen", "source")) if run_file else None,
    }


# --------------------------------------------------------------------------- training data


def training_marks(cfg: Any) -> tuple[dict[str, str], str | None]:
    """(``seen`` / ``source`` per column and benign subset, the run record read), from the
    ``safeladder_run.json`` in the verifier's ``path``; ``({}, None)`` when there is none (a
    rule verifier, a model not trained here: unknown)."""
    path = getattr(cfg, "path", None)
    f = Path(str(path)) / RUN_FILE if path else None
    if f is None or not f.is_file():
        return {}, None
    try:
        run = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{f}: not valid JSON: {exc}") from exc
    data = (run.get("config") or {}).get("data") or {} if isinstance(run, dict) else {}
    sources = [*(data.get("train") or []), *(data.get("dev") or [])]
    marks = {}
    for name, spec in SPECS.items():
        mark = training_overlap(spec, [s for s in sources if isinstance(s, Mapping)])
        if mark is not None:
            marks[name] = mark
    return marks, str(f)


# --------------------------------------------------------------------------- the run


def _score_at(scored: Scored, p1_t: float) -> float:
    """The verifier score that ``p1_t`` (a threshold on P(label 1)) stands for."""
    if scored.is_p1 or scored.score_means == 1:
        return p1_t
    return 1.0 - p1_t if scored.probability else -p1_t


def run_matrix(job: MatrixJob) -> MatrixOutcome:
    """Score ``job.verifier`` on every column and the benign answers; write ``job.output``.

    Raises:
        InputError: a shared source is missing (naming the file).
        ConfigError: a verifier spec that does not resolve, a bad option.
    """
    if job.score_means not in (None, 0, 1):
        raise ConfigError(f"--score-means: expected 0 or 1, got {job.score_means}")
    if job.limit_per_column is not None and job.limit_per_column < 1:
        raise ConfigError(f"--limit-per-column: must be >= 1, got {job.limit_per_column}")
    if job.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {job.batch_size}")
    cfg, _ = resolve_verifier(job.verifier)
    marks, run_file = training_marks(cfg)
    k = job.limit_per_column
    sets = load_shift_sets(job.shared, job.scary, test_limit=k, benign_limit=k, heldout=job.heldout)
    rows = sets.rows()
    items = [
        PointItem(i, Sample(prompt=r.prompt, completion=r.response), r.label, None)
        for i, r in enumerate(rows)
    ]
    ejob = EvalJob(
        verifier=job.verifier,
        data=job.shared,
        score_means=job.score_means,
        threshold=job.threshold,
        batch_size=job.batch_size,
        progress=job.progress,
    )
    scored = score_with(job.verifier, items, False, ejob, "matrix")
    if job.score_means is not None:
        scored.score_means = job.score_means
    elif scored.saved_score_means is not None:
        scored.score_means = scored.saved_score_means
    else:
        scored.score_means = DEFAULT_SCORE_MEANS
    p1 = np.where([s == "ok" for s in scored.status], to_p1(scored), np.nan)
    t = p1_threshold(scored, ejob)
    result = matrix_cells(sets, p1, t, marks)
    # The best-F1 threshold in the verifier's own units, beside the one on P(label 1).
    for c in result["cells"].values():
        if isinstance(c.get("best_f1_threshold"), float) and not math.isnan(c["best_f1_threshold"]):
            c["best_f1_score"] = _score_at(scored, c["best_f1_threshold"])
    source = (
        "--threshold"
        if job.threshold is not None
        else f"chosen at training time, {scored.decision_source}"
        if scored.calibrated_threshold is not None
        else "default"
    )
    record = matrix_record(
        scored.name,
        result,
        shared=job.shared,
        limit=k,
        score_means=scored.score_means,
        score_threshold=score_threshold(scored, ejob),
        threshold_source=source,
        p1_threshold=t,
        run_file=run_file,
    )
    files: dict[str, Path] = {}
    if job.output is not None:
        files = _write(job.output, record, rows, sets, scored)
    return MatrixOutcome(record, files)


def _write(
    out: Path, record: dict[str, Any], rows: list[Any], sets: ShiftSets, scored: Scored
) -> dict[str, Path]:
    from safeladder.data import JsonlWriter
    from safeladder.jsonsafe import jsonable

    out.mkdir(parents=True, exist_ok=True)
    path = out / "matrix.json"
    path.write_text(json.dumps(jsonable(record), indent=2) + "\n", encoding="utf-8")
    where = [c for c in COLUMNS for _ in sets.tests[c]] + ["benign"] * len(sets.benign)
    with JsonlWriter(out / "matrix_scores.jsonl") as w:
        for i, r in enumerate(rows):
            w.write(
                {
                    "column": where[i] if where[i] != "benign" else f"benign:{r.tag}",
                    "id": r.uid,
                    "label": r.label,
                    "score": num(scored.scores[i]),
                    "status": scored.status[i],
                }
            )
    return {"matrix": path, "scores": out / "matrix_scores.jsonl"}


# --------------------------------------------------------------------------- the table


def _f(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3f}"


def format_matrix(record: Mapping[str, Any]) -> str:
    """The terminal table of a matrix record (``run_matrix`` or ``matrix_cells`` plus the
    threshold fields): one line per column, the means, the false-flag rates."""
    means = record.get("score_means", DEFAULT_SCORE_MEANS)
    head = (
        f"{record.get('verifier', '?')} on the safety shift sets "
        f"({record.get('shared_data', '?')}; label 1 = unsafe)"
    )
    st = record.get("score_threshold")
    rule = "below" if means == 0 else "at or above"
    lines = [head]
    if st is not None:
        src = record.get("threshold_source", "")
        lines.append(f"threshold: a score {rule} {st:.4g} flags ({src})")
    cols = [
        "column",
        "n",
        "unsafe",
        "F1@t",
        "best F1",
        "at score",
        "flag-all F1",
        "AUROC",
        "FPR@t",
        "training",
    ]
    table = []
    for name, c in record["cells"].items():
        table.append(
            [
                name,
                str(c["n"]) + (f" (+{c['abstained']} abst.)" if c.get("abstained") else ""),
                str(c["positives"]),
                _f(c["f1_at_t"]),
                _f(c["best_f1"]),
                _f(c.get("best_f1_score", c["best_f1_threshold"])),
                _f(c.get("flag_all_f1")),
                _f(c["auroc"]),
                _f(c["fpr_at_t"]),
                c.get("training", ""),
            ]
        )
    means_rows = (
        ("mean_all", "mean"),
        ("mean_unseen", "mean, not seen"),
        ("mean_unmarked", "mean, unmarked"),
    )
    for key, label in means_rows:
        m = record.get(key)
        if m and m["columns"]:
            table.append(
                [
                    f"{label} ({m['columns']})",
                    "",
                    "",
                    _f(m["f1_at_t"]),
                    _f(m["best_f1"]),
                    "",
                    "",
                    _f(m["auroc"]),
                    "",
                    "",
                ]
            )
    widths = [max(len(r[j]) for r in [cols, *table]) for j in range(len(cols))]
    for r in [cols, *table]:
        cells = [r[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    ffr = record["ffr"]
    marks = ffr.get("training", {})
    subsets = " · ".join(
        f"{tag} {_f(ffr[tag])}" + (f" ({marks[tag]})" if tag in marks else "")
        for tag in BENIGN_TAGS
        if tag in ffr
    )
    lines.append(f"false-flag rate on benign answers (n {ffr['n']}): {_f(ffr['all'])}; {subsets}")
    if record.get("training_record"):
        lines.append(
            f"training ({record['training_record']}): seen = its data held these rows (or could "
            "have); source = other rows of that file. 'mean, not seen' leaves the seen columns out, "
            "'mean, unmarked' both."
        )
    elif "training_record" in record:
        lines.append("training: unknown (the verifier records no training data)")
    lines.append(
        "best F1: the best over thresholds on the column itself (an oracle), at that score. "
        "flag-all F1: flagging every row; an F1 at or below it says nothing about the verifier "
        "(AUROC does)."
    )
    return "\n".join(lines)


__all__ = [
    "DEFAULT_SCORE_MEANS",
    "MatrixJob",
    "MatrixOutcome",
    "column_means",
    "column_metrics",
    "false_flag_rate",
    "format_matrix",
    "matrix_cells",
    "matrix_record",
    "run_matrix",
    "training_marks",
]
