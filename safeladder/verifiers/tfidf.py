"""``tfidf``: a TF-IDF + logistic-regression text classifier or reward, scored on the CPU.

What it checks: whatever the model was trained for; the shipped ``safety_tfidf`` preset scores
P(safe) of a response, ``value_tfidf`` a harmlessness preference reward. Features are word
uni/bi-grams and character 3–5-grams inside word boundaries (``char_wb``), each with sublinear
TF, IDF and L2 norm (scikit-learn's ``TfidfVectorizer``, rebuilt from the saved vocabulary and
IDF, so the features are exactly the fitted ones); the logit is ``features · coef + intercept``
(a temperature fitted on the dev split is already folded into ``coef`` / ``intercept``), and the
score is the probability of the good class (pairwise models: a reward, below).

Artifacts (a directory, written by ``save_tfidf`` or ``safeladder train`` with ``kind: tfidf``):
``tfidf.json`` (format tag, view, vectorizer settings, the two vocabularies in column order,
labels, good class, decision threshold, calibration and fit metadata) and ``weights.safetensors``
(float64 ``idf_word``, ``idf_char``, ``coef``, ``intercept``). Nothing is unpickled: loading
reads JSON and tensors, so a reward never runs code from a file.

Inputs: ``Sample.completion`` (with ``judge_final_answer``: only the text after its last
``</think>``); ``Sample.prompt`` too when the model's view is ``pair`` (the text is ``prompt +
"\\n" + response``, as ``safeladder.training.baseline`` builds it; a chat prompt's text is
``prompt_text(prompt)``); only ``Sample.prompt`` when the view is ``prompt`` (a judge of the
request, e.g. the shipped ``request_harm_tfidf``: the reply is not read, so every reply to the same
prompt gets the same score). ``reference`` and ``meta`` are not read.

Each part is cut to its first ``max_chars`` characters before featurising (a 15 MB reply costs
what ``max_chars`` costs; ``details[i]["truncated"]`` says so). Lone surrogates are ordinary
characters to the analyzers. A text that has no n-gram of the vocabulary abstains (its score
would be the intercept alone, which says nothing about the text): the empty reply, a script the
model never saw.

Two model modes (``tfidf.json`` ``mode``; files without it are pointwise):

- ``pointwise`` (a binary classifier). Score range: [0, 1], the probability of the good class
  (higher = safer for ``good_label: "0"``). ``details[i]``: ``logit`` (of label 1),
  ``truncated``, ``flagged`` (score <= the saved ``score_threshold``, when one is saved;
  ``safeladder eval`` takes the same threshold by default, from ``verifier.calibration.meta``).
- ``pairwise`` (a linear Bradley–Terry reward, ``P(a ≻ b) = sigmoid(r(a) − r(b))`` with
  ``r = features · coef``, no intercept). As the ``reward_model`` verifier with ``normalize:
  saved``: the raw reward is standardized with the mean / std of the training replies' rewards
  (``tfidf.json`` ``reward_stats``), then ``squash: sigmoid`` (default) maps it into (0, 1)
  (0.5 = the training replies' average), ``squash: none`` leaves it unbounded. Compare replies
  to the same prompt. ``details[i]``: ``raw`` (the reward before standardizing), ``truncated``.

Example config::

    {"type": "tfidf", "path": "safeladder/defaults/safety_tfidf"}
    # or the presets: build_verifier("safety_tfidf"), build_verifier("value_tfidf")
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from safeladder.answers import text_after_think
from safeladder.errors import ConfigError
from safeladder.types import Sample, SampleBatch, ScoreBatch, prompt_text
from safeladder.verifiers.base import RowResult, RuleVerifier, Verifier, VerifierConfig, abstain

TFIDF_FILE = "tfidf.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "safeladder-tfidf"
FORMAT_VERSION = 1
#: ``tfidf.json`` ``mode`` values (a file without one is ``pointwise``).
MODES = ("pointwise", "pairwise")
#: Characters of each text part featurised by default (a long reply's opening decides).
DEFAULT_MAX_CHARS = 20_000
#: The settings of the two vectorizers that are saved and rebuilt (others are sklearn defaults).
_VEC_KEYS = ("analyzer", "ngram_range", "lowercase", "token_pattern", "sublinear_tf", "norm")

View = Literal["response", "pair", "prompt"]
VIEWS = ("response", "pair", "prompt")


def view_text(view: str, prompt: str, response: str) -> str:
    """The text a model of ``view`` featurises (``pair``: ``prompt + "\\n" + response``)."""
    if view == "response":
        return response
    if view == "prompt":
        return prompt
    return f"{prompt}\n{response}"


class TfidfConfig(VerifierConfig):
    """Config of a TF-IDF + logistic-regression verifier (see the module docstring)."""

    type: Literal["tfidf"] = "tfidf"
    path: str = Field(description=f"Directory holding {TFIDF_FILE} and {WEIGHTS_FILE}.")
    judge_final_answer: bool = Field(
        default=False, description="Score only the completion's text after its last </think>."
    )
    max_chars: int = Field(
        default=DEFAULT_MAX_CHARS,
        ge=1,
        le=10_000_000,
        description="Characters of the prompt and of the completion featurised (the rest is cut).",
    )
    squash: Literal["sigmoid", "none"] = Field(
        default="sigmoid",
        description=(
            "Pairwise (reward) models: 'sigmoid' maps the standardized reward into (0, 1); "
            "'none' leaves it standardized, unbounded. Pointwise models score P(good): sigmoid."
        ),
    )

    @field_validator("path")
    @classmethod
    def _path_set(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path is empty; set it to a directory written by save_tfidf")
        return value

    def build(self) -> Verifier:
        return TfidfVerifier(self)


# ------------------------------------------------------------------------------ the artifacts


class TfidfModel:
    """A loaded TF-IDF + logistic-regression model: ``logits(texts)`` and ``scores(texts)``."""

    def __init__(self, spec: dict[str, Any], tensors: dict[str, np.ndarray], digest: str):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.spec = spec
        self.digest = digest
        self.view: str = spec["view"]
        self.mode: str = spec.get("mode", "pointwise")
        if self.mode not in MODES:
            raise ConfigError(f"{TFIDF_FILE}: mode {self.mode!r} is not one of {MODES}")
        self.good_class: int = int(spec["good_class"])
        #: Pairwise: ``(mean, std)`` of the training replies' raw rewards (std > 0).
        self.reward_stats: tuple[float, float] | None = None
        if self.mode == "pairwise":
            st = spec.get("reward_stats") or {}
            mean, std = float(st.get("mean", np.nan)), float(st.get("std", np.nan))
            if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
                raise ConfigError(
                    f"{TFIDF_FILE}: a pairwise model needs reward_stats mean, std > 0"
                )
            self.reward_stats = (mean, std)
        self.vectorizers = []
        for part in ("word", "char"):
            s = spec[part]
            vocab = {term: i for i, term in enumerate(s["vocabulary"])}
            idf = np.asarray(tensors[f"idf_{part}"], dtype=np.float64)
            if len(vocab) != len(s["vocabulary"]) or idf.shape != (len(vocab),):
                raise ConfigError(f"{TFIDF_FILE}: {part} vocabulary and idf_{part} do not match")
            kw = {k: s[k] for k in _VEC_KEYS}
            kw["ngram_range"] = tuple(kw["ngram_range"])
            vec = TfidfVectorizer(**kw, vocabulary=vocab, dtype=np.float64)
            vec.idf_ = idf
            self.vectorizers.append(vec)
        self.coef = np.asarray(tensors["coef"], dtype=np.float64).reshape(-1)
        self.intercept = float(np.asarray(tensors["intercept"], dtype=np.float64).reshape(-1)[0])
        width = sum(len(v.vocabulary) for v in self.vectorizers)
        if self.coef.shape != (width,):
            raise ConfigError(f"{WEIGHTS_FILE}: coef has {self.coef.size} weights for {width}")
        thr = spec.get("threshold") or {}
        self.score_threshold: float | None = thr.get("score_threshold")

    def features(self, texts: Sequence[str]) -> Any:
        """``(n, width)`` CSR float64 features: the word block, then the char block."""
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for v in self.vectorizers], format="csr")

    def logits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(logit of label 1, number of non-zero features)`` per text."""
        x = self.features(list(texts))
        return np.asarray(x @ self.coef, dtype=np.float64) + self.intercept, np.diff(x.indptr)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """The default score per text: pointwise P(good class) (sklearn's
        ``predict_proba[:, good]``); pairwise the sigmoid of the standardized reward."""
        return self.score_logits(self.logits(texts)[0])

    def score_logits(self, z: np.ndarray, squash: str = "sigmoid") -> np.ndarray:
        """Scores from ``logits`` (pointwise: P(good); pairwise: standardized, squashed)."""
        from scipy.special import expit

        if self.reward_stats is not None:
            r = (z - self.reward_stats[0]) / self.reward_stats[1]
            return expit(r) if squash == "sigmoid" else r
        p1 = expit(z)
        return p1 if self.good_class == 1 else 1.0 - p1


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def load_tfidf(path: str | Path) -> TfidfModel:
    """Read a model directory (``tfidf.json`` + ``weights.safetensors``); no pickle involved.

    Raises:
        ConfigError: the directory, a file or its format is missing or wrong.
    """
    import hashlib

    d = Path(path)
    spec_path, weights = d / TFIDF_FILE, d / WEIGHTS_FILE
    for f in (spec_path, weights):
        if not f.is_file():
            raise ConfigError(f"path: {str(d)!r} holds no {f.name} (write it with save_tfidf)")
    raw = spec_path.read_bytes()
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{spec_path}: not JSON: {exc}") from exc
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ConfigError(f"{spec_path}: not a {FORMAT} file")
    if spec.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{spec_path}: format version {spec.get('version')!r} unsupported")
    wbytes = weights.read_bytes()
    digest = hashlib.sha256(raw + wbytes).hexdigest()[:16]
    try:
        tensors = _read_safetensors(weights)
        return TfidfModel(spec, tensors, digest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{d}: malformed tfidf model: {type(exc).__name__}: {exc}") from exc


def save_tfidf(
    path: str | Path,
    word: Any,
    char: Any,
    clf: Any,
    *,
    view: str,
    labels: Sequence[str] = ("0", "1"),
    good_class: int = 0,
    threshold: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    coef: np.ndarray | None = None,
    intercept: float | None = None,
    mode: str = "pointwise",
    reward_stats: dict[str, Any] | None = None,
) -> Path:
    """Write fitted word / char ``TfidfVectorizer``s and a binary ``LogisticRegression``.

    ``coef`` / ``intercept`` replace the classifier's (a folded temperature); the logit is that
    of ``clf.classes_[1]``, which must be label 1. ``mode: pairwise``: ``clf`` is the
    no-intercept Bradley–Terry fit on feature differences, and ``reward_stats``
    (``{"mean", "std", "count"}`` of the training replies' rewards) is required.
    """
    from safetensors.numpy import save_file

    if view not in VIEWS:
        raise ConfigError(f"view: {view!r} is not one of {VIEWS}")
    if mode not in MODES:
        raise ConfigError(f"mode: {mode!r} is not one of {MODES}")
    if (mode == "pairwise") != (reward_stats is not None):
        raise ConfigError("reward_stats: give them exactly for a pairwise model")
    if clf is not None and list(np.asarray(clf.classes_).tolist()) != [0, 1]:
        raise ConfigError(f"the classifier's classes are {clf.classes_}, not [0, 1]")
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "view": view}
    spec["mode"] = mode
    if reward_stats is not None:
        spec["reward_stats"] = dict(reward_stats)
    tensors: dict[str, np.ndarray] = {}
    for part, vec in (("word", word), ("char", char)):
        vocab = vec.vocabulary_
        terms = [""] * len(vocab)
        for term, i in vocab.items():
            terms[i] = term
        params = vec.get_params()
        spec[part] = {k: params[k] for k in _VEC_KEYS} | {"vocabulary": terms}
        spec[part]["ngram_range"] = list(params["ngram_range"])
        tensors[f"idf_{part}"] = np.ascontiguousarray(vec.idf_, dtype=np.float64)
    w = np.asarray(clf.coef_ if coef is None else coef, dtype=np.float64).reshape(-1)
    b = float(np.asarray(clf.intercept_).reshape(-1)[0]) if intercept is None else intercept
    tensors["coef"] = np.ascontiguousarray(w)
    tensors["intercept"] = np.array([b], dtype=np.float64)
    spec |= {
        "labels": [str(x) for x in labels],
        "good_class": int(good_class),
        "threshold": threshold,
        "calibration": calibration,
        "meta": {**(meta or {}), "sklearn": _sklearn_version()},
    }
    from safeladder.jsonsafe import jsonable

    tmp = d / f".{TFIDF_FILE}.tmp"
    tmp.write_text(json.dumps(jsonable(spec), ensure_ascii=True, separators=(",", ":")))
    save_file(tensors, str(d / WEIGHTS_FILE))
    tmp.replace(d / TFIDF_FILE)
    return d


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


