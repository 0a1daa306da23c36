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
"""

from __future__ import annotations

import json
import math
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError, InputError, SafeladderWarning
from safeladder.training.metrics import (
    pairwise_metrics,
    pairwise_reliability,
    per_category,
    pointwise_metrics,
    reliability_bins,
)
from safeladder.training.report import EvalReport, ReliabilityBin, write_report
from safeladder.types import Sample, SampleBatch

VERIFIER_FILE = "safeladder_verifier.yaml"
TFIDF_CV = "tfidf-cv"
CV_FOLDS = 5


@dataclass(frozen=True)
class EvalFields:
    """Input field names; the first candidate present in a row is used."""

    prompt: tuple[str, ...] = ("prompt", "question")
    response: tuple[str, ...] = ("response", "completion", "answer")
    label: str = "label"
    chosen: str = "chosen"
    rejected: str = "rejected"
    category: str | None = "category"


@dataclass(frozen=True)
class EvalJob:
    """Everything ``safeladder eval`` was asked to do."""

    verifier: str | Path | Mapping[str, Any]
    data: Path
    baseline: str | Path | Mapping[str, Any] | None = None
    output: Path | None = None
    fields: EvalFields = field(default_factory=EvalFields)
    format: str | None = None
    split: str | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    pairwise: bool | None = None
    # None: the direction saved when the verifier was trained, else 1.
    score_means: int | None = None
    threshold: float | None = None
    limit: int | None = None
    batch_size: int = 64
    progress: bool = True
    seed: int = 0


@dataclass
class EvalOutcome:
    """What ``run_eval`` produced."""

    report: EvalReport
    files: dict[str, Path]
    bad_rows: list[dict[str, Any]]


@dataclass
class _Point:
    line: int
    sample: Sample
    label: int
    category: str | None


@dataclass
class _Pair:
    line: int
    chosen: Sample
    rejected: Sample
    category: str | None


# --------------------------------------------------------------------------- verifier specs


def resolve_verifier(spec: str | Path | Mapping[str, Any]) -> tuple[Any, str]:
    """The verifier config for a spec, and a display name.

    A spec is what ``build_verifier`` takes (a preset or type name, a YAML / JSON config file,
    a dict) or a trained output directory holding ``safeladder_verifier.yaml``, whose
    ``path`` (absent, ``.`` or relative) is read relative to that directory.
    """
    from safeladder.config import load_yaml
    from safeladder.verifiers import REGISTRY, parse_verifier_config

    if isinstance(spec, Mapping):
        cfg = parse_verifier_config(dict(spec))
        return cfg, cfg.name or str(spec.get("type"))
    p = Path(spec)
    if p.is_dir():
        f = p / VERIFIER_FILE
        if not f.is_file():
            raise ConfigError(
                f"{p} is a directory without {VERIFIER_FILE}; give a verifier config file, a "
                f"preset or type name, or a trained output directory"
            )
        data = load_yaml(f)
        cls = REGISTRY.get(str(data.get("type")))
        rel = data.get("path")
        # Only types that load something from a directory get one (a rule verifier has no path).
        if (
            cls is not None
            and "path" in cls.model_fields
            and not Path(str(rel or ".")).is_absolute()
        ):
            data["path"] = str((p / str(rel or ".")).resolve())
        cfg = parse_verifier_config(data, source=str(f))
        return cfg, cfg.name or p.name
    if p.suffix.lower() == ".json" and p.is_file():
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from exc
        cfg = parse_verifier_config(data, source=str(p))
        return cfg, cfg.name or p.stem
    cfg = parse_verifier_config(str(spec))
    return cfg, cfg.name or (p.stem if p.is_file() else str(spec))


# --------------------------------------------------------------------------- reading rows


def _pick(row: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for n in names:
        if n in row:
            return n, row[n]
    return None, None


def parse_label(value: Any, fieldname: str) -> int:
    """0 / 1 from an int, bool, float 0.0 / 1.0 or the strings 0 / 1 / true / false."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return 1 if value.strip().lower() in ("1", "true") else 0
    raise InputError(
        f"field {fieldname!r} (label): expected 0 or 1, got {value!r:.60}", field=fieldname
    )


