"""``safeladder eval`` scoring: resolve a verifier spec, score the items in batches, and read
the decision a trained verifier saved (threshold and direction); the ``tfidf-cv`` column.
"""

from __future__ import annotations

import json
import math
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError, InputError, SafeladderWarning
from safeladder.training.eval_rows import EvalJob, PointItem
from safeladder.training.run_files import VERIFIER_FILE
from safeladder.types import Sample, SampleBatch
from safeladder.verifiers.decision import TRAIN_METRICS_FILE, saved_decision

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
class Scored:
    """One column of scores: a verifier's (or the baseline's) over the items, with what is
    needed to read them as P(label 1) and decide."""

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


def score_with(spec: Any, items: list[Any], pairwise: bool, job: EvalJob, desc: str) -> Scored:
    """Build the verifier of ``spec``, score every item (pairs: both replies) and close it."""
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
        return Scored(name, probability, pairs, st)
    return Scored(
        name,
        probability,
        scores,
        status,
        calibrated_threshold=threshold,
        saved_score_means=direction,
        decision_source=source,
    )


def tfidf_cv(items: list[Any], pairwise: bool, seed: int) -> Scored:
    """The ``tfidf-cv`` baseline column: ``safeladder.training.baseline`` cross-fitted on the
    items themselves, folds grouped by prompt.

    Raises:
        InputError: fewer than 2 distinct prompts, or a training fold with one class only.
    """
    from safeladder.training.baseline import (
        CROSS_FIT,
        cross_fit_pairwise,
        cross_fit_pointwise,
        grouped_folds,
    )
    from safeladder.types import prompt_text

    keys = [
        prompt_text(it.sample.prompt if isinstance(it, PointItem) else it.chosen.prompt)
        for it in items
    ]
    folds = grouped_folds(keys, seed)

    def text(s: Sample) -> str:
        return prompt_text(s.prompt) + "\n" + s.completion

    try:
        if pairwise:
            ch = [text(it.chosen) for it in items]
            rj = [text(it.rejected) for it in items]
            out = cross_fit_pairwise(ch, rj, folds, seed)
            return Scored(CROSS_FIT, False, out, ["ok"] * len(items))
        texts = [text(it.sample) for it in items]
        y = np.array([it.label for it in items], dtype=np.int64)
        probs = cross_fit_pointwise(texts, y, folds, seed)
    except ValueError as exc:
        raise InputError(f"--baseline {CROSS_FIT}: {exc}") from None
    # The baseline predicts P(label 1) directly, whatever --score-means says for the verifier.
    return Scored(CROSS_FIT, True, probs, ["ok"] * len(items), is_p1=True)


__all__ = [
    "TRAIN_METRICS_FILE",
    "VERIFIER_FILE",
    "Scored",
    "resolve_verifier",
    "saved_decision",
    "score_samples",
    "score_with",
    "tfidf_cv",
]
