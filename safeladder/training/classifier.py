"""``classifier`` training kind: fine-tune a Hugging Face sequence classifier.

Rows are rendered exactly as the ``classifier`` verifier renders them at scoring time
(``safeladder.neural.rendering.encode_pairs`` with the same ``RenderConfig``), so the trained
model sees the same tokens in training and in use. Single-label heads train with (optionally
class-weighted) cross-entropy, multi-label heads with BCE (optionally ``pos_weight``); the
output is a standard HF directory (or a LoRA adapter) that ``{type: classifier, path: DIR}``
loads, with ``good_label`` / ``multi_label`` and the rendering in the verifier dict.

A vision-language ``model.path`` (Qwen2-VL / Qwen2.5-VL, LLaVA, Idefics3 / SmolVLM) trains a
score head (and optionally a merged LoRA) over the VLM on rows that may carry images, saved in
the VLM classifier format the verifier loads: ``safeladder.training.vision_classifier``.

Example (YAML)::

    kind: classifier
    model: {packaged: all-MiniLM-L6-v2}
    lora: {r: 8, alpha: 16}
    save: adapter
    data: {train: [{path: data/safety.jsonl}], labels: ["0", "1"]}
    class_weights: auto
    good_label: "0"
    train: {epochs: 1, learning_rate: 0.0002, eval_steps: 100, early_stopping_patience: 3}
    output_dir: runs/safety-clf
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from safeladder.errors import ConfigError, InputError
from safeladder.neural.rendering import RenderConfig, encode_pairs
from safeladder.numeric import sigmoid, softmax
from safeladder.training import models as hf
from safeladder.training.common import PointRecord, TrainData, TrainOutcome


class ClassifierTrainConfig(hf.HFTrainConfig):
    """Config of the ``classifier`` kind: single-label (softmax, weighted cross-entropy) or
    multi-label (sigmoid per label, BCE)."""

    kind: Literal["classifier"] = "classifier"
    multi_label: bool = Field(
        default=False,
        description="One sigmoid per label (labels are 0/1 vectors) instead of a softmax.",
    )
    class_weights: Literal["auto", "none"] | list[float] = Field(
        default="none",
        description=(
            "Loss weights against class imbalance: 'auto' = inverse class frequency on the train "
            "split (multi-label: BCE pos_weight = negatives / positives per label), 'none', or "
            "one weight per class (multi-label: one pos_weight per label)."
        ),
    )
    good_label: str | int = Field(
        default="0",
        description=(
            "Single-label: the class whose probability is the verifier's score (name or index), "
            "e.g. '0' = safe for the safety data where 1 = unsafe."
        ),
    )
    label_polarity: Literal["bad", "good"] = Field(
        default="bad",
        description="Multi-label: 'bad' = labels flag problems (score uses 1 - p), 'good' = p.",
    )
    template: Literal["auto", "chat", "plain"] = Field(
        default="auto",
        description="Row rendering (as the verifier's render.template): chat template or plain.",
    )
    judge_final_answer: bool = Field(
        default=False, description="Train and score on the text after the last </think> only."
    )
    metric_for_best_model: Literal["loss", "accuracy", "f1", "auroc"] = Field(
        default="loss",
        description=(
            "Dev metric for early stopping and the best checkpoint (f1 / auroc: binary "
            "single-label P(label 1); multi-label: mean over labels)."
        ),
    )

    @model_validator(mode="after")
    def _check_weights(self) -> ClassifierTrainConfig:
        if isinstance(self.class_weights, list) and any(w <= 0 for w in self.class_weights):
            raise ValueError("class_weights: every weight must be > 0")
        return self


def reads_images(cfg: ClassifierTrainConfig) -> bool:
    """Whether the rows' images are read (the runner loads ``ImagePointRecord``): the base is a
    vision-language checkpoint."""
    return hf.is_vision_base(cfg.model)


def resolve_good_label(good: str | int, labels: list[str]) -> str:
    """The class name ``good`` names (a name in ``labels`` or an index into it)."""
    if isinstance(good, int):
        if not 0 <= good < len(labels):
            raise ConfigError(f"good_label: index {good} out of range for classes {labels}")
        return labels[good]
    if good not in labels:
        raise ConfigError(f"good_label: {good!r} is not one of the classes {labels}")
    return good


def class_weight_vector(
    setting: str | list[float], y: np.ndarray, n_classes: int, multi_label: bool
) -> np.ndarray | None:
    """Loss weights: ``(C,)`` class weights (single-label) or BCE ``pos_weight`` (multi-label).

    ``auto``: single-label ``n / (C · count_c)`` (inverse frequency; a class absent from the
    train split gets 1); multi-label ``negatives / positives`` per label (1 when a label has no
    positives). ``none`` → None.

    >>> class_weight_vector("auto", np.array([0, 0, 0, 1]), 2, False).tolist()
    [0.6666666666666666, 2.0]
    >>> class_weight_vector("auto", np.array([[1, 0], [0, 0], [0, 1], [0, 1]]), 2, True).tolist()
    [3.0, 1.0]
    """
    if setting == "none":
        return None
    if isinstance(setting, list):
        if len(setting) != n_classes:
            raise ConfigError(
                f"class_weights: {len(setting)} weights for {n_classes} classes; give one each"
            )
        return np.asarray(setting, dtype=np.float64)
    if multi_label:
        pos = y.sum(axis=0).astype(np.float64)
        neg = len(y) - pos
        return np.where(pos > 0, neg / np.maximum(pos, 1.0), 1.0)
    counts = np.bincount(y.astype(int), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1.0)), 1.0)


def _labels_array(rows: list[PointRecord], n_classes: int, multi_label: bool) -> np.ndarray:
    """``(n,)`` int class indices, or ``(n, C)`` 0/1 floats for multi-label; InputError names
    the row whose label does not fit."""
    out: list[Any] = []
    for r in rows:
        lab = r.label
        if multi_label:
            if not isinstance(lab, tuple) or len(lab) != n_classes:
                raise InputError(
                    f"{r.source}:{r.row}: multi-label needs a 0/1 vector of {n_classes} labels, "
                    f"got {lab!r}",
                    row=r.row,
                    field="label",
                )
            out.append([float(v) for v in lab])
        else:
            if not isinstance(lab, int) or not 0 <= lab < n_classes:
                raise InputError(
                    f"{r.source}:{r.row}: label must be a class index in 0..{n_classes - 1}, "
                    f"got {lab!r}",
                    row=r.row,
                    field="label",
                )
            out.append(lab)
    if multi_label:
        return np.asarray(out, dtype=np.float64).reshape(len(rows), n_classes)
    return np.asarray(out, dtype=np.int64)


def render_config(cfg: ClassifierTrainConfig, max_length: int) -> RenderConfig:
    """The rendering shared by training and the saved verifier (``render`` in its config)."""
    return RenderConfig(
        template=cfg.template, judge_final_answer=cfg.judge_final_answer, max_length=max_length
    )


def _metrics_fn(multi_label: bool) -> Any:
    """``compute_metrics`` for the HF Trainer: accuracy, and f1 / auroc of label 1 (binary) or
    the mean over labels (multi-label)."""

    def compute(pred: Any) -> dict[str, float]:
        from sklearn.metrics import f1_score, roc_auc_score

        logits = np.asarray(pred.predictions, dtype=np.float64)
        y = np.asarray(pred.label_ids)
        out: dict[str, float] = {}
        if multi_label:
            p = sigmoid(logits)
            hard = (p >= 0.5).astype(int)
            yi = y.astype(int)
            out["accuracy"] = float((hard == yi).mean())
            out["f1"] = float(f1_score(yi, hard, average="macro", zero_division=0))
            aucs = [
                roc_auc_score(yi[:, j], p[:, j])
                for j in range(yi.shape[1])
                if 0 < yi[:, j].sum() < len(yi)
            ]
            out["auroc"] = float(np.mean(aucs)) if aucs else 0.5
            return out
        p = softmax(logits)
        hard = p.argmax(axis=1)
        out["accuracy"] = float((hard == y).mean())
        if p.shape[1] == 2:
            out["f1"] = float(f1_score(y, hard, zero_division=0))
            out["auroc"] = float(roc_auc_score(y, p[:, 1])) if 0 < y.sum() < len(y) else 0.5
        else:
            out["f1"] = float(f1_score(y, hard, average="macro", zero_division=0))
            out["auroc"] = 0.5  # not defined here for C > 2; use accuracy / f1
        return out

    return compute


def train(
    cfg: ClassifierTrainConfig, data: TrainData, out_dir: Path, *, progress: bool = True
) -> TrainOutcome:
    """Fine-tune a sequence classifier on ``data`` and save it into ``out_dir``.

    Args:
        cfg: the kind's config.
        data: ``PointRecord`` rows; ``data.labels`` names the classes (``['0', '1']`` if empty).
        out_dir: the output directory (model files; checkpoints under ``checkpoints/``).
        progress: show progress bars.

    Returns:
        ``TrainOutcome`` with ``dev_logits`` ``(n_dev, C)`` (raw, dev order) from the saved
        model's final state, ``dev_labels`` ``(n_dev,)`` or ``(n_dev, C)``, the history, and the
        verifier dict ``{type: classifier, good_label | multi_label, render}``.
    """
    import time

    from datasets import Dataset
    from transformers import TrainingArguments

    if reads_images(cfg):
        from safeladder.training import vision_classifier

        return vision_classifier.train(cfg, data, out_dir, progress=progress)
    t0 = time.monotonic()
    hf.setup_torch(cfg.train)
    labels = list(data.labels) or ["0", "1"]
    n_classes = len(labels)
    if not cfg.multi_label and n_classes < 2:
        raise ConfigError(f"data.labels: a single-label classifier needs 2+ classes, got {labels}")
    good = None if cfg.multi_label else resolve_good_label(cfg.good_label, labels)
    if not data.train:
        raise InputError("data: the train split is empty")
    y_train = _labels_array(data.train, n_classes, cfg.multi_label)
    y_dev = _labels_array(data.dev, n_classes, cfg.multi_label)
    weights = class_weight_vector(cfg.class_weights, y_train, n_classes, cfg.multi_label)

    device = hf.resolve_device(cfg.train)
    model, tok = hf.build_model(
        cfg.model,
        "sequence_classification",
        labels=labels,
        multi_label=cfg.multi_label,
        seed=cfg.train.seed,
    )
    render = render_config(cfg, cfg.train.max_length)
    limit = hf.token_limit(model, tok, cfg.train.max_length)
    if cfg.lora is not None:
        model = hf.apply_lora(model, cfg.lora, "sequence_classification")

    def dataset(rows: list[PointRecord], y: np.ndarray) -> Any:
        ids = encode_pairs(
            [r.prompt for r in rows],
            [r.response or "" for r in rows],
            tok,
            render,
            max_length=limit,
        ).ids
        return Dataset.from_dict({"input_ids": ids, "labels": y.tolist()}), ids

    train_ds, _ = dataset(data.train, y_train)
    dev_ds, dev_ids = dataset(data.dev, y_dev)
    has_dev = len(data.dev) > 0
    metric = cfg.metric_for_best_model
    args = TrainingArguments(
        **hf.loop_arguments(
            cfg,
            out_dir,
            device,
            progress=progress,
            has_dev=has_dev,
            metric="eval_loss" if metric == "loss" else f"eval_{metric}",
            greater_is_better=metric != "loss",
        ),
        label_names=["labels"],
    )
    trainer = _weighted_trainer(
        weights,
        cfg.multi_label,
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds if has_dev else None,
        data_collator=_Collator(tok.pad_token_id, cfg.multi_label),
        compute_metrics=_metrics_fn(cfg.multi_label) if has_dev else None,
        callbacks=hf.early_stopping(cfg, has_dev),
    )
    hf.quiet(trainer, progress)
    resume_from = hf.prepare_checkpoints(cfg, out_dir)
    trainer.train(resume_from_checkpoint=resume_from)
    final: Any = hf.unwrap(trainer)
    dev_logits = hf.predict_logits(
        final, dev_ids, tok.pad_token_id, cfg.train.eval_batch_size, str(trainer.args.device)
    )
    final.to("cpu")
    hf.save_model(final, tok, out_dir, save=cfg.save, base_ref=hf.base_reference(cfg.model))
    history = hf.history_of(trainer)
    hf.finish_checkpoints(cfg, out_dir)
    verifier: dict[str, Any] = {
        "type": "classifier",
        "render": render.model_dump(),
    }
    if cfg.multi_label:
        verifier.update(multi_label=True, label_polarity=cfg.label_polarity)
    else:
        verifier["good_label"] = good
    return TrainOutcome(
        verifier=verifier,
        dev_logits=dev_logits,
        dev_labels=y_dev,
        history=history,
        extra={
            "class_weights": None if weights is None else weights.tolist(),
            "resumed_from": resume_from,
            "steps": int(trainer.state.global_step),
        },
        seconds=time.monotonic() - t0,
        model_dir=out_dir,
    )


class _Collator:
    """Right-pads ``input_ids`` into a batch with an attention mask; labels as a tensor."""

    def __init__(self, pad_id: int, multi_label: bool):
        self.pad_id = pad_id
        self.multi_label = multi_label

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"], dtype=torch.long)
            mask[i, :n] = 1
        dtype = torch.float32 if self.multi_label else torch.long
        labels = torch.tensor([r["labels"] for r in rows], dtype=dtype)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _weighted_trainer(loss_weights: np.ndarray | None, multi_label: bool, **kwargs: Any) -> Any:
    """A ``transformers.Trainer`` whose loss is weighted cross-entropy (single-label, class
    weights) or BCE with logits (multi-label, ``pos_weight``)."""
    return weighted_trainer_class(loss_weights, multi_label)(**kwargs)


def weighted_trainer_class(loss_weights: np.ndarray | None, multi_label: bool) -> Any:
    """The ``transformers.Trainer`` subclass of ``_weighted_trainer``. The model returns an
    output with ``logits``, or the logits tensor itself (a VLM score model)."""
    import torch
    from transformers import Trainer

    w = None if loss_weights is None else torch.tensor(loss_weights, dtype=torch.float32)

    class WeightedTrainer(Trainer):
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            if isinstance(outputs, torch.Tensor):
                # The evaluation loop reads the logits of a dict output.
                outputs = {"logits": outputs}
                logits = outputs["logits"].float()
            else:
                logits = outputs.logits.float()
            weight = None if w is None else w.to(logits.device)
            if multi_label:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, labels.to(logits.dtype), pos_weight=weight
                )
            else:
                loss = torch.nn.functional.cross_entropy(
                    logits.view(-1, logits.shape[-1]), labels.view(-1), weight=weight
                )
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer
