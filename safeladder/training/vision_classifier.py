"""``classifier`` training over a vision-language base: a score head (and LoRA) on a VLM.

When ``model.path`` is a vision-language checkpoint (Qwen2-VL / Qwen2.5-VL, LLaVA, Idefics3 /
SmolVLM: ``safeladder.neural.vision.is_vision_checkpoint``), ``classifier.train`` hands the run
here. The output directory is the VLM classifier format of ``safeladder.neural.vision_head``
(the checkpoint with its processor, ``safeladder_score_head.safetensors``, ``id2label`` in
``config.json``), so ``{type: classifier, path: OUT}`` scores image rows with the trained head.

- Rows: ``ImagePointRecord`` (``data.load_records(..., images=True)``: the ``images`` cell of
  each row; paths relative to the data file, data URLs...). A row is rendered as the verifier
  renders it at scoring time (``NeuralVerifier._vision_row``, the same calls in the same
  order): image references in model order (``vision.row_image_refs``), decoded under the
  verifier's default ``ImageLimits``, ``final_answer`` of the completion with
  ``judge_final_answer``, then ``vision.fit_vision_row`` (processor chat template, image
  tokens, text cut to ``max_length``). Every row is rendered once before training, so an
  unreadable image is an ``InputError`` naming the file, the row and the image up front; the
  pixels are rendered again when a batch needs them (not kept in memory).
- Model: the backbone the verifier loads (``AutoModel``) and a ``Linear(hidden, C)`` head in
  the verifier's own wrapper (``vision_head``: the final hidden state of the last real token).
  Without ``lora`` the backbone is frozen and only the head trains. With ``lora`` a peft LoRA
  adapter on the language model's ``target_modules`` (default ``q_proj``, ``v_proj``; the
  vision tower is not adapted) trains with the head and is merged into the saved weights
  (``save: merged``; the verifier loads no VLM adapter).
- Loss (class weights, BCE for multi-label), dev metrics, early stopping and checkpoints are
  the text classifier's; a checkpoint holds only the trained parameters.
- Saving: head-only copies the base checkpoint's files unchanged; LoRA copies its processor
  and tokenizer files and writes the merged backbone with ``save_pretrained`` (in the base's
  dtype; the dev predictions are made with those rounded weights).

Example (YAML)::

    kind: classifier
    model: {path: ckpt/Qwen2-VL-2B-Instruct}
    lora: {r: 8, alpha: 16}            # optional; head-only without it
    data: {train: [{path: data/vlm_safety.jsonl}], labels: [unsafe, safe]}
    good_label: safe
    train: {epochs: 1, batch_size: 8, max_length: 1024}
    output_dir: runs/vlm-safety-clf
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import ConfigError, InputError
from safeladder.images import ImageLimits, image_key, load_row_images
from safeladder.neural.rendering import RenderConfig, final_answer
from safeladder.neural.vision import (
    VisionRow,
    collate,
    fit_vision_row,
    load_processor,
    row_image_refs,
)
from safeladder.training import classifier as clf
from safeladder.training import models as hf
from safeladder.training.common import PointRecord, TrainData, TrainOutcome
from safeladder.training.data import ImagePointRecord

__all__ = ["VisionRowRenderer", "self_check_images", "train"]

#: LoRA targets in the language model when ``lora.target_modules`` is not given (peft's
#: default for Llama / Qwen2 decoders).
DEFAULT_LORA_TARGETS = ("q_proj", "v_proj")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


class VisionRowRenderer:
    """A training row → the ``VisionRow`` the ``classifier`` verifier builds for it."""

    def __init__(self, processor: Any, render: RenderConfig, max_length: int):
        self.processor = processor
        self.render = render
        self.max_length = max_length
        self.limits = ImageLimits()  # the verifier's default image_limits

    def __call__(self, r: PointRecord) -> VisionRow:
        """Raises ``InputError`` naming the file, the row and (for images) the image."""
        chat = r.chat if isinstance(r, ImagePointRecord) else r.prompt
        refs: list[Any] = list(r.images) if isinstance(r, ImagePointRecord) else []
        try:
            refs = row_image_refs(chat, refs, r.row)
            images = load_row_images(refs, self.limits)
            keys = [image_key(x, self.limits) for x in refs]
            completion = r.response or ""
            if self.render.judge_final_answer:
                completion = final_answer(completion)
            row, _ = fit_vision_row(
                self.processor, chat, completion, images, keys, self.max_length, r.row
            )
        except InputError as exc:
            msg = str(exc).removeprefix(f"row {r.row}: ")
            shown = ", ".join(_show_ref(x) for x in refs)
            raise InputError(
                f"{r.source}: row {r.row}: {msg} (the row's images: {shown or 'none'})",
                row=r.row,
                field="images",
            ) from exc
        return row


def _show_ref(ref: Any) -> str:
    """An image reference for a message: a path or URL (cut to 80 characters), or its kind."""
    if isinstance(ref, str):
        return repr(ref if len(ref) <= 80 else ref[:77] + "...")
    if isinstance(ref, bytes):
        return f"<{len(ref)} bytes>"
    return f"<{type(ref).__name__}>"


class _Rows:
    """A torch-style dataset: item ``i`` = ``{"row": VisionRow, "labels": y[i]}``, rendered on
    access."""

    def __init__(self, rows: list[PointRecord], y: np.ndarray, render: VisionRowRenderer):
        self.rows, self.y, self.render = rows, y.tolist(), render

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"row": self.render(self.rows[i]), "labels": self.y[i]}


class _Collator:
    """Right-pads ``VisionRow``s with the verifier's ``collate`` (on the model's device)."""

    def __init__(self, pad_id: int, multi_label: bool, model: Any):
        self.pad_id, self.multi_label, self.model = pad_id, multi_label, model

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        device = next(self.model.parameters()).device
        c = collate([it["row"] for it in items], self.pad_id, device, self.model, left=False)
        dtype = torch.float32 if self.multi_label else torch.long
        labels = torch.tensor([it["labels"] for it in items], dtype=dtype)
        return {**c.model_inputs(), "labels": labels}


def _base_dtype(base: Path) -> str | None:
    """The weights' dtype named in the base's config.json (``dtype`` / ``torch_dtype``)."""
    cfg = json.loads((base / "config.json").read_text(encoding="utf-8"))
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}
    for c in (cfg, text):
        for key in ("dtype", "torch_dtype"):
            if isinstance(c.get(key), str):
                return str(c[key])
    return None


def _text_prefix(backbone: Any) -> str:
    """The module path of the backbone's language model (``language_model``, ``text_model``)."""
    decoder = backbone.get_decoder() if hasattr(backbone, "get_decoder") else None
    if decoder is not None:
        for name, module in backbone.named_modules():
            if module is decoder and name:
                return str(name)
    for name in ("language_model", "text_model"):
        if hasattr(backbone, name):
            return name
    raise ConfigError("lora: cannot find the language model of this vision-language backbone")