def _sample(row: Mapping[str, Any], fields: EvalFields, response: Any, rname: str) -> Sample:
    from safeladder.data import FieldMap, to_sample

    pname, _ = _pick(row, fields.prompt)
    if pname is None:
        raise InputError(
            f"missing field 'prompt' (looked for: {', '.join(fields.prompt)})",
            field=fields.prompt[0],
        )
    # Only the prompt and the response are mapped; the rest of the row becomes meta.
    return to_sample(
        {pname: row[pname], rname: "" if response is None else response},
        FieldMap(prompt=(pname,), completion=(rname,), reference=(), require_prompt=True),
    )


def _category(row: Mapping[str, Any], fields: EvalFields) -> str | None:
    if fields.category is None:
        return None
    v = row.get(fields.category)
    return None if v is None else str(v)


def _parse_point(line: int, row: Mapping[str, Any], fields: EvalFields) -> _Point:
    rname, response = _pick(row, fields.response)
    if rname is None:
        raise InputError(
            f"missing field 'response' (looked for: {', '.join(fields.response)})",
            field=fields.response[0],
        )
    if fields.label not in row:
        raise InputError(f"missing field {fields.label!r} (label)", field=fields.label)
    label = parse_label(row[fields.label], fields.label)
    return _Point(line, _sample(row, fields, response, rname), label, _category(row, fields))


def _parse_pair(line: int, row: Mapping[str, Any], fields: EvalFields) -> _Pair:
    for name in (fields.chosen, fields.rejected):
        if name not in row:
            raise InputError(f"missing field {name!r}", field=name)
        if not isinstance(row[name], str):
            raise InputError(
                f"field {name!r}: expected a string, got {type(row[name]).__name__}", field=name
            )
    return _Pair(
        line,
        _sample(row, fields, row[fields.chosen], fields.chosen),
        _sample(row, fields, row[fields.rejected], fields.rejected),
        _category(row, fields),
    )


SPLIT_FIELD = "split"


def row_filter(job: EvalJob) -> tuple[str | None, dict[str, Any]]:
    """(the split ``read_rows`` reads, the field filters rows must pass) for ``job``.

    An HF dataset directory holds its splits itself; any other file marks a row's split in its
    ``split`` field, so ``split`` becomes one more filter there.
    """
    from safeladder.data import detect_format

    where = dict(job.where)
    fmt = job.format or detect_format(job.data)
    if job.split is None or fmt == "hf":
        return job.split, where
    if SPLIT_FIELD in where and where[SPLIT_FIELD] != job.split:
        raise ConfigError(
            f"--split {job.split!r} and --where {SPLIT_FIELD}={where[SPLIT_FIELD]!r} disagree"
        )
    where[SPLIT_FIELD] = job.split
    return None, where


def _no_match_error(
    job: EvalJob, where: Mapping[str, Any], seen: Mapping[str, Counter[str]]
) -> str:
    """Why no row passed the filters: for each field, the values the file does have."""
    parts = []
    for key, want in where.items():
        values = seen[key]
        if not values:
            parts.append(f"no row has a field {key!r}")
        else:
            common = ", ".join(f"{v!r} ({n})" for v, n in values.most_common(8))
            parts.append(f"{key} = {want!r} matches no row; values seen: {common}")
    return f"{job.data}: no rows pass the filters: " + "; ".join(parts)


def read_items(job: EvalJob) -> tuple[bool, list[Any], list[dict[str, Any]]]:
    """(pairwise?, good items in file order, bad rows ``{"line", "error"}``).

    Rows that fail ``job.split`` / ``job.where`` are skipped (neither good nor bad).

    Raises:
        InputError: the filters match no row (naming the values the file holds).
    """
    from safeladder.data import read_rows
    from safeladder.training.data import _MISSING, _matches, get_path

    items: list[Any] = []
    bad: list[dict[str, Any]] = []
    pairwise = job.pairwise
    seen = 0
    read_split, where = row_filter(job)
    values: dict[str, Counter[str]] = {k: Counter() for k in where}
    matched = 0
    for row in read_rows(job.data, job.format, split=read_split):
        if job.limit is not None and seen >= job.limit:
            break
        if row.error is not None or row.data is None:
            seen += 1
            bad.append({"line": row.line, "error": row.error or "empty row"})
            continue
        if where:
            got = {k: get_path(row.data, k) for k in where}
            for k, v in got.items():
                if v is not _MISSING:
                    values[k][str(v)] += 1
            if not all(_matches(got[k], want) for k, want in where.items()):
                continue
        seen += 1
        matched += 1
        if pairwise is None:
            pairwise = job.fields.chosen in row.data and job.fields.rejected in row.data
        try:
            if pairwise:
                items.append(_parse_pair(row.line, row.data, job.fields))
            else:
                items.append(_parse_point(row.line, row.data, job.fields))
        except InputError as exc:
            bad.append({"line": row.line, "error": str(exc)})
    if where and not matched:
        raise InputError(_no_match_error(job, where, values))
    return bool(pairwise), items, bad


