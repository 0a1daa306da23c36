"""``tfidf`` training kind: TF-IDF features + logistic regression, fitted in seconds on one CPU.

The kind behind the ``tfidf`` verifier (``safeladder.verifiers.tfidf``): word uni/bi-grams and
character 3–5-grams inside word boundaries (``char_wb``), sublinear TF, IDF, L2 norm, each block
capped at its ``max_*_features`` most frequent n-grams, and a liblinear ``LogisticRegression``
on the two blocks side by side — the ``tfidf_logreg`` baseline of every run, made a verifier.

``view`` says what text is featurised: ``response`` (the reply alone), ``pair`` (``prompt +
"\\n" + response``) or ``prompt`` (the request alone: a judge of what was asked, trained on
prompt-only rows, e.g. ``configs/train/request_harm_tfidf.yaml``). The cross-distribution
benchmark (``benchmarks/bench_safety_matrix.py``) found ``response`` generalises better across
safety data sets: the prompt's words describe the request, and whether a reply is harmful is in
the reply. Prompt-only rows (no response) cannot be trained with ``view: response``.

Calibration: the runner fits a temperature on the dev logits; ``fold_calibration`` divides the
saved ``coef`` / ``intercept`` by it (isotonic cannot be folded and is refused at config time).
The decision threshold saved with the model (``tfidf.json`` ``threshold.score_threshold``, on
the verifier's score P(good); a score at or below it flags) is

- ``threshold: {from: dev}`` (default): the one the runner chose on the dev split by
  ``calibration.threshold`` (``max_f1`` by default, ``target_fpr`` or ``target_fnr``);
- ``threshold: {from: fixed, value: V}``: ``V`` as given; ``metrics.json``'s dev metrics stay at
  the dev-chosen threshold, and ``tfidf.json`` records the dev F1 / FPR at ``V`` beside it.

Either way the verifier's ``flagged`` detail and ``safeladder eval``'s default threshold are the
saved one.

The dev split is the runner's: a grouped split of all the train sources (so it mixes them), or
the ``data.dev`` sources, which may be several files.

``mode: pairwise`` trains a reward on preference pairs (prompt, chosen, rejected) instead: a
linear Bradley–Terry model ``P(c ≻ r) = sigmoid(w · (φ(c) − φ(r)))``, fitted as a liblinear
logistic regression without intercept on the feature differences, each pair entered both ways
(``φ(c) − φ(r)`` → 1 and ``φ(r) − φ(c)`` → 0, so the fit is symmetric); the vectorizers are
fitted on the training replies (chosen and rejected; with ``view: pair`` each with its prompt).
A reply's reward is ``w · φ(reply)``; the mean / std of the training replies' rewards are saved
in ``tfidf.json`` (``reward_stats``), and the verifier scores ``sigmoid((r − mean) / std)``, as
the ``reward_model`` verifier does with ``normalize: saved, squash: sigmoid``. The runner reports
the dev pairwise accuracy (``metrics.json``); there is no calibration or threshold, so
``threshold``, ``good_label`` and ``class_weight`` do not apply (the first and last are refused),
and the pairs' ``margin`` is not used. The dev split is the runner's grouped split (by prompt).

Example (YAML)::

    kind: tfidf
    view: response
    data: {train: [{path: ../../../shared/data/gptfuzz_labeled_responses.jsonl.gz}]}
    good_label: "0"
    output_dir: runs/safety-tfidf

    kind: tfidf            # a preference reward (configs/train/value_tfidf.yaml)
    mode: pairwise
    view: response
    data: {train: [{path: ../../../shared/data/hh_rlhf_harmless_pref.jsonl}]}
    output_dir: runs/value-tfidf
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from safeladder.errors import ConfigError, InputError
from safeladder.training.common import (
    ModelSource,
    PairRecord,
    PointRecord,
    TrainConfigBase,
    TrainData,
    TrainOutcome,
)
from safeladder.verifiers.tfidf import load_tfidf, save_tfidf, view_text

#: dev (logits, labels) of a run, by output directory, for ``fold_calibration``'s fixed-threshold
#: dev figures (the runner hands it the calibration only).
_DEV: dict[str, tuple[np.ndarray, np.ndarray]] = {}


class ThresholdChoice(BaseModel):
    """Where the saved decision threshold comes from (on the score, P(good))."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: Literal["dev", "fixed"] = Field(
        default="dev",
        alias="from",
        description="dev: the runner's dev-split choice (calibration.threshold); fixed: value.",
    )
    value: float | None = Field(
        default=None, ge=0, le=1, description="from: fixed — a score at or below it flags."
    )

    @model_validator(mode="after")
    def _value_iff_fixed(self) -> ThresholdChoice:
        if (self.from_ == "fixed") != (self.value is not None):
            raise ValueError("threshold: give value exactly when from is 'fixed'")
        return self