def _apply_lora(backbone: Any, cfg: clf.ClassifierTrainConfig) -> Any:
    """A peft LoRA adapter on the language model's ``target_modules`` (not the vision tower)."""
    from peft import LoraConfig, get_peft_model

    assert cfg.lora is not None
    targets = cfg.lora.target_modules or list(DEFAULT_LORA_TARGETS)
    prefix = re.escape(_text_prefix(backbone))
    names = "|".join(re.escape(t) for t in targets)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=rf"{prefix}\..*\.({names})",  # a string: peft full-matches the path
    )
    try:
        return get_peft_model(backbone, lora)
    except ValueError as exc:
        raise ConfigError(f"lora: {exc}") from exc


def _with_new_head(backbone: Any, n_labels: int, seed: int) -> Any:
    """``backbone`` in the verifier's score model (``vision_head.attach_score_head``) with a
    seeded ``Linear(hidden, n_labels)`` head (torch's default init), loaded from a scratch
    directory as the verifier loads a trained one."""
    import tempfile

    import torch
    from safetensors.torch import save_file

    from safeladder.neural.vision_head import SCORE_HEAD_FILE, attach_score_head

    text = getattr(backbone.config, "text_config", None)
    hidden = int(getattr(text, "hidden_size", None) or backbone.config.hidden_size)
    torch.manual_seed(seed)
    init = torch.nn.Linear(hidden, n_labels)
    backbone.config.num_labels = n_labels
    with tempfile.TemporaryDirectory(prefix="safeladder-head-") as tmp:
        tensors = {"weight": init.weight.detach(), "bias": init.bias.detach()}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(tmp) / SCORE_HEAD_FILE))
        model = attach_score_head(backbone, tmp)
    model.score.requires_grad_(True)
    return model


