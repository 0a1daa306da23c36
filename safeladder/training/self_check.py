"""The self-check of a training run: rebuild the saved verifier and compare its scores.

A save / load mismatch (wrong head, lost calibration, different rendering) fails the run here,
instead of in an RL job.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import SafeladderError, SafeladderWarning
from safeladder.training.common import PairRecord, TrainData
from safeladder.training.dev_eval import DevEvaluation
from safeladder.training.run_files import verifier_config

#: Verifier scores of reloaded dev rows must match the kind's predictions this closely.
SELF_CHECK_TOL = 1e-4
#: Dev rows scored by the self-check (a few: it loads the model once more).
SELF_CHECK_ROWS = 8


def _samples(data: TrainData, k: int) -> list[Any]:
    from safeladder.types import Sample

    out = []
    for r in data.dev[:k]:
        if isinstance(r, PairRecord):
            out.append(Sample(prompt=r.prompt, completion=r.chosen))
        else:
            out.append(Sample(prompt=r.prompt, completion=r.response or ""))
    return out


def _verifier_fields(kind: Any) -> set[str]:
    from safeladder.verifiers import REGISTRY

    cls = REGISTRY.get(str(kind))
    return set(cls.model_fields) if cls is not None else set()


def self_check(
    out: Path, data: TrainData, ev: DevEvaluation, outcome: Any, *, tol: float = SELF_CHECK_TOL
) -> dict[str, Any]:
    """Rebuild the verifier from ``out`` and compare its scores on the first dev rows.

    Pointwise: the verifier's score against the calibrated P(good) of the kind's dev logits
    (multi-label: ``details[i]["probs"]`` against the calibrated per-label probabilities);
    pairwise: the raw reward of the chosen reply (``details[i]["raw"]`` when the verifier
    normalizes) against ``dev_chosen``. A kind may give ``outcome.extra["dev_scores"]`` — the
    verifier's expected scores — when the runner cannot derive them (e.g. a label judge).

    Returns ``{"rows", "max_abs_diff", "ok"}``, or ``{"skipped": reason}``.

    Raises:
        SafeladderError: a score differs by more than ``tol``.
    """
    from safeladder.verifiers import build_verifier

    given = outcome.extra.get("dev_scores") if isinstance(outcome.extra, dict) else None
    expected = np.asarray(given, dtype=np.float64) if given is not None else ev.expected_scores
    probs = ev.expected_probs if given is None else None
    if expected is None and probs is None:
        return {"skipped": "no expected verifier scores for this kind"}
    k = min(SELF_CHECK_ROWS, len(data.dev))
    samples = _samples(data, k)
    vcfg = verifier_config(out)
    if "runtime" in _verifier_fields(vcfg.get("type")):
        # The kinds predict the dev split in float32; the verifier's default dtype is bf16 on
        # CUDA, whose rounding (~1e-3) would fail the check without any save/load mismatch.
        vcfg = {**vcfg, "runtime": {**(vcfg.get("runtime") or {}), "dtype": "float32"}}
    verifier = build_verifier(vcfg)
    try:
        with warnings.catch_warnings():
            # Truncation notices here repeat what training already saw on the same rows.
            warnings.simplefilter("ignore", SafeladderWarning)
            result = verifier.score(samples)
    finally:
        verifier.close()
    diffs: list[float] = []
    for i in range(k):
        d = result.details[i] if result.details else {}
        if probs is not None:
            got = d.get("probs", {}) if isinstance(d, dict) else {}
            names = list(data.labels)
            diffs.append(
                max(abs(float(got.get(n, math.nan)) - probs[i, j]) for j, n in enumerate(names))
            )
        else:
            assert expected is not None
            is_pair = isinstance(data.dev[i], PairRecord)
            raw = d.get("raw") if isinstance(d, dict) and is_pair else None
            got_v = float(raw) if raw is not None else float(result.scores[i])
            diffs.append(abs(got_v - float(expected[i])))
    worst = max(diffs) if diffs else 0.0
    report = {"rows": k, "max_abs_diff": float(worst), "ok": bool(worst <= tol)}
    if not worst <= tol:  # NaN fails too
        i = int(np.nanargmax(diffs)) if not all(math.isnan(x) for x in diffs) else 0
        r = data.dev[i]
        raise SafeladderError(
            f"self-check failed: the verifier rebuilt from {str(out)!r} differs from the "
            f"training predictions by {worst:.3g} (> {tol:g}) on dev row {i} ({r.source} row "
            f"{r.row}); the saved model, its calibration or its rendering does not match what "
            "was trained"
        )
    return report


__all__ = ["SELF_CHECK_ROWS", "SELF_CHECK_TOL", "self_check"]
