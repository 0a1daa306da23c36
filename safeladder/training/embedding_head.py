"""``embedding_head`` training kind: a frozen sentence-transformers encoder + a small trained head.

The CPU-friendly kind (minutes, not hours): every row is embedded once by the frozen encoder
(default: the packaged all-MiniLM-L6-v2) through ``Embedder.features`` — the same call the
``embedding_head`` verifier makes — and a head is fitted on the embeddings:

- ``head: logistic`` — scikit-learn ``LogisticRegression`` (L2, ``C``; ``class_weight``);
- ``head: mlp`` — scikit-learn ``MLPClassifier`` with ``early_stopping`` on a held-out 10% of
  the train rows, patience ``train.early_stopping_patience`` (default 25) (pointwise only);
- ``head: torch`` — a small torch MLP (``hidden: []`` = linear) trained with AdamW, early
  stopping on the dev loss with ``train.early_stopping_patience``.

Modes:
- ``pointwise`` (binary classes): the head's logit is that of label 1; the verifier's score is
  P(``good_label``). ``dev_logits`` is ``(n, 1)``.
- ``pairwise`` (Bradley–Terry on chosen / rejected): ``P(c ≻ r) = sigmoid(f(x_c) - f(x_r))``.
  A logistic head is a logistic regression without intercept on ``x_c - x_r`` (each pair also
  enters mirrored, ``x_r - x_c`` → 0, so the fit is symmetric); a torch head minimises
  ``-log sigmoid(f(x_c) - f(x_r) - margin)``.

Calibration: the verifier reads no calibration file, so a fitted temperature is folded into the
head (the last layer's weights and bias divided by T: ``sigmoid(z / T)``) by
``fold_calibration``; isotonic calibration cannot be folded and is refused at config time.

The output directory holds ``safeladder_head.json`` (+ ``.npz`` for MLPs), written by
``save_head``: ``{type: embedding_head, path: DIR}`` rebuilds the verifier.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from safeladder.errors import ConfigError
from safeladder.neural.encoder import PACKAGED_MINILM, Embedder, FeatureSpec
from safeladder.neural.head import head_from_sklearn, load_head, save_head
from safeladder.training.common import (
    ModelSource,
    PairRecord,
    PointRecord,
    TrainConfigBase,
    TrainData,
    TrainOutcome,
)


class TorchHeadSettings(BaseModel):
    """Optimisation of ``head: torch`` (the encoder is frozen, so these are head-sized knobs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=100, ge=1, description="Full passes over the training rows.")
    learning_rate: float = Field(default=1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(default=1e-4, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(default=64, ge=1, description="Rows (or pairs) per step.")


class EmbeddingHeadTrainConfig(TrainConfigBase):
    """Config of the ``embedding_head`` kind (see the module docstring).

    Example (YAML)::

        kind: embedding_head
        data: {train: [{path: ../../shared/data/toxigen_demonstrations.jsonl}]}
        features: {blocks: [prompt]}
        good_label: "0"
        output_dir: runs/toxigen-head
    """

    kind: Literal["embedding_head"] = "embedding_head"
    model: ModelSource = Field(
        default_factory=lambda: ModelSource(packaged="all-MiniLM-L6-v2"),
        description="The frozen encoder: packaged all-MiniLM-L6-v2 (default) or a local "
        "sentence-transformers directory (path).",
    )
    mode: Literal["pointwise", "pairwise"] = Field(
        default="pointwise", description="Binary classifier, or Bradley-Terry on pairs."
    )
    features: FeatureSpec = Field(
        default_factory=FeatureSpec,
        description="Which embeddings make the head's input (prompt-only rows: [prompt]).",
    )
    head: Literal["logistic", "mlp", "torch"] = Field(
        default="logistic", description="The head and its trainer (sklearn or torch)."
    )
    hidden: list[int] = Field(
        default_factory=lambda: [64],
        description="Hidden layer widths of head mlp / torch ([] = linear for torch).",
    )
    C: float = Field(default=1.0, gt=0, description="logistic: inverse L2 strength.")
    alpha: float = Field(default=1e-4, ge=0, description="mlp: L2 penalty.")
    max_iter: int = Field(default=1000, ge=1, description="logistic / mlp: solver iterations.")
    class_weight: Literal["balanced"] | None = Field(
        default=None,
        description="Pointwise, logistic / torch: 'balanced' weighs classes by inverse frequency.",
    )
    torch: TorchHeadSettings = Field(
        default_factory=TorchHeadSettings, description="head: torch optimisation."
    )
    good_label: str | int = Field(
        default="0",
        description="Pointwise: the class whose probability is the score (name or index), e.g. "
        "'0' = safe for the safety data where 1 = unsafe.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> EmbeddingHeadTrainConfig:
        if self.model.random_init is not None:
            raise ValueError(
                "model: embedding_head needs a trained sentence-transformers encoder "
                "(packaged or path), not random_init"
            )
        if self.calibration.method == "isotonic":
            raise ValueError(
                "calibration.method: embedding_head folds a temperature into the head; "
                "isotonic cannot be folded (use temperature or none)"
            )
        if self.mode == "pairwise" and self.head == "mlp":
            raise ValueError(
                "head: 'mlp' (sklearn) cannot train a Bradley-Terry head; use logistic or torch"
            )
        if self.class_weight is not None and (self.head == "mlp" or self.mode == "pairwise"):
            raise ValueError("class_weight: applies to pointwise logistic / torch heads only")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: layer widths must be >= 1, got {self.hidden}")
        if self.head == "mlp" and not self.hidden:
            raise ValueError("hidden: head 'mlp' needs at least one hidden layer")
        return self

    def encoder(self) -> str:
        """The ``encoder`` setting of the verifier (``PACKAGED_MINILM`` or a directory)."""
        if self.model.path is not None:
            return str(Path(self.model.path).expanduser().resolve())
        return PACKAGED_MINILM


def _progress(it: Any, on: bool, desc: str, total: int | None = None) -> Any:
    if not on:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)


def _features(
    embedder: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    spec: FeatureSpec,
    *,
    progress: bool,
    desc: str,
    chunk: int = 256,
) -> np.ndarray:
    """``(n, input_dim)`` float32 head inputs, embedded in chunks (for the progress bar)."""
    parts = []
    starts = range(0, len(prompts), chunk)
    for s in _progress(starts, progress, desc, total=len(starts)):
        x, _ = embedder.features(prompts[s : s + chunk], completions[s : s + chunk], spec)
        parts.append(x)
    return np.concatenate(parts, axis=0)


def _completions(rows: Sequence[PointRecord], spec: FeatureSpec) -> list[str]:
    # A "joined" block of a prompt-only row is just the prompt; a "completion" block would be
    # the embedding of "" for every such row, which teaches the head nothing.
    needs_completion = "completion" in spec.needs()
    out = []
    for r in rows:
        if r.response is None and needs_completion:
            raise ConfigError(
                f"features.blocks: {spec.blocks} embeds the response, but {r.source} row {r.row} "
                "has none (prompt-only); use features: {blocks: [prompt]} or give responses"
            )
        out.append(r.response or "")
    return out


def _good_class(cfg: EmbeddingHeadTrainConfig, labels: Sequence[str]) -> Literal[0, 1]:
    g = cfg.good_label
    if isinstance(g, str) and g in labels:
        idx = labels.index(g)
    elif isinstance(g, int) or (isinstance(g, str) and g.isdigit()):
        idx = int(g)
    else:
        raise ConfigError(f"good_label: {g!r} is not one of the classes {list(labels)}")
    if idx not in (0, 1):
        raise ConfigError(f"good_label: index {idx} is not a class of {list(labels)}")
    return 1 if idx == 1 else 0


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------


def _torch_mlp(in_dim: int, hidden: Sequence[int]) -> Any:
    import torch

    layers: list[Any] = []
    width = in_dim
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def _torch_layers(net: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W (in, out), b (out,))]`` of a Sequential of Linear/ReLU (nn.Linear stores W^T)."""
    import torch

    return [
        (m.weight.detach().double().numpy().T.copy(), m.bias.detach().double().numpy().copy())
        for m in net
        if isinstance(m, torch.nn.Linear)
    ]


def _train_torch(
    cfg: EmbeddingHeadTrainConfig,
    loss_fn: Any,
    train_inputs: tuple[np.ndarray, ...],
    dev_inputs: tuple[np.ndarray, ...],
    in_dim: int,
    progress: bool,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[dict[str, Any]]]:
    """Mini-batch AdamW on ``loss_fn(net, *batch)``; keeps the weights of the best dev loss."""
    import torch

    torch.manual_seed(cfg.train.seed)
    net = _torch_mlp(in_dim, cfg.hidden)
    opt = torch.optim.AdamW(
        net.parameters(), lr=cfg.torch.learning_rate, weight_decay=cfg.torch.weight_decay
    )
    tr = [torch.as_tensor(a) for a in train_inputs]
    dv = [torch.as_tensor(a) for a in dev_inputs]
    n = int(tr[0].shape[0])
    gen = torch.Generator().manual_seed(cfg.train.seed)
    patience = cfg.train.early_stopping_patience
    best, best_state, bad = float("inf"), None, 0
    history: list[dict[str, Any]] = []
    for epoch in _progress(range(1, cfg.torch.epochs + 1), progress, "head epochs"):
        net.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, cfg.torch.batch_size):
            idx = order[s : s + cfg.torch.batch_size]
            loss = loss_fn(net, *(t[idx] for t in tr))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            dev_loss = float(loss_fn(net, *dv))
        history.append({"epoch": epoch, "loss": total / n, "dev_loss": dev_loss})
        if dev_loss < best - 1e-6:
            best, bad = dev_loss, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if patience is not None and bad >= patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    return _torch_layers(net), history


def _fit_pointwise(
    cfg: EmbeddingHeadTrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    xd: np.ndarray,
    yd: np.ndarray,
    progress: bool,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[dict[str, Any]]]:
    if cfg.head == "logistic":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=cfg.max_iter).fit(
            x, y
        )
        return _sklearn_layers(clf), []
    if cfg.head == "mlp":
        from sklearn.neural_network import MLPClassifier

        mlp = MLPClassifier(
            hidden_layer_sizes=tuple(cfg.hidden),
            alpha=cfg.alpha,
            max_iter=cfg.max_iter,
            early_stopping=True,
            # sklearn's default patience (10 epochs) stops small data sets before they learn.
            n_iter_no_change=cfg.train.early_stopping_patience or 25,
            random_state=cfg.train.seed,
        ).fit(x, y)
        hist = [{"epoch": i + 1, "loss": float(v)} for i, v in enumerate(mlp.loss_curve_)]
        return _sklearn_layers(mlp), hist
    import torch

    pos = float(y.sum())
    pos_weight = None
    if cfg.class_weight == "balanced" and 0 < pos < len(y):
        pos_weight = torch.tensor((len(y) - pos) / pos)
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def loss(net: Any, xb: Any, yb: Any) -> Any:
        return bce(net(xb)[:, 0], yb)

    return _train_torch(
        cfg,
        loss,
        (x.astype(np.float32), y.astype(np.float32)),
        (xd.astype(np.float32), yd.astype(np.float32)),
        x.shape[1],
        progress,
    )


def _sklearn_layers(est: Any) -> list[tuple[np.ndarray, np.ndarray]]:

    return head_from_sklearn(est)


def _fit_pairwise(
    cfg: EmbeddingHeadTrainConfig,
    xc: np.ndarray,
    xr: np.ndarray,
    margin: np.ndarray,
    dev: tuple[np.ndarray, np.ndarray, np.ndarray],
    progress: bool,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[dict[str, Any]]]:
    if cfg.head == "logistic":
        from sklearn.linear_model import LogisticRegression

        d = xc - xr
        x = np.concatenate([d, -d])
        y = np.concatenate([np.ones(len(d)), np.zeros(len(d))])
        clf = LogisticRegression(C=cfg.C, fit_intercept=False, max_iter=cfg.max_iter).fit(x, y)
        coef = np.asarray(clf.coef_, dtype=np.float64).reshape(-1, 1)
        return [(coef, np.zeros(1))], []
    import torch

    def loss(net: Any, c: Any, r: Any, m: Any) -> Any:
        return -torch.nn.functional.logsigmoid(net(c)[:, 0] - net(r)[:, 0] - m).mean()

    return _train_torch(
        cfg,
        loss,
        (xc.astype(np.float32), xr.astype(np.float32), margin.astype(np.float32)),
        tuple(a.astype(np.float32) for a in dev),
        xc.shape[1],
        progress,
    )


# --------------------------------------------------------------------------------------------
# The kind's entry points
# --------------------------------------------------------------------------------------------


def train(
    cfg: EmbeddingHeadTrainConfig, data: TrainData, out_dir: Path, *, progress: bool = True
) -> TrainOutcome:
    """Embed the rows, fit the head, save it in ``out_dir``; see the module docstring."""
    from safeladder.neural.runtime import RuntimeConfig

    t0 = time.perf_counter()
    # Embed in float32 on every device: the head is fitted on these features, and the runner's
    # self-check rebuilds the verifier in float32 too (bf16 on CUDA moves them by ~1e-3).
    runtime = RuntimeConfig(
        device=cfg.train.device, num_threads=cfg.train.num_threads, dtype="float32"
    )
    embedder = Embedder(cfg.encoder(), runtime)
    spec = cfg.features
    verifier: dict[str, Any] = {"type": "embedding_head"}
    if cfg.encoder() != PACKAGED_MINILM:
        verifier["encoder"] = cfg.encoder()
    history: list[dict[str, Any]]
    if cfg.mode == "pointwise":
        if len(data.labels) != 2 or any(isinstance(r.label, tuple) for r in data.train):
            raise ConfigError(
                f"mode: pointwise embedding_head heads are binary; the data has classes "
                f"{data.labels}{' (multi-label)' if data.train and isinstance(data.train[0].label, tuple) else ''}"
            )
        good = _good_class(cfg, data.labels)
        feats = {}
        labels = {}
        for side in ("train", "dev"):
            rows: list[PointRecord] = getattr(data, side)
            feats[side] = _features(
                embedder,
                [r.prompt for r in rows],
                _completions(rows, spec),
                spec,
                progress=progress,
                desc=f"embedding {side}",
            )
            labels[side] = np.array([r.label for r in rows], dtype=np.int64)  # binary: ints
        if len(set(labels["train"].tolist())) < 2:
            raise ConfigError("data: the training split holds one class only; a head needs both")
        layers, history = _fit_pointwise(
            cfg, feats["train"], labels["train"], feats["dev"], labels["dev"], progress
        )
        save_head(
            out_dir,
            layers,
            mode="pointwise",
            features=spec,
            encoder=cfg.encoder(),
            good_class=good,
            metrics={"train_rows": len(data.train), "dev_rows": len(data.dev)},
        )
        head = load_head(out_dir)  # the saved head, exactly as the verifier will run it
        return TrainOutcome(
            verifier=verifier,
            dev_logits=head.logits(feats["dev"]).reshape(-1, 1),
            dev_labels=labels["dev"],
            history=history,
            seconds=time.perf_counter() - t0,
            model_dir=out_dir,
        )
    pf: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for side in ("train", "dev"):
        pairs: list[PairRecord] = getattr(data, side)
        prompts = [p.prompt for p in pairs]
        xc = _features(
            embedder,
            prompts,
            [p.chosen for p in pairs],
            spec,
            progress=progress,
            desc=f"embedding {side} chosen",
        )
        xr = _features(
            embedder,
            prompts,
            [p.rejected for p in pairs],
            spec,
            progress=progress,
            desc=f"embedding {side} rejected",
        )
        pf[side] = (xc, xr, np.array([p.margin or 0.0 for p in pairs], dtype=np.float64))
    layers, history = _fit_pairwise(cfg, *pf["train"], pf["dev"], progress)
    save_head(
        out_dir,
        layers,
        mode="pairwise",
        features=spec,
        encoder=cfg.encoder(),
        metrics={"train_pairs": len(data.train), "dev_pairs": len(data.dev)},
    )
    head = load_head(out_dir)
    return TrainOutcome(
        verifier=verifier,
        dev_chosen=head.logits(pf["dev"][0]),
        dev_rejected=head.logits(pf["dev"][1]),
        train_rewards=np.concatenate([head.logits(pf["train"][0]), head.logits(pf["train"][1])]),
        history=history,
        seconds=time.perf_counter() - t0,
        model_dir=out_dir,
    )


def fold_calibration(
    cfg: EmbeddingHeadTrainConfig, out_dir: Path, calibration: dict[str, Any]
) -> None:
    """Fold a fitted temperature into the saved head: the last layer's W and b divided by T.

    ``calibration`` is the calibration file dict (``{"kind": "temperature", "temperature": T}``);
    afterwards the head's logit is ``z / T``, so ``sigmoid`` gives the calibrated probability.
    """

    if calibration.get("kind") != "temperature":
        raise ConfigError(
            f"calibration: embedding_head can fold a temperature only, got {calibration.get('kind')!r}"
        )
    t = float(calibration["temperature"])
    head = load_head(out_dir)
    layers = [(w.copy(), b.copy()) for w, b in head.layers]
    layers[-1] = (layers[-1][0] / t, layers[-1][1] / t)
    spec = head.spec
    save_head(
        out_dir,
        layers,
        mode=spec.mode,
        features=spec.features,
        encoder=cfg.encoder(),
        good_class=spec.good_class,
        activation=spec.activation,
        metrics={**spec.metrics, "temperature": t},
    )


__all__ = ["EmbeddingHeadTrainConfig", "TorchHeadSettings", "fold_calibration", "train"]
