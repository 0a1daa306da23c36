"""``label_judge`` training kind: teach a causal LM to answer a judge template with the label.

Supervised fine-tuning through TRL's ``SFTTrainer`` on prompt-completion rows, the loss on the
label tokens only. The prompt is the judge input exactly as the ``label_judge`` verifier builds
it at scoring time (template, chat rendering, ``response_prefix``), and the completion is
``label_prefix + label``, so after training the verifier's label likelihoods read what was
learned.

Training rows carry no ``meta``, so they are always rendered with ``template`` (a judge's
``templates`` / ``template_by_meta`` alternatives still apply at scoring time), and they carry
no reference: a template with ``{reference}`` is refused. ``dev_logits`` are the trained judge's
label log-likelihoods for the classes (``label_text`` maps class → judge label);
``extra["dev_scores"]`` are the verifier's expected scores on the dev rows (all judge labels,
its aggregate), for the runner's self-check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from safeladder.errors import ConfigError, InputError
from safeladder.neural.judge_prompt import JudgeRenderer, has_chat_template, prompt_for_judge
from safeladder.neural.label_likelihood import (
    aggregate_scores,
    label_loglik_duplicate,
    label_loglik_shared_prefix,
    label_loglik_tree,
    label_probabilities,
)
from safeladder.neural.rendering import final_answer
from safeladder.training import models as hf
from safeladder.training.common import CalibrationSettings, PointRecord, TrainData, TrainOutcome

#: Verifier fields that the training config must not set inside ``judge``: the trained model
#: directory is the path, and the runtime is a scoring-time choice.
_JUDGE_RESERVED = ("type", "path", "runtime", "name")


class LabelJudgeTrainConfig(hf.HFTrainConfig):
    """Config of the ``label_judge`` kind."""

    kind: Literal["label_judge"] = "label_judge"
    judge: dict[str, Any] = Field(
        description=(
            "The label_judge verifier settings the model is trained for and scored with: a "
            "preset and/or template, labels {text: reward}, label_prefix, response_prefix, "
            "system_prompt, rendering, aggregate, ... (not type, path, runtime or name)."
        )
    )
    label_text: dict[str, str] | None = Field(
        default=None,
        description=(
            "Class name (data.labels) → the judge label the model should answer for it; "
            "null = the class names are the judge labels."
        ),
    )

    calibration: CalibrationSettings = Field(
        default_factory=lambda: CalibrationSettings(method="none"),
        description=(
            "method must be 'none': the label_judge verifier scores from the label likelihoods "
            "as they are, so a fitted calibration would make the report describe scores the "
            "verifier never gives. The decision threshold is still chosen on the dev split."
        ),
    )

    @model_validator(mode="after")
    def _check_judge(self) -> LabelJudgeTrainConfig:
        from safeladder.verifiers.label_judge import LabelJudgeConfig

        if self.calibration.method != "none":
            raise ValueError(
                f"calibration.method: {self.calibration.method!r} is not applied by the "
                "label_judge verifier (it reads label likelihoods as they are); use 'none'"
            )

        reserved = [k for k in _JUDGE_RESERVED if k in self.judge]
        if reserved:
            raise ValueError(f"judge: {reserved} cannot be set here (the output dir is the path)")
        try:
            jc = LabelJudgeConfig(path=".", **self.judge)
        except ValueError as exc:
            raise ValueError(f"judge: invalid label_judge settings: {exc}") from exc
        if self.label_text is not None:
            unknown = sorted(set(self.label_text.values()) - set(jc.labels))
            if unknown:
                raise ValueError(
                    f"label_text: {unknown} are not judge labels; the labels are {list(jc.labels)}"
                )
        return self


class JudgeInputs:
    """Builds judge inputs token for token as ``safeladder.verifiers.label_judge`` does at
    scoring time (both through ``safeladder.neural.judge_prompt.JudgeRenderer``): the filled template rendered with the chat template (plus the generation
    prompt and ``response_prefix``) or as plain text after the tokenizer's leading special
    tokens; labels tokenized on their own (``label_prefix`` + label, no special tokens); inputs
    over ``max_length`` (longest label included) cut from the prompt's start first, then the
    completion's start. The tests check the result against the verifier's own scores."""

    def __init__(self, judge: Any, tokenizer: Any, max_length: int):
        self.judge = judge
        self.tok = tokenizer
        self.max_length = max_length
        has_chat = has_chat_template(tokenizer)
        if judge.rendering == "chat" and not has_chat:
            raise ConfigError("judge.rendering: 'chat' but the tokenizer has no chat template")
        self.chat = judge.rendering == "chat" or (judge.rendering == "auto" and has_chat)
        self.renderer = JudgeRenderer(
            tokenizer, self.chat, judge.system_prompt, judge.response_prefix
        )
        self.lead = self.renderer.lead
        self.names = list(judge.labels)
        self.label_ids = [
            list(tokenizer.encode(judge.label_prefix + n, add_special_tokens=False))
            for n in self.names
        ]
        seen: set[tuple[int, ...]] = set()
        for name, ids in zip(self.names, self.label_ids, strict=True):
            if not ids or tuple(ids) in seen:
                raise ConfigError(
                    f"judge.labels.{name}: tokenizes to no tokens or like another label"
                )
            seen.add(tuple(ids))
        self.budget = max_length - max(len(ids) for ids in self.label_ids)

    def prefix(self, prompt: str, completion: str) -> list[int] | None:
        """The judge input ids for one row, or None when the fixed text alone is too long."""
        if self.judge.judge_final_answer:
            completion = final_answer(completion)
        template = self.judge.template
        ids = self.renderer.ids(template, prompt, completion, "")
        got, _ = self.renderer.fit(template, prompt, completion, "", ids, self.budget)
        return got


def judge_scores(
    judge: Any, names: list[str], loglik: np.ndarray, rows: list[PointRecord]
) -> np.ndarray:
    """The ``label_judge`` verifier's scores ``(n,)`` from label log-likelihoods ``(n, m)``
    (already length-normalized when the judge says so): softmax over the labels, then the
    judge's aggregate; ``empty_score`` for empty (final) completions; NaN where a row's input
    did not fit."""
    out = np.full(len(rows), np.nan)
    ok = ~np.isnan(loglik).any(axis=1)
    if ok.any():
        probs = label_probabilities(loglik[ok])
        rewards = np.asarray([judge.labels[n] for n in names], dtype=np.float64)
        ti = names.index(judge.true_label) if judge.true_label in names else None
        fi = names.index(judge.false_label) if judge.false_label in names else None
        lo, hi = judge.score_bounds()
        out[ok] = np.clip(aggregate_scores(probs, rewards, judge.aggregate, ti, fi), lo, hi)
    if judge.empty_score is not None:
        for i, r in enumerate(rows):
            text = r.response or ""
            if not (final_answer(text) if judge.judge_final_answer else text).strip():
                out[i] = judge.empty_score
    return out


def train(
    cfg: LabelJudgeTrainConfig, data: TrainData, out_dir: Path, *, progress: bool = True
) -> TrainOutcome:
    """Fine-tune a causal LM to answer the judge template with each row's label.

    Args:
        cfg: the kind's config.
        data: ``PointRecord`` rows; ``data.labels`` names the classes (``['0', '1']`` if empty),
            each mapped to a judge label by ``label_text``.
        out_dir: the output directory (model files; checkpoints under ``checkpoints/``).
        progress: show progress bars.

    Returns:
        ``TrainOutcome`` with ``dev_logits`` ``(n_dev, C)``: the trained judge's label
        log-likelihoods (per-token means with ``length_normalize``), column c for class c, so
        their softmax is the verifier's label distribution restricted to the classes;
        ``dev_labels`` ``(n_dev,)``; the verifier dict ``{type: label_judge, **judge,
        max_length}``. Rows whose input cannot fit ``max_length`` are left out of training and
        get NaN logits.
    """
    import time

    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from safeladder.verifiers.label_judge import LabelJudgeConfig

    t0 = time.monotonic()
    hf.setup_torch(cfg.train)
    labels = list(data.labels) or ["0", "1"]
    max_length = int(cfg.judge.get("max_length", cfg.train.max_length))
    judge = LabelJudgeConfig(path=".", **{**cfg.judge, "max_length": max_length})
    if "{reference}" in judge.template:
        raise ConfigError("judge.template: uses {reference}, which training rows do not carry")
    text_of = cfg.label_text or {c: c for c in labels}
    missing = [c for c in labels if text_of.get(c) not in judge.labels]
    if missing:
        raise ConfigError(
            f"label_text: classes {missing} have no judge label; map each class in {labels} "
            f"to one of {list(judge.labels)}"
        )
    if not data.train:
        raise InputError("data: the train split is empty")

    device = hf.resolve_device(cfg.train)
    model, tok = hf.build_model(cfg.model, "causal_lm", seed=cfg.train.seed)
    inputs = JudgeInputs(judge, tok, max_length)
    column = [inputs.names.index(text_of[c]) for c in labels]
    if cfg.lora is not None:
        model = hf.apply_lora(model, cfg.lora, "causal_lm")

    def rows_of(records: list[PointRecord]) -> tuple[list[list[int] | None], list[int]]:
        prefixes, ys = [], []
        for r in records:
            if not isinstance(r.label, int) or not 0 <= r.label < len(labels):
                raise InputError(
                    f"{r.source}:{r.row}: label must be a class index in 0..{len(labels) - 1}, "
                    f"got {r.label!r}",
                    row=r.row,
                    field="label",
                )
            prefixes.append(inputs.prefix(prompt_for_judge(r.prompt), r.response or ""))
            ys.append(r.label)
        return prefixes, ys

    def dataset(prefixes: list[list[int] | None], ys: list[int]) -> Any:
        ids, masks = [], []
        for p, y in zip(prefixes, ys, strict=True):
            if p is None:
                continue
            lab = inputs.label_ids[column[y]]
            ids.append(p + lab)
            # Loss on the label tokens only (TRL's completion_only_loss reads this mask).
            masks.append([0] * len(p) + [1] * len(lab))
        return Dataset.from_dict({"input_ids": ids, "completion_mask": masks})

    train_p, train_y = rows_of(data.train)
    dev_p, dev_y = rows_of(data.dev)
    train_ds = dataset(train_p, train_y)
    if len(train_ds) == 0:
        raise InputError(f"data: no training row fits max_length={max_length} tokens")
    dev_ds = dataset(dev_p, dev_y)
    has_dev = len(dev_ds) > 0
    args = SFTConfig(
        **hf.loop_arguments(
            cfg,
            out_dir,
            device,
            progress=progress,
            has_dev=has_dev,
            metric="eval_loss",
            greater_is_better=False,
        ),
        max_length=None,  # inputs are already cut the way the verifier cuts them
        completion_only_loss=True,
        packing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds if has_dev else None,
        processing_class=tok,
        callbacks=hf.early_stopping(cfg, has_dev),
    )
    hf.quiet(trainer, progress)
    resume_from = hf.prepare_checkpoints(cfg, out_dir)
    trainer.train(resume_from_checkpoint=resume_from)
    final: Any = hf.unwrap(trainer)
    final.eval()
    run_on = trainer.args.device
    pad_id = getattr(final.config, "pad_token_id", None)
    pad_id = int(pad_id if pad_id is not None else tok.pad_token_id)
    fn = {"duplicate": label_loglik_duplicate, "tree": label_loglik_tree}.get(
        judge.scoring, label_loglik_shared_prefix
    )
    all_ll = np.full((len(dev_p), len(inputs.names)), np.nan)
    todo = [i for i, p in enumerate(dev_p) if p is not None]
    with torch.no_grad():
        for s in range(0, len(todo), cfg.train.eval_batch_size):
            chunk = todo[s : s + cfg.train.eval_batch_size]
            ll = fn(final, [dev_p[i] or [] for i in chunk], inputs.label_ids, pad_id, run_on)
            all_ll[chunk] = np.asarray(ll, dtype=np.float64)
    lengths = np.asarray([len(ids) for ids in inputs.label_ids], dtype=np.float64)
    if judge.length_normalize:
        all_ll = all_ll / lengths[None, :]
    dev_logits = all_ll[:, column]
    dev_scores = judge_scores(judge, inputs.names, all_ll, data.dev)
    final.to("cpu")
    hf.save_model(final, tok, out_dir, save=cfg.save, base_ref=hf.base_reference(cfg.model))
    history = hf.history_of(trainer)
    hf.finish_checkpoints(cfg, out_dir)
    return TrainOutcome(
        verifier={"type": "label_judge", **cfg.judge, "max_length": max_length},
        dev_logits=dev_logits,
        dev_labels=np.asarray(dev_y, dtype=np.int64),
        history=history,
        extra={
            "resumed_from": resume_from,
            "steps": int(trainer.state.global_step),
            "label_text": {c: text_of[c] for c in labels},
            "skipped_train_rows": sum(p is None for p in train_p),
            # What the rebuilt verifier should score on the dev rows (the runner's self-check).
            "dev_scores": dev_scores.tolist(),
        },
        seconds=time.monotonic() - t0,
        model_dir=out_dir,
    )
