"""The evaluation report: one pydantic model, rendered as ``report.md`` + ``reliability.png``.

The training runner and ``safeladder eval`` both fill an ``EvalReport`` and call
``write_report(report, out_dir)``; ``report.model_dump_json()`` is the machine-readable form
(NaN is written as null). Tables put the verifier and the baseline side by side, so a reader
sees at once whether the trained model beats TF-IDF + logistic regression on the same split.

Example::

    rep = EvalReport(title="safety classifier", kind="pointwise", metrics=pointwise_metrics(y, p),
                     reliability=reliability_bins(y, p))
    write_report(rep, "out/")   # {"report": out/report.md, "reliability": out/reliability.png}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_FILE = "report.md"
RELIABILITY_FILE = "reliability.png"

#: Metrics shown first in the tables, in this order; any others follow alphabetically.
_ORDER = (
    "n",
    "positives",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "ece",
    "brier",
    "threshold",
    "ties",
    "mean_margin",
    "median_margin",
)
#: Columns of the per-category table by report kind.
_CATEGORY_COLUMNS = {
    "pointwise": ("n", "positives", "accuracy", "f1", "auroc"),
    "multilabel": ("n", "accuracy", "f1", "auroc"),
    "pairwise": ("n", "accuracy", "mean_margin"),
}


class ReliabilityBin(BaseModel):
    """One bin of a reliability diagram (``metrics.reliability_bins``)."""

    model_config = ConfigDict(extra="forbid")

    lo: float = Field(description="Lower edge of the probability bin.")
    hi: float = Field(description="Upper edge of the probability bin.")
    count: int = Field(ge=0, description="Rows whose probability falls in the bin.")
    mean_prob: float = Field(description="Mean predicted probability in the bin (NaN if empty).")
    frac_pos: float = Field(description="Fraction of label-1 rows in the bin (NaN if empty).")


class EvalReport(BaseModel):
    """Everything an evaluation report shows; every field but title / kind / metrics optional."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="Heading of the report (the verifier's name).")
    kind: Literal["pointwise", "pairwise", "multilabel"] = Field(description="What was scored.")
    verifier_name: str = Field(default="verifier", description="Column header of the verifier.")
    metrics: dict[str, Any] = Field(
        description="pointwise/pairwise: metric → value; multilabel: multilabel_metrics' dict."
    )
    baseline_name: str | None = Field(default=None, description="Column header of the baseline.")
    baseline_metrics: dict[str, Any] | None = Field(
        default=None, description="The baseline's metrics on the same rows."
    )
    per_category: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="category → metrics of the verifier."
    )
    baseline_per_category: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="category → metrics of the baseline."
    )
    reliability: list[ReliabilityBin] = Field(
        default_factory=list, description="Reliability bins of the verifier's P(label 1)."
    )
    baseline_reliability: list[ReliabilityBin] = Field(
        default_factory=list, description="Reliability bins of the baseline."
    )
    reliability_note: str | None = Field(
        default=None, description="What the reliability diagram's probability is."
    )
    calibration: dict[str, Any] | None = Field(
        default=None, description="Calibration summary (method, ECE / NLL before and after, ...)."
    )
    data: dict[str, Any] | None = Field(
        default=None, description="Data summary: files, split sizes, class balance."
    )
    skipped: dict[str, int] = Field(
        default_factory=dict, description="Rows left out of the metrics, by reason."
    )
    history: list[dict[str, Any]] = Field(
        default_factory=list, description="Training evaluations (step, epoch, loss, dev metric)."
    )
    notes: list[str] = Field(default_factory=list, description="Free-text remarks.")


# --------------------------------------------------------------------------- formatting


