"""The reference every trained verifier is compared with: TF-IDF + logistic regression.

Trained on the same train split and evaluated on the same dev split as the verifier, so a
README number reads "the verifier vs what bag-of-words features already get". Features are
word uni/bi-grams and character 3–5-grams inside word boundaries (``char_wb``), both with
sublinear TF and L2 norm, fitted on the training texts only. The texts are what the caller
passes (for prompt + response rows: ``prompt + "\\n" + response``).

- Pointwise: ``LogisticRegression`` (liblinear, C = 1) on the features → dev P(label 1).
- Pairwise: a linear Bradley–Terry model, ``P(a ≻ b) = sigmoid(w · (φ(a) − φ(b)))``: logistic
  regression without intercept on feature differences, each pair entered once in a seeded
  random orientation (so both classes are present); the score of a text is ``w · φ(text)``.

This module is the baseline's one home and ``tfidf_logreg`` (``BASELINE_NAME``) its one name.
It is used two ways:

- ``holdout_baseline``: training (``safeladder train``) fits it on the train split and
  measures it on the dev split, the ``baseline`` block of ``metrics.json``;
- ``cross_fit_pointwise`` / ``cross_fit_pairwise``: ``safeladder eval --baseline tfidf-cv``
  (``CROSS_FIT``) cross-fits it on the evaluated file itself, ``CV_FOLDS`` folds grouped by
  prompt (``grouped_folds``), so no prompt is scored by a model that saw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from safeladder.training.common import CalibrationSettings, PointRecord, TrainData

BASELINE_NAME = "tfidf_logreg"
#: ``safeladder eval --baseline`` spec of the cross-fitted baseline (also its report column).
CROSS_FIT = "tfidf-cv"
#: Folds of the cross-fit.
CV_FOLDS = 5

#: Vocabulary caps: enough for the shared data (a few thousand rows) while keeping the fit to
#: seconds on one CPU core.
MAX_WORD_FEATURES = 50_000
MAX_CHAR_FEATURES = 50_000


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                    max_features=MAX_WORD_FEATURES,
                    dtype=np.float64,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    sublinear_tf=True,
                    max_features=MAX_CHAR_FEATURES,
                    dtype=np.float64,
                ),
            ),
        ]
    )


def _texts(name: str, texts: Sequence[str]) -> list[str]:
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}]: expected a string, got {type(t).__name__}")
    return out


def tfidf_logreg_pointwise(
    train_texts: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    dev_texts: Sequence[str],
    seed: int = 0,
) -> np.ndarray:
    """Fit on the train texts / 0-1 labels; return dev P(label 1), shape (n_dev,) float64.

    Raises:
        ValueError: lengths differ, labels not 0/1, or one class only in the training labels.
    """
    from sklearn.linear_model import LogisticRegression

    x_train = _texts("train_texts", train_texts)
    x_dev = _texts("dev_texts", dev_texts)
    y = np.asarray(train_labels)
    if y.shape != (len(x_train),):
        raise ValueError(f"train_labels: {y.shape} for {len(x_train)} train texts")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("train_labels: must be 0 or 1")
    if np.unique(y).size < 2:
        raise ValueError("train_labels: the baseline needs both classes in the training split")
    vec = _vectorizer()
    features = vec.fit_transform(x_train)
    clf = LogisticRegression(C=1.0, solver="liblinear", max_iter=1000, random_state=seed)
    clf.fit(features, y.astype(np.int64))
    if not x_dev:
        return np.zeros(0, dtype=np.float64)
    col = int(np.flatnonzero(clf.classes_ == 1)[0])
    return np.asarray(clf.predict_proba(vec.transform(x_dev))[:, col], dtype=np.float64)


def tfidf_logreg_pairwise(
    train_chosen: Sequence[str],
    train_rejected: Sequence[str],
    dev_chosen: Sequence[str],
    dev_rejected: Sequence[str],
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a linear Bradley–Terry model on train pairs; return dev (chosen, rejected) scores.

    Args:
        train_chosen / train_rejected: the preferred / other text of each training pair.
        dev_chosen / dev_rejected: dev pairs.
        seed: the orientation of each training pair (and the solver's seed).

    Returns:
        Two (n_dev,) float64 arrays of scores ``w · φ(text)`` (higher = preferred).
    """
    from sklearn.linear_model import LogisticRegression

    tc = _texts("train_chosen", train_chosen)
    tr = _texts("train_rejected", train_rejected)
    dc = _texts("dev_chosen", dev_chosen)
    dr = _texts("dev_rejected", dev_rejected)
    if len(tc) != len(tr):
        raise ValueError(f"train_chosen / train_rejected: {len(tc)} vs {len(tr)} texts")
    if len(dc) != len(dr):
        raise ValueError(f"dev_chosen / dev_rejected: {len(dc)} vs {len(dr)} texts")
    if len(tc) < 2:
        raise ValueError("the pairwise baseline needs at least 2 training pairs")
    vec = _vectorizer()
    vec.fit(tc + tr)
    diff = vec.transform(tc) - vec.transform(tr)
    rng = np.random.default_rng(seed)
    flip = rng.random(len(tc)) < 0.5
    if flip.all() or not flip.any():  # both orientations are needed for a two-class fit
        flip[0] = not flip[0]
    sign = np.where(flip, -1.0, 1.0)
    from scipy.sparse import diags

    x = diags(sign) @ diff
    y = (~flip).astype(np.int64)  # 1: the first text of the difference is the chosen one
    clf = LogisticRegression(
        C=1.0, solver="liblinear", fit_intercept=False, max_iter=1000, random_state=seed
    )
    clf.fit(x, y)
    w = np.asarray(clf.coef_[0], dtype=np.float64)
    if not dc:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty.copy()
    return (
        np.asarray(vec.transform(dc) @ w, dtype=np.float64),
        np.asarray(vec.transform(dr) @ w, dtype=np.float64),
    )


