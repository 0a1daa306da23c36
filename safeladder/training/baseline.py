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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BASELINE_NAME = "tfidf+logreg"

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


__all__ = ["BASELINE_NAME", "tfidf_logreg_pairwise", "tfidf_logreg_pointwise"]