def fmt(value: Any) -> str:
    """A table cell: integers plainly, floats with 4 decimals, NaN / None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _ordered(keys: Any) -> list[str]:
    keys = list(keys)
    first = [k for k in _ORDER if k in keys]
    return first + sorted(k for k in keys if k not in _ORDER)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _flat_metrics_table(
    metrics: dict[str, Any], baseline: dict[str, Any] | None, vname: str, bname: str
) -> list[str]:
    keys = _ordered(k for k, v in metrics.items() if not isinstance(v, dict))
    if baseline is None:
        return _table(["metric", vname], [[k, fmt(metrics[k])] for k in keys])
    keys += [k for k in _ordered(baseline) if k not in keys and not isinstance(baseline[k], dict)]
    return _table(
        ["metric", vname, bname],
        [[k, fmt(metrics.get(k)), fmt(baseline.get(k))] for k in keys],
    )


def _multilabel_tables(rep: EvalReport) -> list[str]:
    m = rep.metrics
    cols = ("n", "positives", "precision", "recall", "f1", "auroc", "auprc", "ece", "threshold")
    rows = [[name, *(fmt(v.get(c)) for c in cols)] for name, v in m.get("labels", {}).items()]
    macro = m.get("macro", {})
    rows.append(["**macro**", "", "", *(fmt(macro.get(c)) for c in cols[2:8]), ""])
    micro = m.get("micro", {})
    rows.append(
        ["**micro**", "", "", *(fmt(micro.get(c)) for c in ("precision", "recall", "f1"))]
        + [""] * 4
    )
    lines = _table(["label", *cols], rows)
    if rep.baseline_metrics is not None:
        bm = rep.baseline_metrics.get("macro", rep.baseline_metrics)
        lines += [
            "",
            f"Macro averages, {rep.verifier_name} vs {rep.baseline_name or 'baseline'}:",
            "",
        ]
        lines += _flat_metrics_table(macro, bm, rep.verifier_name, rep.baseline_name or "baseline")
    return lines


def _category_table(rep: EvalReport) -> list[str]:
    cols = _CATEGORY_COLUMNS[rep.kind]
    bname = rep.baseline_name or "baseline"
    header = ["category", *cols]
    with_base = bool(rep.baseline_per_category)
    if with_base:
        header += [f"{c} ({bname})" for c in cols if c not in ("n", "positives")]
    rows = []
    for cat, m in rep.per_category.items():
        flat = m.get("macro", m) if rep.kind == "multilabel" else m
        row = [fmt(cat), *(fmt(flat.get(c)) for c in cols)]
        if with_base:
            b = rep.baseline_per_category.get(cat, {})
            b = b.get("macro", b) if rep.kind == "multilabel" else b
            row += [fmt(b.get(c)) for c in cols if c not in ("n", "positives")]
        rows.append(row)
    return _table(header, rows)


def _nested(d: dict[str, Any], indent: int = 0) -> list[str]:
    lines = []
    for k, v in d.items():
        if isinstance(v, dict) and v and any(isinstance(x, (dict, list)) for x in v.values()):
            lines.append(f"{'  ' * indent}- **{k}**:")
            lines += _nested(v, indent + 1)
        else:
            lines.append(f"{'  ' * indent}- **{k}**: {fmt(v)}")
    return lines


def render_markdown(rep: EvalReport, reliability_png: str | None = None) -> str:
    """The report as Markdown (what ``write_report`` saves as report.md)."""
    vname = rep.verifier_name
    bname = rep.baseline_name or "baseline"
    lines = [f"# {rep.title}", "", f"Kind: {rep.kind}."]
    if rep.baseline_metrics is not None:
        lines.append(f"Baseline: {bname}, on the same rows.")
    lines += ["", "## Metrics", ""]
    if rep.kind == "pointwise":
        lines.append(
            "Label 1 is the positive class; a row is predicted 1 when P(label 1) >= threshold. "
            "AUROC / AUPRC are n/a when one class is missing."
        )
        lines.append("")
    elif rep.kind == "pairwise":
        lines.append(
            "Accuracy: share of pairs where the chosen response scores higher (a tie counts "
            "one half); margin = score(chosen) − score(rejected)."
        )
        lines.append("")
    if rep.kind == "multilabel":
        lines += _multilabel_tables(rep)
    else:
        lines += _flat_metrics_table(rep.metrics, rep.baseline_metrics, vname, bname)
    if rep.skipped:
        lines += ["", "## Rows left out", ""]
        lines += _table(["reason", "rows"], [[k, str(v)] for k, v in rep.skipped.items()])
    if rep.calibration:
        lines += ["", "## Calibration", ""]
        cal = rep.calibration
        pairs = [
            (k.removesuffix("_before"), cal[k], cal.get(k.removesuffix("_before") + "_after"))
            for k in cal
            if k.endswith("_before") and not isinstance(cal[k], dict)
        ]
        if pairs:
            lines += _table(
                ["measure", "before", "after"], [[k, fmt(b), fmt(a)] for k, b, a in pairs]
            )
            lines.append("")
        rest = {
            k: v
            for k, v in cal.items()
            if not (k.endswith("_before") or k.endswith("_after")) or isinstance(v, dict)
        }
        lines += _nested(rest)
    if rep.per_category:
        lines += ["", "## Per category", ""]
        lines += _category_table(rep)
    if rep.data:
        lines += ["", "## Data", ""]
        lines += _nested(rep.data)
    if rep.reliability:
        lines += ["", "## Reliability", ""]
        if rep.reliability_note:
            lines += [rep.reliability_note, ""]
        if reliability_png:
            lines += [f"![reliability diagram]({reliability_png})", ""]
        header = ["bin", "count", "mean prob", "frac positive"]
        base = {(b.lo, b.hi): b for b in rep.baseline_reliability}
        if base:
            header += [f"count ({bname})", f"mean prob ({bname})", f"frac positive ({bname})"]
        rows = []
        for b in rep.reliability:
            row = [f"[{b.lo:.1f}, {b.hi:.1f})", str(b.count), fmt(b.mean_prob), fmt(b.frac_pos)]
            if base:
                o = base.get((b.lo, b.hi))
                row += [str(o.count), fmt(o.mean_prob), fmt(o.frac_pos)] if o else ["", "", ""]
            rows.append(row)
        lines += _table(header, rows)
    if rep.history:
        lines += ["", "## Training history", ""]
        keys: list[str] = []
        for h in rep.history:
            keys += [k for k in h if k not in keys]
        lines += _table(keys, [[fmt(h.get(k)) for k in keys] for h in rep.history])
    if rep.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in rep.notes]
    return "\n".join(lines) + "\n"


def plot_reliability(rep: EvalReport, path: str | Path) -> Path:
    """Save the reliability diagram: verifier (and baseline) curves over the diagonal, with the
    rows per bin as a histogram underneath.

    A bare ``Figure`` (no pyplot) renders through the Agg canvas: no display, no global backend
    switch that would surprise a caller's own plotting."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 6.5), dpi=100)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    series = [(rep.verifier_name, rep.reliability, "tab:blue")]
    if rep.baseline_reliability:
        series.append((rep.baseline_name or "baseline", rep.baseline_reliability, "tab:orange"))
    width = (rep.reliability[0].hi - rep.reliability[0].lo) if rep.reliability else 0.1
    for k, (name, bins, color) in enumerate(series):
        pts = [(b.mean_prob, b.frac_pos) for b in bins if b.count > 0]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", color=color, label=name)
        offset = (k - (len(series) - 1) / 2) * width / len(series)
        hist.bar(
            [(b.lo + b.hi) / 2 + offset for b in bins],
            [b.count for b in bins],
            width=width / len(series) * 0.9,
            color=color,
            alpha=0.7,
            label=name,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of label 1")
    ax.set_title(rep.title)
    ax.legend(loc="upper left", fontsize="small")
    hist.set_xlabel("predicted P(label 1)")
    hist.set_ylabel("rows")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md`` (and ``reliability.png`` when the report has reliability bins).

    Returns:
        ``{"report": path}`` plus ``"reliability": path`` when the diagram was drawn.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    png = None
    if report.reliability:
        written["reliability"] = plot_reliability(report, d / RELIABILITY_FILE)
        png = RELIABILITY_FILE
    md = d / REPORT_FILE
    md.write_text(render_markdown(report, png), encoding="utf-8")
    written["report"] = md
    return written


__all__ = [
    "RELIABILITY_FILE",
    "REPORT_FILE",
    "EvalReport",
    "ReliabilityBin",
    "fmt",
    "plot_reliability",
    "render_markdown",
    "write_report",
]