def _build(cfg: clf.ClassifierTrainConfig, base: Path, n_labels: int) -> tuple[Any, Any, Any]:
    """``(score model, processor, tokenizer)``: backbone + fresh head, float32 on the CPU."""
    import torch
    from transformers import AutoModel

    from safeladder.neural.vision import vision_model_type

    vision_model_type(base)  # a supported family, or a ConfigError naming it
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    # The backbone of a checkpoint saved with its LM head: transformers reports the head as
    # an unused weight, as expected (the runtime quiets the same report).
    hf_logging.set_verbosity_error()
    try:
        with hf.offline():
            processor = load_processor(base)
            backbone = AutoModel.from_pretrained(str(base), dtype=torch.float32)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"model: cannot load {str(base)!r} as a vision-language backbone: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    tok = processor.tokenizer
    if tok.pad_token_id is None:  # as the runtime does at scoring time
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    backbone.requires_grad_(False)
    if cfg.lora is not None:
        backbone = _apply_lora(backbone, cfg)
        if cfg.gradient_checkpointing:
            backbone.gradient_checkpointing_enable()
            backbone.enable_input_require_grads()
    model = _with_new_head(backbone, n_labels, cfg.train.seed)
    return model, processor, tok


def _trainer(weights: np.ndarray | None, multi_label: bool, **kwargs: Any) -> Any:
    """The text classifier's weighted trainer, whose checkpoints hold the trained parameters
    only (the frozen backbone is the base's; a VLM state dict per checkpoint would be GBs)."""
    import os

    from safetensors.torch import save_file
    from transformers.utils import SAFE_WEIGHTS_NAME

    base = clf.weighted_trainer_class(weights, multi_label)

    class VisionTrainer(base):  # type: ignore[misc, valid-type]
        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            out = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(out, exist_ok=True)
            model = self.accelerator.unwrap_model(self.model)
            keep = {
                n: p.detach().cpu().contiguous()
                for n, p in model.named_parameters()
                if p.requires_grad
            }
            save_file(keep, os.path.join(out, SAFE_WEIGHTS_NAME), metadata={"format": "pt"})

        def _issue_warnings_after_load(self, load_result: Any) -> None:
            # Missing keys are the frozen backbone's, by design; unexpected ones are a bug.
            if load_result.unexpected_keys:
                raise ConfigError(
                    f"resume: checkpoint keys not in the model: {load_result.unexpected_keys[:5]}"
                )

    return VisionTrainer(**kwargs)


def _predict(
    model: Any,
    rows: list[PointRecord],
    render: VisionRowRenderer,
    pad_id: int,
    batch_size: int,
    device: str,
) -> np.ndarray:
    """Logits ``(n, C)`` float64 in row order with the verifier's forward."""
    import torch

    from safeladder.neural.vision_head import vision_logits_forward

    forward = vision_logits_forward(pad_id)
    model.eval()
    model.to(device)
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = [render(r) for r in rows[start : start + batch_size]]
            out.append(np.asarray(forward(batch, model, device), dtype=np.float64))
    n = int(model.score.out_features)
    return np.concatenate(out) if out else np.zeros((0, n))