# --------------------------------------------------------------------------- scoring


def _batches(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    for i in range(0, len(samples), size):
        yield samples[i : i + size]


def score_samples(
    verifier: Any, samples: list[Sample], batch_size: int, bar: Any | None = None
) -> tuple[np.ndarray, list[str]]:
    """Scores (n,) float64 (NaN = not scored) and statuses of ``samples``, in batches."""
    scores: list[np.ndarray] = []
    status: list[str] = []
    for chunk in _batches(samples, batch_size):
        out = verifier.score(SampleBatch.from_samples(chunk))
        scores.append(np.asarray(out.scores, dtype=np.float64))
        status += [str(s) for s in out.status]
        if bar is not None:
            bar.update(len(chunk))
    arr = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64)
    # A verifier that returns NaN with status "ok" would break the contract; treat it as abstain.
    status = [
        "abstain" if s == "ok" and math.isnan(v) else s for s, v in zip(status, arr, strict=True)
    ]
    return arr, status


def _is_probability(verifier: Any) -> bool:
    lo, hi = getattr(verifier, "score_range", (-np.inf, np.inf))
    return bool(lo >= 0.0 and hi <= 1.0)


@dataclass
class _Scored:
    name: str
    probability: bool
    scores: np.ndarray  # pointwise (n,); pairwise (n, 2) = chosen, rejected
    status: list[str]  # per item: "ok" or the first non-ok status
    is_p1: bool = False  # scores are already P(label 1) (tfidf-cv), whatever --score-means says
    # The decision threshold on the score chosen at training time (calibration meta), if any.
    calibrated_threshold: float | None = None
    # The label a high score predicted at training time (calibration meta), if recorded.
    saved_score_means: int | None = None
    # Where the two above came from (a file), for the report's notes.
    decision_source: str | None = None
    # The label a high score predicts in this evaluation (resolved by run_eval).
    score_means: int = 1


_TRUNCATED = re.compile(r"(\d+) of \d+ rows were longer than (\d+) tokens")


def _rewarn_truncation_once(caught: list[warnings.WarningMessage], name: str, n: int) -> None:
    """One truncation warning for the whole file instead of one per batch; others re-raised."""
    truncated, limit = 0, None
    for w in caught:
        m = _TRUNCATED.search(str(w.message)) if issubclass(w.category, SafeladderWarning) else None
        if m:
            truncated += int(m.group(1))
            limit = m.group(2)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if truncated:
        warnings.warn(
            f"{name}: {truncated} of {n} rows were longer than {limit} tokens and were "
            "truncated (as at training time, the verifier scores what fits)",
            SafeladderWarning,
            stacklevel=3,
        )


#: Training's record of the dev decision (``calibration`` block), next to the model.
TRAIN_METRICS_FILE = "metrics.json"  # = safeladder.training.runner.METRICS_FILE


