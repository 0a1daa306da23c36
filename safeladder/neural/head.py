"""The embedding head format: ``safeladder_head.json`` (+ ``.npz``), loaded into a numpy ``Head``.

A head maps the features of a row (``FeatureSpec``: blocks of sentence embeddings) to one logit:
one layer is a logistic head (``logit = x @ coef + intercept``), several an MLP (layer ``i``:
``h = act(h @ W_i + b_i)`` with ``W_i`` of shape ``(in, out)``, sklearn's ``coefs_`` layout;
the last layer has one output and no activation). ``Head.scores`` applies the mode's output:
``pointwise`` → P(good class) = ``sigmoid(±logit)`` in [0, 1]; ``pairwise`` → the raw
Bradley–Terry reward.

- ``save_head(directory, layers, ...)`` writes the directory (schema below), recording the
  encoder's fingerprint, width and ``max_seq_length`` so a mismatching encoder is refused later;
- ``load_head(directory)`` reads and validates it (errors name the file);
- ``head_from_sklearn(estimator)`` turns a fitted binary ``LogisticRegression`` /
  ``MLPClassifier`` into ``layers``.

The head directory:

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

Example::

    save_head("heads/safety", head_from_sklearn(clf), features=spec, good_class=0)
    load_head("heads/safety").scores(X)      # (n,) float64
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from safeladder.config import format_validation_error
from safeladder.errors import ConfigError
from safeladder.neural.activations import sigmoid
from safeladder.neural.checkpoints import checkpoint_fingerprint
from safeladder.neural.encoder import FeatureSpec, declared_max_seq_length, resolve_encoder
from safeladder.neural.packaged import PACKAGED_MINILM

__all__ = [
    "HEAD_FILE",
    "WEIGHTS_FILE",
    "Activation",
    "EncoderInfo",
    "FeatureSpec",
    "Head",
    "HeadSpec",
    "LogisticWeights",
    "head_from_sklearn",
    "load_head",
    "save_head",
]

HEAD_FILE = "safeladder_head.json"
WEIGHTS_FILE = "safeladder_head.npz"

Activation = Literal["relu", "tanh", "logistic", "identity"]


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
    "logistic": sigmoid,
    "identity": lambda h: h,
}


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
        return sigmoid(z if self.spec.good_class == 1 else -z)


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
        max_seq_length=declared_max_seq_length(enc_path),
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