def grouped_folds(keys: Sequence[str], seed: int, k: int = CV_FOLDS) -> np.ndarray:
    """Fold index (n,) int64 per item; items with the same key (prompt) share a fold.

    The distinct keys are shuffled with ``seed`` and dealt round-robin into ``k`` folds.

    >>> f = grouped_folds(["a", "b", "a", "c"], seed=0, k=2)
    >>> bool(f[0] == f[2]), sorted(set(f.tolist()))
    (True, [0, 1])
    """
    uniq = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: int(i % k) for i, j in enumerate(order)}
    return np.array([fold_of[key] for key in keys], dtype=np.int64)


def cross_fit_pointwise(
    texts: Sequence[str], labels: Sequence[int] | np.ndarray, folds: np.ndarray, seed: int = 0
) -> np.ndarray:
    """P(label 1) (n,) float64 for every text, each from a model fitted on the other folds.

    Raises:
        ValueError: fewer than 2 folds, or a training fold holding one class only.
    """
    y = np.asarray(labels, dtype=np.int64)
    _check_folds(folds)
    probs = np.zeros(len(texts))
    for f in sorted(set(folds.tolist())):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        if np.unique(y[tr]).size < 2:
            raise ValueError(
                "a training fold holds one class only; the file needs more rows of each label"
            )
        probs[te] = tfidf_logreg_pointwise(
            [texts[int(i)] for i in tr], y[tr], [texts[int(i)] for i in te], seed
        )
    return probs


def cross_fit_pairwise(
    chosen: Sequence[str], rejected: Sequence[str], folds: np.ndarray, seed: int = 0
) -> np.ndarray:
    """(n, 2) float64 scores (chosen, rejected) of every pair, from models fitted on the other
    folds (see ``tfidf_logreg_pairwise``).

    Raises:
        ValueError: fewer than 2 folds.
    """
    _check_folds(folds)
    out = np.zeros((len(chosen), 2))
    for f in sorted(set(folds.tolist())):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        c, r = tfidf_logreg_pairwise(
            [chosen[int(i)] for i in tr],
            [rejected[int(i)] for i in tr],
            [chosen[int(i)] for i in te],
            [rejected[int(i)] for i in te],
            seed=seed,
        )
        out[te, 0], out[te, 1] = c, r
    return out


def _check_folds(folds: np.ndarray) -> None:
    if len(set(folds.tolist())) < 2:
        raise ValueError("needs rows with at least 2 different prompts")


def point_text(r: PointRecord) -> str:
    """The baseline's text of a labelled row: the prompt, plus ``"\n" + response`` if any."""
    return r.prompt if r.response is None else f"{r.prompt}\n{r.response}"


def holdout_baseline(
    data: TrainData, calibration: CalibrationSettings, seed: int, notes: list[str]
) -> dict[str, Any] | None:
    """The baseline's dev metrics on a training run's split (binary pointwise, or pairwise).

    Pointwise: ``pointwise_metrics`` at the threshold the calibration settings choose on the
    baseline's own dev probabilities (the model's rule); pairwise: ``pairwise_metrics``.
    None, with the reason appended to ``notes``, when the data does not allow it.
    """
    from safeladder.training.calibration import select_threshold
    from safeladder.training.common import PairRecord
    from safeladder.training.metrics import pairwise_metrics, pointwise_metrics

    try:
        if data.train and isinstance(data.train[0], PairRecord):
            # Prompt and reply are joined without a separator here (unlike point_text); kept
            # so that saved metrics reproduce.
            tc, trj = (
                [p.prompt + p.chosen for p in data.train],
                [p.prompt + p.rejected for p in data.train],
            )
            dc, drj = (
                [p.prompt + p.chosen for p in data.dev],
                [p.prompt + p.rejected for p in data.dev],
            )
            bc, br = tfidf_logreg_pairwise(tc, trj, dc, drj, seed=seed)
            return pairwise_metrics(bc, br)
        if len(data.labels) != 2 or any(isinstance(r.label, tuple) for r in data.train):
            notes.append("baseline: TF-IDF baseline skipped (binary single-label data only)")
            return None
        ytr = [int(r.label) for r in data.train]
        ydv = np.array([int(r.label) for r in data.dev])
        p = tfidf_logreg_pointwise(
            [point_text(r) for r in data.train], ytr, [point_text(r) for r in data.dev], seed=seed
        )
        t = select_threshold(
            ydv, p, calibration.threshold, calibration.target_fpr, calibration.target_fnr
        )
        return pointwise_metrics(ydv, p, threshold=float(t["threshold"]))
    except ValueError as exc:
        notes.append(f"baseline: skipped ({exc})")
        return None


__all__ = [
    "BASELINE_NAME",
    "CROSS_FIT",
    "CV_FOLDS",
    "cross_fit_pairwise",
    "cross_fit_pointwise",
    "grouped_folds",
    "holdout_baseline",
    "point_text",
    "tfidf_logreg_pairwise",
    "tfidf_logreg_pointwise",
]