def saved_decision(cfg: Any, verifier: Any) -> tuple[float | None, int | None, str | None]:
    """``(score threshold, label a high score predicts, source)`` recorded at training time.

    Training (``safeladder.training.calibration``) records the dev decision in the calibration
    summary: ``score_threshold`` (on the verifier's own score, P(good)) and
    ``score_predicts_positive`` (``at_or_above``: a high score predicts the positive class,
    label 1; ``below``: it predicts label 0, as for a safety verifier of P(safe) trained on
    label 1 = unsafe). Read from the classifier's calibration ``meta`` (the file it applies),
    else from ``metrics.json`` in the verifier's ``path`` (kinds that fold their calibration
    into the model, such as ``embedding_head``). ``(None, None, None)`` when neither records it.
    """
    meta: Any = getattr(getattr(verifier, "calibration", None), "meta", None)
    source: str | None = "calibration file"
    if not isinstance(meta, dict) or "score_threshold" not in meta:
        meta, source = None, None
        path = getattr(cfg, "path", None)
        f = Path(str(path)) / TRAIN_METRICS_FILE if path else None
        if f is not None and f.is_file():
            try:
                record = json.loads(f.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{f}: not valid JSON: {exc}") from exc
            cal = record.get("calibration") if isinstance(record, dict) else None
            if isinstance(cal, dict):
                meta, source = cal, str(f)
    if meta is None:
        return None, None, None
    value = meta.get("score_threshold")
    threshold = (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )
    direction = {"at_or_above": 1, "below": 0}.get(str(meta.get("score_predicts_positive")))
    if threshold is None and direction is None:
        return None, None, None
    return threshold, direction, source


def _score_with(spec: Any, items: list[Any], pairwise: bool, job: EvalJob, desc: str) -> _Scored:
    from tqdm import tqdm

    cfg, name = resolve_verifier(spec)
    verifier = cfg.build()
    try:
        samples = (
            [s for it in items for s in (it.chosen, it.rejected)]
            if pairwise
            else [it.sample for it in items]
        )
        with (
            tqdm(
                total=len(samples), unit="row", file=sys.stderr, disable=not job.progress, desc=desc
            ) as bar,
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always", SafeladderWarning)
            scores, status = score_samples(verifier, samples, job.batch_size, bar)
        _rewarn_truncation_once(caught, name, len(samples))
        probability = _is_probability(verifier)
        threshold, direction, source = saved_decision(cfg, verifier)
    finally:
        verifier.close()
    if pairwise:
        pairs = scores.reshape(-1, 2)
        st = [a if a != "ok" else b for a, b in zip(status[0::2], status[1::2], strict=True)]
        return _Scored(name, probability, pairs, st)
    return _Scored(
        name,
        probability,
        scores,
        status,
        calibrated_threshold=threshold,
        saved_score_means=direction,
        decision_source=source,
    )


def _folds(items: list[Any], seed: int) -> np.ndarray:
    """Fold index per item; items sharing a prompt share a fold."""
    from safeladder.types import prompt_text

    keys = [
        prompt_text(it.sample.prompt if isinstance(it, _Point) else it.chosen.prompt)
        for it in items
    ]
    uniq = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: int(i % CV_FOLDS) for i, j in enumerate(order)}
    return np.array([fold_of[k] for k in keys], dtype=np.int64)


def _tfidf_cv(items: list[Any], pairwise: bool, seed: int) -> _Scored:
    from safeladder.training.baseline import tfidf_logreg_pairwise, tfidf_logreg_pointwise
    from safeladder.types import prompt_text

    folds = _folds(items, seed)
    if len(set(folds.tolist())) < 2:
        raise InputError(f"--baseline {TFIDF_CV}: needs rows with at least 2 different prompts")

    def text(s: Sample) -> str:
        return prompt_text(s.prompt) + "\n" + s.completion

    if pairwise:
        ch = [text(it.chosen) for it in items]
        rj = [text(it.rejected) for it in items]
        out = np.zeros((len(items), 2))
        for f in sorted(set(folds.tolist())):
            tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            c, r = tfidf_logreg_pairwise(
                [ch[i] for i in tr],
                [rj[i] for i in tr],
                [ch[i] for i in te],
                [rj[i] for i in te],
                seed=seed,
            )
            out[te, 0], out[te, 1] = c, r
        return _Scored(TFIDF_CV, False, out, ["ok"] * len(items))
    texts = [text(it.sample) for it in items]
    y = np.array([it.label for it in items], dtype=np.int64)
    probs = np.zeros(len(items))
    for f in sorted(set(folds.tolist())):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        if np.unique(y[tr]).size < 2:
            raise InputError(
                f"--baseline {TFIDF_CV}: a training fold holds one class only; "
                "the file needs more rows of each label"
            )
        probs[te] = tfidf_logreg_pointwise(
            [texts[i] for i in tr], y[tr], [texts[i] for i in te], seed
        )
    # The baseline predicts P(label 1) directly, whatever --score-means says for the verifier.
    return _Scored(TFIDF_CV, True, probs, ["ok"] * len(items), is_p1=True)


# --------------------------------------------------------------------------- metrics


def _to_p1(scored: _Scored) -> np.ndarray:
    """P(label 1) (or a score increasing in it) from the verifier's scores."""
    if scored.is_p1 or scored.score_means == 1:
        return scored.scores
    return 1.0 - scored.scores if scored.probability else -scored.scores


def _score_threshold(scored: _Scored, job: EvalJob) -> float:
    """--threshold, else the one chosen when the verifier was trained, else 0.5 (or 0)."""
    if job.threshold is not None:
        return job.threshold
    if scored.calibrated_threshold is not None:
        return scored.calibrated_threshold
    return 0.5 if scored.probability else 0.0


def _p1_threshold(scored: _Scored, job: EvalJob) -> float:
    if scored.is_p1:
        return 0.5
    t = _score_threshold(scored, job)
    if scored.score_means == 1:
        return t
    # score >= t predicts label 0, so label 1 needs score < t: P(label 1) = 1 − score (or −score)
    # strictly above 1 − t (−t). The next float up turns ">=" into ">" exactly.
    return float(np.nextafter(1.0 - t if scored.probability else -t, np.inf))


def _bins(labels: np.ndarray, probs: np.ndarray) -> list[ReliabilityBin]:
    return [ReliabilityBin(**b) for b in reliability_bins(labels, probs)]


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
    main = _score_with(job.verifier, items, pairwise, job, "verifier")
    main.score_means = _pick_score_means(job.score_means, main.saved_score_means, 1)
    base: _Scored | None = None
    if job.baseline is not None:
        if isinstance(job.baseline, str) and job.baseline == TFIDF_CV:
            base = _tfidf_cv(items, pairwise, job.seed)
        else:
            base = _score_with(job.baseline, items, pairwise, job, "baseline")
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
        report = _pairwise_report(job, main, base, keep, cats, data, notes)
    else:
        report = _pointwise_report(job, main, base, keep, kept, cats, data, notes)
    report.skipped = dict(skipped)
    files: dict[str, Path] = {}
    if job.output is not None:
        files = _write_outputs(job, report, items, main, base, bad, pairwise)
    return EvalOutcome(report=report, files=files, bad_rows=bad)


def _pick_score_means(given: int | None, saved: int | None, fallback: int) -> int:
    """``--score-means`` when given, else the direction saved at training time, else fallback."""
    if given is not None:
        return given
    return saved if saved is not None else fallback


def _pointwise_report(
    job: EvalJob,
    main: _Scored,
    base: _Scored | None,
    keep: np.ndarray,
    kept: list[_Point],
    cats: list[str | None],
    data: dict[str, Any],
    notes: list[str],
) -> EvalReport:
    y = np.array([it.label for it in kept], dtype=np.int64)
    p = _to_p1(main)[keep]
    t = _p1_threshold(main, job)
    data["class balance"] = {"label 0": int((y == 0).sum()), "label 1": int((y == 1).sum())}
    data["prompt-only rows"] = sum(1 for it in kept if it.sample.completion == "")
    data["score means label"] = main.score_means

    def metrics_of(sc: _Scored, thr: float) -> Any:
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
        bp = _to_p1(base)[keep]
        bfn = metrics_of(base, _p1_threshold(base, job))
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
    score_t = _score_threshold(main, job)
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


def _pairwise_report(
    job: EvalJob,
    main: _Scored,
    base: _Scored | None,
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


def _write_outputs(
    job: EvalJob,
    report: EvalReport,
    items: list[Any],
    main: _Scored,
    base: _Scored | None,
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

    def num(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

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
    "TFIDF_CV",
    "EvalFields",
    "EvalJob",
    "EvalOutcome",
    "format_summary",
    "parse_label",
    "read_items",
    "resolve_verifier",
    "run_eval",
    "score_samples",
]
