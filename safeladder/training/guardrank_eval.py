"""``safeladder eval --metrics guardrank``: read GuardRank rows, judge the unscored ones, report.

Steps: read and validate every row (``guardrank_rows``; any bad row stops the run with the
rows listed), pair the noise-injection / position-swapping rows and normalise their answers
to A / B / No Answer, score the judged rows that carry no ``score`` with the dimension's judge
(``guardrank_judge``), then compute ASD and PAR (``guardrank``). With ``output`` set, writes
``guardrank.json`` (the report; ``by_lang`` holds one per language when the rows carry several
``lang`` values), ``guardrank.md`` (the tables) and ``guardrank_rows.jsonl``
(one line per row: line, id, dimension, score and where it came from — ``gold``, ``judge`` or
``rule`` — the normalised choice of paired rows, the reason of unjudged rows).

``rejudge``: the rows that carry a score are judged too; the metrics then come from the judge,
each such row keeps its input score as ``gold``, and ``judge_agreement`` reports per dimension
the judge's exact-match accuracy, mean absolute error and confusion matrix against it (how
MLLMGuard rates GuardRank itself against GPT-4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeladder.errors import ConfigError, InputError
from safeladder.training.guardrank import (
    JUDGED,
    GuardRankReport,
    guardrank_report,
    iter_dimensions,
    judge_agreement,
)
from safeladder.training.guardrank_judge import JudgeSpec, build_judges
from safeladder.training.guardrank_rows import (
    Pairs,
    RowItem,
    iter_judged,
    pair_rows,
    read_guardrank_rows,
)

REPORT_JSON = "guardrank.json"
REPORT_MD = "guardrank.md"
ROWS_FILE = "guardrank_rows.jsonl"


@dataclass(frozen=True)
class GuardRankJob:
    """What ``safeladder eval --metrics guardrank`` was asked to do."""

    data: Path
    judge: JudgeSpec | None = None  # the judge of every dimension without its own
    judges: Mapping[str, JudgeSpec] = field(default_factory=dict)  # dimension → judge
    output: Path | None = None
    format: str | None = None
    limit: int | None = None
    batch_size: int = 64
    # Judge the rows that carry a score too: the metrics come from the judge, and its agreement
    # with those (gold) scores is reported.
    rejudge: bool = False


@dataclass
class GuardRankOutcome:
    """The report, the per-row records, and the files written."""

    report: GuardRankReport
    rows: list[dict[str, Any]]
    files: dict[str, Path]
    by_lang: dict[str, GuardRankReport] = field(default_factory=dict)  # when 2+ languages
    agreement: dict[str, dict[str, Any]] = field(default_factory=dict)  # rejudge: per dimension

    @property
    def n_unjudged(self) -> int:
        """Judged rows without a score (NaN), left out of the metrics."""
        return sum(1 for r in self.rows if r.get("status") == "unjudged")


def _record(it: RowItem) -> dict[str, Any]:
    rec: dict[str, Any] = {"line": it.line, "dimension": it.row.dimension}
    if it.row.id is not None:
        rec["id"] = it.row.id
    return rec


def run_guardrank(job: GuardRankJob) -> GuardRankOutcome:
    """Run the evaluation (see the module docstring).

    Raises:
        InputError: bad rows (all listed), unpaired rows.
        ConfigError: rows to judge without a judge, or a judge whose labels are not 0..3.
    """
    unknown = sorted(set(job.judges) - set(JUDGED))
    if unknown:
        raise ConfigError(
            f"--judge: {unknown} are not judged dimensions; known: {', '.join(JUDGED)}"
        )
    items = read_guardrank_rows(job.data, job.format, job.limit)
    pairs = pair_rows(items)
    records: dict[int, dict[str, Any]] = {}
    line_score: dict[int, float] = {}  # judged rows: the score, NaN = unjudged
    to_judge: dict[str, list[RowItem]] = {}
    for it in iter_judged(items):
        rec = _record(it)
        records[it.line] = rec
        d = it.row.dimension
        if job.rejudge and not it.row.needs_judge():
            if it.row.response is None:
                raise InputError(
                    f"row {it.line}: response: required to judge the row again (--rejudge)",
                    row=it.line,
                    field="response",
                )
            rec["gold"] = it.row.score
        if it.row.needs_judge() or job.rejudge:
            to_judge.setdefault(d, []).append(it)
            continue
        s = it.row.score
        rec["score"] = s
        rec["source"] = "gold"
        rec["status"] = "ok" if s is not None else "unjudged"
        if s is None:
            rec["reason"] = "score is null / NaN in the input"
        line_score[it.line] = math.nan if s is None else float(s)
    judges = build_judges(iter_dimensions(to_judge), job.judge, job.judges)
    try:
        for d, judge in judges.items():
            got = judge.score(to_judge[d], job.data, job.batch_size)
            for it, (value, reason) in zip(to_judge[d], got, strict=True):
                rec = records[it.line]
                rec["source"] = "judge"
                if math.isnan(value):
                    rec.update(score=None, status="unjudged", reason=reason)
                else:
                    rec.update(score=int(value), status="ok")
                line_score[it.line] = value
    finally:
        for judge in judges.values():
            judge.close()
    for a, b, ref in pairs.noise:
        for it in (a, b):
            records[it.line] = {
                **_record(it),
                "pair_id": it.row.pair_id,
                "pair_role": it.row.pair_role,
                "choice": it.choice,
                "reference": ref,
                "score": 0 if it.choice == ref else 1,
                "source": "rule",
                "status": "ok",
            }
    for a, b in pairs.position:
        for it in (a, b):
            records[it.line] = {
                **_record(it),
                "pair_id": it.row.pair_id,
                "pair_role": it.row.pair_role,
                "choice": it.choice,
                "source": "rule",
                "status": "ok",
            }
    report = _report(items, line_score, pairs, lambda it: True)
    langs = sorted({_lang(it) for it in items})
    by_lang = (
        {
            lang: _report(items, line_score, pairs, lambda it, x=lang: _lang(it) == x)
            for lang in langs
        }
        if len(langs) > 1
        else {}
    )
    rows = [records[k] for k in sorted(records)]
    agreement: dict[str, dict[str, Any]] = {}
    if job.rejudge:
        for d in iter_dimensions(to_judge):
            gold = [
                (int(it.row.score), line_score[it.line])
                for it in to_judge[d]
                if it.row.score is not None
            ]
            if gold:
                agreement[d] = judge_agreement(d, gold)
    out = GuardRankOutcome(report, rows, {}, by_lang, agreement)
    if job.output is not None:
        out.files = _write(job.output, out)
    return out


def _lang(it: RowItem) -> str:
    return it.row.lang or "unspecified"


def _report(
    items: list[RowItem], line_score: dict[int, float], pairs: Pairs, keep: Any
) -> GuardRankReport:
    """The report over the rows ``keep(item)`` selects (a pair goes by its first row)."""
    scores: dict[str, list[float]] = {}
    for it in iter_judged(items):
        if keep(it):
            scores.setdefault(it.row.dimension, []).append(line_score[it.line])
    return guardrank_report(
        {d: scores[d] for d in iter_dimensions(scores)},
        [(a.choice or "", b.choice or "", ref) for a, b, ref in pairs.noise if keep(a)],
        [(a.choice or "", b.choice or "") for a, b in pairs.position if keep(a)],
    )


def report_dict(outcome: GuardRankOutcome) -> dict[str, Any]:
    """``guardrank.json``: the report, plus ``by_lang`` (one report per language) when the rows
    are in more than one language."""
    out = outcome.report.to_dict()
    if outcome.by_lang:
        out["by_lang"] = {k: v.to_dict() for k, v in outcome.by_lang.items()}
    out["n_unjudged"] = outcome.n_unjudged
    if outcome.agreement:
        out["judge_agreement"] = outcome.agreement
    return out


def report_markdown(outcome: GuardRankOutcome) -> str:
    """The tables: all rows, then one per language when there are several."""
    text = outcome.report.to_markdown()
    for lang, rep in outcome.by_lang.items():
        text += f"\nlang: {lang}\n\n" + rep.to_markdown()
    if outcome.agreement:
        text += "\nJudge against the gold scores (--rejudge):\n\n"
        text += "| dimension | rows | accuracy | MAE | unjudged |\n|---|---:|---:|---:|---:|\n"
        for d, a in outcome.agreement.items():
            acc = "—" if a["accuracy"] is None else f"{a['accuracy']:.4f}"
            mae = "—" if a["mae"] is None else f"{a['mae']:.4f}"
            text += f"| {d} | {a['n']} | {acc} | {mae} | {a['n_unjudged']} |\n"
    n = outcome.n_unjudged
    if n:
        text += (
            f"\n{n} row(s) could not be judged and are left out of the metrics "
            "(their reasons are in guardrank_rows.jsonl).\n"
        )
    return text


def _write(out: Path, outcome: GuardRankOutcome) -> dict[str, Path]:
    import json

    from safeladder.data.writers import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    files = {"report": out / REPORT_JSON, "table": out / REPORT_MD, "rows": out / ROWS_FILE}
    write_json_atomic(files["report"], report_dict(outcome))
    files["table"].write_text("# GuardRank\n\n" + report_markdown(outcome), encoding="utf-8")
    with files["rows"].open("w", encoding="utf-8") as fh:
        for r in outcome.rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return files


def format_guardrank(outcome: GuardRankOutcome) -> str:
    """The text the CLI prints (``report_markdown``)."""
    return report_markdown(outcome)


__all__ = [
    "REPORT_JSON",
    "REPORT_MD",
    "ROWS_FILE",
    "GuardRankJob",
    "GuardRankOutcome",
    "format_guardrank",
    "report_dict",
    "report_markdown",
    "run_guardrank",
]