# ------------------------------------------------------------------------------ the verifier


@dataclass(frozen=True)
class SavedDecision:
    """The decision threshold saved with a model, as ``meta`` (the calibration-file shape)."""

    meta: dict[str, Any]


class TfidfVerifier(RuleVerifier):
    """Scores rows with the saved TF-IDF + logistic regression; see the module docstring."""

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: TfidfConfig):
        super().__init__(config)
        self.cfg = config
        self.model = load_tfidf(config.path)
        if self.model.mode == "pointwise" and config.squash != "sigmoid":
            raise ConfigError(
                f"squash: {config.squash!r} applies to pairwise (reward) models; "
                f"{config.path!r} is a pointwise classifier scoring P(good)"
            )
        if config.squash == "none":
            self.score_range = (-np.inf, np.inf)  # type: ignore[misc]
        t = self.model.score_threshold
        #: The saved decision, where ``safeladder eval`` reads a verifier's training-time
        #: threshold (``calibration.meta``; the temperature itself is already in the weights).
        self.calibration = (
            None
            if t is None
            else SavedDecision(
                {
                    "score_threshold": float(t),
                    "score_predicts_positive": "below"
                    if self.model.good_class == 0
                    else "at_or_above",
                }
            )
        )

    def _fingerprint_extra(self) -> str:
        return f"tfidf={self.model.digest}"

    def _text(self, sample: Sample) -> tuple[str, bool]:
        m = self.cfg.max_chars
        if self.model.view == "prompt":
            prompt = prompt_text(sample.prompt)
            return prompt[:m], len(prompt) > m
        response = sample.completion
        if self.cfg.judge_final_answer:
            response = text_after_think(response)
        cut = len(response) > m
        response = response[:m]
        if self.model.view == "response":
            return response, cut
        prompt = prompt_text(sample.prompt)
        cut = cut or len(prompt) > m
        return view_text("pair", prompt[:m], response), cut

    def score_row(self, sample: Sample) -> RowResult:
        return self._rows([sample])[0]

    def _rows(self, samples: Sequence[Sample]) -> list[RowResult]:
        """All rows featurised in one call (rows are independent: the same scores either way)."""
        prepared = [self._text(s) for s in samples]
        if not prepared:
            return []
        z, nnz = self.model.logits([t for t, _ in prepared])
        scores = self.model.score_logits(z, self.cfg.squash)
        key = "raw" if self.model.mode == "pairwise" else "logit"
        t = self.model.score_threshold
        out: list[RowResult] = []
        for (_, cut), logit, n, score in zip(prepared, z, nnz, scores, strict=True):
            if int(n) == 0:
                out.append(
                    abstain("no n-gram of the model's vocabulary in the text", truncated=cut)
                )
                continue
            detail: dict[str, Any] = {key: float(logit), "truncated": cut}
            if t is not None:
                detail["flagged"] = bool(score <= t)
            out.append((float(score), "ok", detail))
        return out

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        samples = list(batch)
        try:
            rows = self._rows(samples)
        except ConfigError:
            raise
        except Exception:  # one bad row: score row by row, each under the on_error policy
            rows = [self._guard(i, self.score_row, s) for i, s in enumerate(samples)]
        return ScoreBatch.from_rows(self.name, rows)


__all__ = [
    "FORMAT",
    "TFIDF_FILE",
    "VIEWS",
    "WEIGHTS_FILE",
    "SavedDecision",
    "TfidfConfig",
    "TfidfModel",
    "TfidfVerifier",
    "load_tfidf",
    "save_tfidf",
    "view_text",
]