class TfidfTrainConfig(TrainConfigBase):
    """Config of the ``tfidf`` kind (see the module docstring)."""

    kind: Literal["tfidf"] = "tfidf"
    model: ModelSource | None = Field(  # type: ignore[assignment]
        default=None, description="Unused: the kind starts from no pretrained model."
    )
    mode: Literal["pointwise", "pairwise"] = Field(
        default="pointwise",
        description="Binary classifier of rows, or Bradley-Terry reward on (chosen, rejected).",
    )
    view: Literal["response", "pair", "prompt"] = Field(
        default="response",
        description="Text featurised: the response, prompt + response, or the prompt alone.",
    )
    word_ngrams: tuple[int, int] = Field(default=(1, 2), description="Word n-gram range.")
    char_ngrams: tuple[int, int] = Field(default=(3, 5), description="char_wb n-gram range.")
    max_word_features: int = Field(
        default=50_000, ge=1, description="Most frequent word n-grams kept."
    )
    max_char_features: int = Field(
        default=50_000, ge=1, description="Most frequent char n-grams kept."
    )
    min_df: int = Field(default=1, ge=1, description="Drop n-grams seen in fewer training rows.")
    C: float = Field(default=1.0, gt=0, description="Inverse L2 strength of the regression.")
    class_weight: Literal["balanced"] | None = Field(
        default=None, description="'balanced' weighs classes by inverse frequency."
    )
    max_iter: int = Field(default=1000, ge=1, description="Solver iterations.")
    good_label: str | int = Field(
        default="0", description="The class whose probability is the score (name or index)."
    )
    threshold: ThresholdChoice = Field(
        default_factory=ThresholdChoice, description="The decision threshold saved with it."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TfidfTrainConfig:
        if self.model is not None:
            raise ValueError("model: the tfidf kind trains from scratch; leave model out")
        if self.calibration.method == "isotonic":
            raise ValueError(
                "calibration.method: tfidf folds a temperature into its weights; isotonic "
                "cannot be folded (use temperature or none)"
            )
        if self.mode == "pairwise" and self.view == "prompt":
            raise ValueError(
                "view: 'prompt' cannot rank a pair (chosen and rejected share their prompt); "
                "use response or pair"
            )
        if self.mode == "pairwise" and self.class_weight is not None:
            raise ValueError("class_weight: applies to mode: pointwise (pairs have no classes)")
        if self.mode == "pairwise" and self.threshold.from_ != "dev":
            raise ValueError("threshold: mode: pairwise saves a reward, no decision threshold")
        for name in ("word_ngrams", "char_ngrams"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name}: need 1 <= low <= high, got {(lo, hi)}")
        return self


def _texts(rows: list[PointRecord], view: str) -> list[str]:
    out = []
    for r in rows:
        if r.response is None and view == "response":
            raise ConfigError(
                f"view: 'response' featurises the reply, but {r.source} row {r.row} has none "
                "(prompt-only); give responses or use view: pair"
            )
        out.append(view_text(view, r.prompt, r.response or ""))
    return out


def _good_class(cfg: TfidfTrainConfig, labels: list[str]) -> int:
    g = cfg.good_label
    if isinstance(g, str) and g in labels:
        return labels.index(g)
    if (isinstance(g, int) or (isinstance(g, str) and g.isdigit())) and int(g) in (0, 1):
        return int(g)
    raise ConfigError(f"good_label: {g!r} is not one of the classes {labels}")


def _vectorizers(cfg: TfidfTrainConfig) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    common = {"sublinear_tf": True, "min_df": cfg.min_df, "dtype": np.float64}
    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=cfg.word_ngrams,
        max_features=cfg.max_word_features,
        **common,
    )
    char = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=cfg.char_ngrams,
        max_features=cfg.max_char_features,
        **common,
    )
    return word, char


