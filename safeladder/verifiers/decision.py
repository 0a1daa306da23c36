"""A verifier's saved decision threshold: what its training recorded as "flag at or below".

Training (``safeladder.training.calibration``) records the dev decision in the calibration
summary. Readers: ``safeladder eval`` (the default threshold of its metrics) and verifiers built
on another verifier's decision (``unwarranted_refusal`` reads its request judge's). It lives
here, in the verifier layer, so that both can read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError

#: Training's record of the dev decision (``calibration`` block), next to the model.
TRAIN_METRICS_FILE = "metrics.json"  # safeladder.training.run_files.METRICS_FILE


def saved_decision(cfg: Any, verifier: Any) -> tuple[float | None, int | None, str | None]:
    """``(score threshold, label a high score predicts, source)`` recorded at training time.

    Training (``safeladder.training.calibration``) records the dev decision in the calibration
    summary: ``score_threshold`` (on the verifier's own score, P(good)) and
    ``score_predicts_positive`` (``at_or_above``: a high score predicts the positive class,
    label 1; ``below``: it predicts label 0, as for a safety verifier of P(safe) trained on
    label 1 = unsafe). Read from the classifier's calibration ``meta`` (the file it applies),
    else from ``metrics.json`` in the verifier's ``path`` (kinds that fold their calibration
    into the model, such as ``embedding_head``). ``(None, None, None)`` when neither records it.
    An ensemble's is its members' (``ensemble_decision``).
    """
    if getattr(cfg, "type", None) == "ensemble":
        return ensemble_decision(cfg, verifier)
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


def ensemble_decision(cfg: Any, verifier: Any) -> tuple[float | None, int | None, str | None]:
    """An ensemble's decision: its members' saved thresholds combined as their scores are.

    Every member must record a threshold, and those that record a direction must agree;
    otherwise ``(None, None, None)``. For ``min`` / ``max`` the combined threshold flags exactly
    the rows some / every member flags; for ``mean`` / ``logit_mean`` it is where members that
    all sit at their own thresholds land (the ``safety_ensemble`` preset's gate).
    """
    from safeladder.verifiers.ensemble import combine_scores

    decisions = [
        saved_decision(v.config, v) for v in getattr(verifier, "members", ())
    ]  # fmt: skip
    thresholds = [t for t, _, _ in decisions]
    directions = {d for _, d, _ in decisions if d is not None}
    if not decisions or None in thresholds or len(directions) > 1:
        return None, None, None
    t = combine_scores(np.array(thresholds, dtype=np.float64), verifier.weights, cfg.combine)
    names = ", ".join(
        f"{n} {x:.4g}" for n, x in zip(verifier.member_names, thresholds, strict=True)
    )
    return (
        t,
        (directions.pop() if directions else None),
        f"members' thresholds ({names}), {cfg.combine}",
    )


__all__ = ["TRAIN_METRICS_FILE", "ensemble_decision", "saved_decision"]
