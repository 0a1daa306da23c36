"""``pairwise`` training kind: a Bradley–Terry scalar reward model through TRL's RewardTrainer.

Pairs are pre-tokenized with the ``reward_model`` verifier's own rendering
(``safeladder.neural.rendering.encode_pairs``), so the trained head scores the same tokens in
use as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from safeladder.errors import InputError
from safeladder.neural.rendering import RenderConfig, encode_pairs
from safeladder.training import models as hf
from safeladder.training.common import PairRecord, TrainData, TrainOutcome


class PairwiseTrainConfig(hf.HFTrainConfig):
    """Config of the ``pairwise`` kind (a ``num_labels=1`` reward head)."""

    kind: Literal["pairwise"] = "pairwise"
    use_margin: bool = Field(
        default=True,
        description="Use the pairs' margin (TRL: -logsigmoid(r_c - r_r - margin)) when given.",
    )
    center_rewards_coefficient: float | None = Field(
        default=None,
        ge=0,
        description="TRL's auxiliary loss coef * (r_c + r_r)^2 that keeps rewards near 0.",
    )
    template: Literal["auto", "chat", "plain"] = Field(
        default="auto",
        description="Row rendering (as the verifier's render.template): chat template or plain.",
    )
    judge_final_answer: bool = Field(
        default=False, description="Train and score on the text after the last </think> only."
    )
    normalize: Literal["saved"] | None = Field(
        default=None,
        description=(
            "Written into the verifier config: 'saved' = standardize rewards with the train "
            "reward stats saved next to the model; null = raw rewards."
        ),
    )
    squash: Literal["none", "sigmoid"] = Field(
        default="none", description="Written into the verifier config: sigmoid into (0, 1)."
    )
    reward_sample: int = Field(
        default=512,
        ge=2,
        description="Training responses scored after training for the reward mean / std stats.",
    )
    metric_for_best_model: Literal["loss", "accuracy"] = Field(
        default="loss", description="Dev metric for early stopping and the best checkpoint."
    )


def train(
    cfg: PairwiseTrainConfig, data: TrainData, out_dir: Path, *, progress: bool = True
) -> TrainOutcome:
    """Train a scalar reward model on preference pairs and save it into ``out_dir``.

    Args:
        cfg: the kind's config.
        data: ``PairRecord`` rows (train / dev).
        out_dir: the output directory (model files; checkpoints under ``checkpoints/``).
        progress: show progress bars.

    Returns:
        ``TrainOutcome`` with ``dev_chosen`` / ``dev_rejected`` ``(n_dev,)`` rewards of the saved
        model, ``train_rewards`` ``(k,)`` on up to ``reward_sample`` training responses (for the
        centering stats), the history, and the verifier dict ``{type: reward_model, render}``.
    """
    import time

    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    t0 = time.monotonic()
    hf.setup_torch(cfg.train)
    if not data.train:
        raise InputError("data: the train split is empty")
    for r in [*data.train, *data.dev]:
        if not isinstance(r, PairRecord):
            raise InputError(
                f"{getattr(r, 'source', '?')}:{getattr(r, 'row', '?')}: the pairwise kind needs "
                "preference pairs (prompt, chosen, rejected)",
                row=getattr(r, "row", None),
            )
    device = hf.resolve_device(cfg.train)
    model, tok = hf.build_model(cfg.model, "sequence_classification", seed=cfg.train.seed)
    render = RenderConfig(
        template=cfg.template,
        judge_final_answer=cfg.judge_final_answer,
        max_length=cfg.train.max_length,
    )
    limit = hf.token_limit(model, tok, cfg.train.max_length)
    if cfg.lora is not None:
        model = hf.apply_lora(model, cfg.lora, "sequence_classification")

    def encode(prompts: list[str], texts: list[str]) -> list[list[int]]:
        return encode_pairs(prompts, texts, tok, render, max_length=limit).ids

    def dataset(rows: list[PairRecord]) -> tuple[Any, list[list[int]], list[list[int]]]:
        prompts = [r.prompt for r in rows]
        chosen = encode(prompts, [r.chosen for r in rows])
        rejected = encode(prompts, [r.rejected for r in rows])
        cols: dict[str, Any] = {"chosen_ids": chosen, "rejected_ids": rejected}
        if use_margin:
            # TRL reads a margin for every pair of a batch; pairs without one get 0 (plain BT).
            cols["margin"] = [float(r.margin) if r.margin is not None else 0.0 for r in rows]
        return Dataset.from_dict(cols), chosen, rejected

    use_margin = cfg.use_margin and any(r.margin is not None for r in data.train)
    train_ds, train_c, train_r = dataset(data.train)
    has_dev = len(data.dev) > 0
    dev_ds, dev_c, dev_r = dataset(data.dev) if has_dev else (None, [], [])
    metric = cfg.metric_for_best_model
    args = RewardConfig(
        **hf.loop_arguments(
            cfg,
            out_dir,
            device,
            progress=progress,
            has_dev=has_dev,
            metric="eval_loss" if metric == "loss" else "eval_accuracy",
            greater_is_better=metric != "loss",
        ),
        # Rows are already cut to max_length by the verifier's own truncation; TRL would
        # instead drop pairs longer than its max_length.
        max_length=None,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        processing_class=tok,
        callbacks=hf.early_stopping(cfg, has_dev),
    )
    hf.quiet(trainer, progress)
    resume_from = hf.prepare_checkpoints(cfg, out_dir)
    trainer.train(resume_from_checkpoint=resume_from)
    final: Any = hf.unwrap(trainer)
    run_on = str(trainer.args.device)
    bs = cfg.train.eval_batch_size
    pad = tok.pad_token_id
    dev_chosen = hf.predict_logits(final, dev_c, pad, bs, run_on)[:, 0]
    dev_rejected = hf.predict_logits(final, dev_r, pad, bs, run_on)[:, 0]
    # Rewards of training responses (chosen and rejected alike) for the mean / std that
    # centre and scale the reward at scoring time; a seeded sample keeps it cheap.
    pool = [*train_c, *train_r]
    rng = np.random.default_rng(cfg.train.seed)
    pick = rng.permutation(len(pool))[: cfg.reward_sample]
    train_rewards = hf.predict_logits(final, [pool[i] for i in sorted(pick)], pad, bs, run_on)[:, 0]
    final.to("cpu")
    hf.save_model(final, tok, out_dir, save=cfg.save, base_ref=hf.base_reference(cfg.model))
    history = hf.history_of(trainer)
    hf.finish_checkpoints(cfg, out_dir)
    verifier: dict[str, Any] = {"type": "reward_model", "render": render.model_dump()}
    if cfg.normalize is not None:
        verifier["normalize"] = cfg.normalize
    if cfg.squash != "none":
        verifier["squash"] = cfg.squash
    return TrainOutcome(
        verifier=verifier,
        dev_chosen=dev_chosen,
        dev_rejected=dev_rejected,
        train_rewards=train_rewards,
        history=history,
        extra={
            "resumed_from": resume_from,
            "steps": int(trainer.state.global_step),
            "margin": use_margin,
        },
        seconds=time.monotonic() - t0,
        model_dir=out_dir,
    )