def _copy_base(base: Path, out_dir: Path, *, weights: bool) -> None:
    """Copy the base checkpoint's files into ``out_dir`` (without its weights and config when
    ``weights`` is False; never a previous run's safeladder files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        name = f.name
        if name.startswith("safeladder_") or name in ("metrics.json", "report.md"):
            continue
        if not weights and (name == "config.json" or name.endswith(_WEIGHT_SUFFIXES)):
            continue
        if f.is_dir():
            if name != hf.CHECKPOINTS:
                shutil.copytree(f, out_dir / name, dirs_exist_ok=True)
        else:
            shutil.copy2(f, out_dir / name)


def train(
    cfg: clf.ClassifierTrainConfig, data: TrainData, out_dir: Path, *, progress: bool = True
) -> TrainOutcome:
    """Train a score head (and LoRA) over the VLM ``cfg.model.path``; see the module docstring.

    Returns what ``classifier.train`` returns: ``dev_logits`` ``(n_dev, C)`` of the saved
    model, ``dev_labels``, the history and the verifier dict.
    """
    import torch
    from transformers import TrainingArguments

    from safeladder.neural.vision_head import save_vision_score_head

    t0 = time.monotonic()
    hf.setup_torch(cfg.train)
    if cfg.template == "plain":
        raise ConfigError(
            "template: 'plain', but model.path is a vision-language model; its images are placed "
            "by the processor's chat template (use 'auto' or 'chat')"
        )
    if cfg.lora is not None and cfg.save != "merged":
        raise ConfigError(
            f"save: {cfg.save!r}: a vision-language classifier is saved with its LoRA merged "
            "(the verifier loads no VLM adapter); use save: merged"
        )
    labels = list(data.labels) or ["0", "1"]
    n_classes = len(labels)
    if not cfg.multi_label and n_classes < 2:
        raise ConfigError(f"data.labels: a single-label classifier needs 2+ classes, got {labels}")
    good = None if cfg.multi_label else clf.resolve_good_label(cfg.good_label, labels)
    if not data.train:
        raise InputError("data: the train split is empty")
    y_train = clf._labels_array(data.train, n_classes, cfg.multi_label)
    y_dev = clf._labels_array(data.dev, n_classes, cfg.multi_label)
    weights = clf.class_weight_vector(cfg.class_weights, y_train, n_classes, cfg.multi_label)

    base = hf.resolve_model_dir(cfg.model)
    assert base is not None
    device = hf.resolve_device(cfg.train)
    model, processor, tok = _build(cfg, base, n_classes)
    render = clf.render_config(cfg, cfg.train.max_length)
    limit = hf.token_limit(model.backbone, tok, cfg.train.max_length)
    renderer = VisionRowRenderer(processor, render, limit)
    for r in [*data.train, *data.dev]:
        renderer(r)  # every row renders (and every image decodes) before any step
    has_dev = len(data.dev) > 0
    metric = cfg.metric_for_best_model
    loop = hf.loop_arguments(
        cfg,
        out_dir,
        device,
        progress=progress,
        has_dev=has_dev,
        metric="eval_loss" if metric == "loss" else f"eval_{metric}",
        greater_is_better=metric != "loss",
    )
    loop["activation_checkpointing"] = False  # set on the backbone in _build (LoRA only)
    trainer = _trainer(
        weights,
        cfg.multi_label,
        model=model,
        args=TrainingArguments(**loop, label_names=["labels"]),
        train_dataset=_Rows(data.train, y_train, renderer),
        eval_dataset=_Rows(data.dev, y_dev, renderer) if has_dev else None,
        data_collator=_Collator(tok.pad_token_id, cfg.multi_label, model),
        compute_metrics=clf._metrics_fn(cfg.multi_label) if has_dev else None,
        callbacks=hf.early_stopping(cfg, has_dev),
    )
    hf.quiet(trainer, progress)
    resume_from = hf.prepare_checkpoints(cfg, out_dir)
    trainer.train(resume_from_checkpoint=resume_from)
    final: Any = hf.unwrap(trainer)
    final.to("cpu")
    backbone = final.backbone
    if cfg.lora is not None:
        backbone = final.backbone.merge_and_unload()
        final.backbone = backbone
        saved = _base_dtype(base)
        if saved in ("bfloat16", "float16"):
            # Saved in the base's dtype; predict with the rounded weights the verifier loads.
            backbone.to(getattr(torch, saved)).to(torch.float32)
    dev_logits = _predict(
        final, data.dev, renderer, tok.pad_token_id, cfg.train.eval_batch_size, device
    )
    final.to("cpu")
    _copy_base(base, out_dir, weights=cfg.lora is None)
    if cfg.lora is not None:
        saved = _base_dtype(base)
        dtype = getattr(torch, saved) if saved in ("bfloat16", "float16") else torch.float32
        backbone.to(dtype).save_pretrained(str(out_dir))
    save_vision_score_head(
        out_dir,
        final.score.weight.detach().float().numpy(),
        final.score.bias.detach().float().numpy(),
        id2label=dict(enumerate(labels)),
        problem_type=(
            "multi_label_classification" if cfg.multi_label else "single_label_classification"
        ),
    )
    history = hf.history_of(trainer)
    hf.finish_checkpoints(cfg, out_dir)
    verifier: dict[str, Any] = {"type": "classifier", "render": render.model_dump()}
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
            "vision": {"base": str(base), "lora": cfg.lora is not None},
        },
        seconds=time.monotonic() - t0,
        model_dir=out_dir,
    )


def self_check_images(out: Path, data: TrainData, ev: Any) -> dict[str, Any]:
    """``runner.self_check`` for rows with images: the rebuilt verifier scores the first dev
    rows as ``Sample``s with their chat prompt and images, against the calibrated dev
    predictions (``ev.expected_scores``, multi-label ``ev.expected_probs``).

    Returns ``{"rows", "max_abs_diff", "ok"}``, or ``{"skipped": reason}``.

    Raises:
        SafeladderError: a score differs by more than ``SELF_CHECK_TOL``.
    """
    import math

    from safeladder.errors import SafeladderError
    from safeladder.training.run_files import verifier_config
    from safeladder.training.self_check import SELF_CHECK_ROWS, SELF_CHECK_TOL
    from safeladder.types import Sample
    from safeladder.verifiers import build_verifier

    expected, probs = ev.expected_scores, ev.expected_probs
    if expected is None and probs is None:
        return {"skipped": "no expected verifier scores for this kind"}
    rows = data.dev[:SELF_CHECK_ROWS]
    samples = [
        Sample(
            prompt=r.chat if isinstance(r, ImagePointRecord) else r.prompt,
            completion=r.response or "",
            images=r.images if isinstance(r, ImagePointRecord) else (),
        )
        for r in rows
    ]
    vcfg = verifier_config(out)
    # float32 as the dev predictions (the verifier's default on CUDA is bf16).
    vcfg = {**vcfg, "runtime": {**(vcfg.get("runtime") or {}), "dtype": "float32"}}
    verifier = build_verifier(vcfg)
    try:
        result = verifier.score(samples)
    finally:
        verifier.close()
    diffs: list[float] = []
    for i in range(len(rows)):
        if probs is not None:
            got = (result.details[i] or {}).get("probs", {})
            diffs.append(
                max(
                    abs(float(got.get(n, math.nan)) - probs[i, j])
                    for j, n in enumerate(data.labels)
                )
            )
        else:
            diffs.append(abs(float(result.scores[i]) - float(expected[i])))
    worst = max(diffs) if diffs else 0.0
    if not worst <= SELF_CHECK_TOL:  # NaN fails too
        i = int(np.nanargmax(diffs)) if not all(math.isnan(x) for x in diffs) else 0
        raise SafeladderError(
            f"self-check failed: the verifier rebuilt from {str(out)!r} differs from the "
            f"training predictions by {worst:.3g} (> {SELF_CHECK_TOL:g}) on dev row {i} "
            f"({rows[i].source} row {rows[i].row}); the saved head, its calibration or the "
            "rendering of image rows does not match what was trained"
        )
    return {"rows": len(rows), "max_abs_diff": float(worst), "ok": True}