def train(
    cfg: TfidfTrainConfig, data: TrainData, out_dir: Path, *, progress: bool = True
) -> TrainOutcome:
    """Fit the vectorizers and the regression on the train split, save, score the dev split."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    if cfg.mode == "pairwise":
        return _train_pairwise(cfg, data, out_dir, t0)
    if len(data.labels) != 2 or any(isinstance(r.label, tuple) for r in data.train):
        raise ConfigError(f"kind: tfidf is a binary classifier; the data has {data.labels}")
    good = _good_class(cfg, list(data.labels))
    x_train = _texts(data.train, cfg.view)
    y = np.array([r.label for r in data.train], dtype=np.int64)
    if np.unique(y).size < 2:
        raise ConfigError("data: the training split holds one class only; tfidf needs both")
    word, char = _vectorizers(cfg)
    feats = hstack([word.fit_transform(x_train), char.fit_transform(x_train)], format="csr")
    clf = LogisticRegression(
        C=cfg.C,
        solver="liblinear",
        max_iter=cfg.max_iter,
        class_weight=cfg.class_weight,
        random_state=cfg.train.seed,
    ).fit(feats, y)
    fit_s = time.perf_counter() - t0
    meta = {
        "train_rows": len(data.train),
        "dev_rows": len(data.dev),
        "fit_seconds": fit_s,
        "word_features": len(word.vocabulary_),
        "char_features": len(char.vocabulary_),
        "C": cfg.C,
        "class_weight": cfg.class_weight,
    }
    save_tfidf(
        out_dir, word, char, clf, view=cfg.view, labels=data.labels, good_class=good, meta=meta
    )
    model = load_tfidf(out_dir)  # the saved model, exactly as the verifier will run it
    z, _ = model.logits(_texts(data.dev, cfg.view))
    y_dev = np.array([r.label for r in data.dev], dtype=np.int64)
    _DEV[str(Path(out_dir).resolve())] = (z, y_dev)
    return TrainOutcome(
        verifier={"type": "tfidf"},
        dev_logits=z.reshape(-1, 1),
        dev_labels=y_dev,
        extra={"features": {"word": meta["word_features"], "char": meta["char_features"]}},
        seconds=time.perf_counter() - t0,
        model_dir=out_dir,
    )


def _train_pairwise(
    cfg: TfidfTrainConfig, data: TrainData, out_dir: Path, t0: float
) -> TrainOutcome:
    """Bradley–Terry on feature differences (see the module docstring); rewards of the saved
    model: ``dev_chosen`` / ``dev_rejected`` ``(n_dev,)``, ``train_rewards`` ``(2 n_train,)``."""
    from scipy.sparse import hstack, vstack
    from sklearn.linear_model import LogisticRegression

    for r in [*data.train, *data.dev]:
        if not isinstance(r, PairRecord):
            raise InputError(
                f"{getattr(r, 'source', '?')}:{getattr(r, 'row', '?')}: mode: pairwise needs "
                "preference pairs (prompt, chosen, rejected)",
                row=getattr(r, "row", None),
            )
    if not data.train:
        raise ConfigError("data: the training split holds no pairs")
    n = len(data.train)
    texts = _pair_texts(data.train, cfg.view, "chosen") + _pair_texts(
        data.train, cfg.view, "rejected"
    )
    word, char = _vectorizers(cfg)
    feats = hstack([word.fit_transform(texts), char.fit_transform(texts)], format="csr")
    diff = feats[:n] - feats[n:]
    x = vstack([diff, -diff], format="csr")
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    clf = LogisticRegression(
        C=cfg.C,
        solver="liblinear",
        fit_intercept=False,
        max_iter=cfg.max_iter,
        random_state=cfg.train.seed,
    ).fit(x, y)
    fit_s = time.perf_counter() - t0
    train_rewards = np.asarray(feats @ clf.coef_.reshape(-1), dtype=np.float64)
    std = float(train_rewards.std())
    stats = {"mean": float(train_rewards.mean()), "std": std if std > 0 else 1.0}
    meta = {
        "train_pairs": n,
        "dev_pairs": len(data.dev),
        "fit_seconds": fit_s,
        "word_features": len(word.vocabulary_),
        "char_features": len(char.vocabulary_),
        "C": cfg.C,
    }
    save_tfidf(
        out_dir,
        word,
        char,
        clf,
        view=cfg.view,
        labels=("rejected", "chosen"),
        good_class=1,
        meta=meta,
        intercept=0.0,
        mode="pairwise",
        reward_stats={**stats, "count": int(train_rewards.size)},
    )
    model = load_tfidf(out_dir)  # the saved model, exactly as the verifier will run it
    zc, _ = model.logits(_pair_texts(data.dev, cfg.view, "chosen"))
    zr, _ = model.logits(_pair_texts(data.dev, cfg.view, "rejected"))
    return TrainOutcome(
        verifier={"type": "tfidf"},
        dev_chosen=zc,
        dev_rejected=zr,
        train_rewards=train_rewards,
        extra={"features": {"word": meta["word_features"], "char": meta["char_features"]}},
        seconds=time.perf_counter() - t0,
        model_dir=out_dir,
    )


def _pair_texts(rows: list[PairRecord], view: str, side: str) -> list[str]:
    return [view_text(view, r.prompt, getattr(r, side)) for r in rows]


def _fixed_figures(z: np.ndarray, y: np.ndarray, t: float, good: int, temp: float) -> dict:
    from scipy.special import expit

    p1 = expit(z / temp)
    score = p1 if good == 1 else 1.0 - p1
    flag = score <= t
    bad = y != good
    tp = int(np.sum(flag & bad))
    fp = int(np.sum(flag & ~bad))
    fn = int(np.sum(~flag & bad))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"dev_f1": f1, "dev_fpr": fp / max(1, int(np.sum(~bad)))}


def fold_calibration(cfg: TfidfTrainConfig, out_dir: Path, calibration: dict[str, Any]) -> None:
    """Fold the fitted temperature into the saved weights and save the decision threshold
    (pointwise only: the runner calibrates no pairwise run)."""
    if calibration.get("kind") != "temperature":
        raise ConfigError(
            f"calibration: tfidf can fold a temperature only, got {calibration.get('kind')!r}"
        )
    temp = float(calibration["temperature"])
    meta = dict(calibration.get("meta") or {})
    model = load_tfidf(out_dir)
    good = model.good_class
    if cfg.threshold.from_ == "fixed":
        assert cfg.threshold.value is not None
        thr: dict[str, Any] = {"from": "fixed", "score_threshold": float(cfg.threshold.value)}
        dev = _DEV.pop(str(Path(out_dir).resolve()), None)
        if dev is not None:
            thr |= _fixed_figures(dev[0], dev[1], thr["score_threshold"], good, temp)
    else:
        st = meta.get("score_threshold")
        thr = {
            "from": "dev",
            "rule": meta.get("threshold_rule"),
            "score_threshold": st,
            "dev_f1": meta.get("threshold_f1"),
            "dev_fpr": meta.get("threshold_fpr"),
        }
        _DEV.pop(str(Path(out_dir).resolve()), None)
    thr["flags"] = "score <= score_threshold"
    spec = model.spec
    word_vec, char_vec = model.vectorizers
    # save_tfidf reads vocabulary_ / idf_ / get_params(): the rebuilt vectorizers have them.
    for vec in (word_vec, char_vec):
        vec.vocabulary_ = vec.vocabulary
    clf = SimpleNamespace(classes_=np.array([0, 1]))
    save_tfidf(
        out_dir,
        word_vec,
        char_vec,
        clf,
        view=spec["view"],
        labels=spec["labels"],
        good_class=good,
        threshold=thr,
        calibration={"kind": "temperature", "temperature": temp, "meta": meta},
        meta={**spec.get("meta", {}), "temperature_folded": temp},
        coef=model.coef / temp,
        intercept=model.intercept / temp,
    )


__all__ = ["TfidfTrainConfig", "ThresholdChoice", "fold_calibration", "train"]
