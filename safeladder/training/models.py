"""Model loading, LoRA wrapping and saving for the Hugging Face training kinds.

``ModelSource`` (a local directory, a packaged model, or a random init from a config) becomes a
``(model, tokenizer)`` pair: a sequence classifier (``num_labels`` classes, or one output for a
reward head) or a causal LM. Decoders get a pad token (= EOS) so batches can be padded, and the
model config's ``pad_token_id`` is set, since sequence-classification heads of decoders find the
last real token through it. With ``lora`` set the model is wrapped in a peft adapter; the head
is trained in full (``modules_to_save``). ``save_model`` writes a standard HF directory (LoRA
merged), the peft adapter, or both.

Heavy imports (torch, transformers, peft) happen inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from pydantic import Field

from safeladder.errors import ConfigError
from safeladder.neural.packaged import PREFIX, resolve_packaged
from safeladder.neural.runtime import check_model_dir, load_tokenizer
from safeladder.training.common import LoopSettings, LoraSettings, ModelSource, TrainConfigBase

#: What the model is built for: a classification / reward head, or a causal LM (label_judge).
Task = Literal["sequence_classification", "causal_lm"]


class HFTrainConfig(TrainConfigBase):
    """Fields shared by the kinds that fine-tune a Hugging Face model (classifier, pairwise,
    label_judge)."""

    lora: LoraSettings | None = Field(
        default=None, description="Train a LoRA adapter (peft) instead of every weight."
    )
    save: Literal["merged", "adapter", "both"] = Field(
        default="merged",
        description=(
            "'merged': a standard HF model directory (LoRA merged into the weights); 'adapter': "
            "the peft adapter (adapter_config.json + adapter_model.safetensors, head included) "
            "with base_model_name_or_path naming the base; 'both': merged weights plus the "
            "adapter under adapter/. Without lora every choice writes the full model."
        ),
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less GPU memory, ~30% slower.",
    )
    keep_checkpoints: bool = Field(
        default=False,
        description="Keep output_dir/checkpoints after a successful run (they are for resume).",
    )


def resolve_model_dir(src: ModelSource) -> Path | None:
    """The local directory of ``src`` (``path`` or ``packaged``); None for ``random_init``.

    Raises:
        ConfigError: ``model.path`` is not a local model directory, or the package is missing.
    """
    if src.path is not None:
        return check_model_dir(src.path, "model.path")
    if src.packaged is not None:
        return resolve_packaged(src.packaged, "model.packaged")
    return None


def is_vision_base(src: ModelSource) -> bool:
    """Whether ``model.path`` is a vision-language checkpoint (processor config + a
    ``vision_config``: ``safeladder.neural.vision.is_vision_checkpoint``); packaged and
    random-init bases are text models."""
    from safeladder.neural.vision import is_vision_checkpoint

    if src.path is None:
        return False
    return is_vision_checkpoint(check_model_dir(src.path, "model.path"))


def base_reference(src: ModelSource) -> str | None:
    """How a saved adapter names its base: ``packaged:<name>``, an absolute path, or None."""
    if src.packaged is not None:
        return PREFIX + src.packaged
    if src.path is not None:
        return str(check_model_dir(src.path, "model.path"))
    return None


@contextmanager
def offline() -> Iterator[None]:
    """Forbid Hub access while loading: models come from local directories only."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_training_tokenizer(src: ModelSource) -> Any:
    """The tokenizer of ``src``, loaded as ``safeladder.neural.runtime.load_tokenizer`` loads it
    at scoring time (so training and scoring see the same ids), with a pad token set."""
    if src.random_init is not None:
        where = check_tokenizer_dir(src.random_init.tokenizer)
    else:
        d = resolve_model_dir(src)
        assert d is not None
        where = d
    with offline():
        tok = load_tokenizer(where)
    if tok.pad_token_id is None:
        # Decoders often ship no pad token; padding with EOS is what the verifiers (and TRL) do.
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
        else:
            raise ConfigError(
                "model: the tokenizer has no pad, eos or unk token to pad batches with; "
                "save one with the tokenizer"
            )
    return tok


def check_tokenizer_dir(path: str) -> Path:
    """``model.random_init.tokenizer`` as an existing directory (ConfigError otherwise)."""
    p = Path(os.path.expanduser(path))
    if not p.is_dir():
        raise ConfigError(
            f"model.random_init.tokenizer: {path!r} is not a directory holding a saved tokenizer"
        )
    return p.resolve()


def build_model(
    src: ModelSource,
    task: Task,
    *,
    labels: Sequence[str] | None = None,
    multi_label: bool = False,
    seed: int = 0,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready to train, in float32 on the CPU.

    Args:
        src: where the starting weights come from.
        task: ``sequence_classification`` (a head of ``len(labels)`` outputs; ``labels=None``
            = a one-output reward head) or ``causal_lm``.
        labels: class names in index order (become ``id2label`` / ``label2id``).
        multi_label: sets ``problem_type: multi_label_classification`` (sigmoid per label).
        seed: seeds the random init (the whole model for random_init, else the new head).

    A checkpoint whose head has another shape (e.g. a 2-label classifier trained into a reward
    model) gets a fresh head: ``ignore_mismatched_sizes``.
    """
    import torch
    import transformers

    tok = load_training_tokenizer(src)
    head: dict[str, Any] = {}
    if task == "sequence_classification":
        names = list(labels) if labels is not None else ["LABEL_0"]
        head = {
            "num_labels": len(names),
            "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)},
        }
        if multi_label:
            head["problem_type"] = "multi_label_classification"
        elif len(names) > 1:
            head["problem_type"] = "single_label_classification"
        else:
            head["problem_type"] = "regression"
    auto = (
        transformers.AutoModelForSequenceClassification
        if task == "sequence_classification"
        else transformers.AutoModelForCausalLM
    )
    torch.manual_seed(seed)
    with offline():
        if src.random_init is not None:
            kwargs = dict(src.random_init.config)
            model_type = kwargs.pop("model_type", None)
            if not isinstance(model_type, str):
                raise ConfigError("model.random_init.config: needs model_type (e.g. bert, qwen2)")
            kwargs.setdefault("vocab_size", len(tok))
            kwargs.setdefault("pad_token_id", tok.pad_token_id)
            if tok.eos_token_id is not None and task == "causal_lm":
                kwargs.setdefault("eos_token_id", tok.eos_token_id)
            try:
                config = transformers.AutoConfig.for_model(model_type, **kwargs, **head)
                model = auto.from_config(config)
            except (ValueError, TypeError, KeyError) as exc:
                raise ConfigError(f"model.random_init.config: {exc}") from exc
        else:
            d = resolve_model_dir(src)
            assert d is not None
            extra: dict[str, Any] = {**head, "ignore_mismatched_sizes": bool(head)}
            try:
                model = auto.from_pretrained(str(d), dtype=torch.float32, **extra)
            except Exception as exc:
                raise ConfigError(
                    f"model: cannot load {str(d)!r} for {task}: {type(exc).__name__}: {exc}"
                ) from exc
    if getattr(model.config, "pad_token_id", None) is None:
        # Decoder sequence-classification heads pool the last token that is not pad_token_id;
        # the runtime sets the same id at scoring time.
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def apply_lora(model: Any, lora: LoraSettings, task: Task) -> Any:
    """Wrap ``model`` in a peft LoRA adapter; classification/score heads train in full.

    peft's ``SEQ_CLS`` task type adds the head (``classifier`` / ``score``) to
    ``modules_to_save``, so it is trained and saved with the adapter.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(
        task_type=TaskType.SEQ_CLS if task == "sequence_classification" else TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) if lora.target_modules else None,
    )
    try:
        return get_peft_model(model, cfg)
    except ValueError as exc:
        raise ConfigError(f"lora: {exc}") from exc


def resolve_device(loop: LoopSettings) -> str:
    """``cpu`` or ``cuda`` for ``loop.device`` (auto = cuda when available)."""
    import torch

    if loop.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' but no CUDA device is available; use auto or cpu")
    if loop.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return loop.device


def use_bf16(loop: LoopSettings, device: str) -> bool:
    """bf16 mixed precision: on CUDA by default; never on CPU (about 13× slower there)."""
    if device == "cpu":
        return False
    return True if loop.bf16 is None else loop.bf16


def setup_torch(loop: LoopSettings) -> None:
    """Seed python / numpy / torch and set the intra-op thread count."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(loop.num_threads)
    set_seed(loop.seed)


def token_limit(model: Any, tokenizer: Any, max_length: int) -> int:
    """``max_length`` capped by the model's positions, the cap the verifiers apply at scoring
    time (``safeladder.neural.checkpoints.position_limit``)."""
    from safeladder.neural.checkpoints import position_limit

    limit = position_limit(SimpleNamespace(config=model.config, tokenizer=tokenizer))
    return min(max_length, limit) if limit else max_length


def save_model(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    *,
    save: str,
    base_ref: str | None,
) -> None:
    """Write the trained model into ``out_dir``.

    - no LoRA, or ``save: merged``: ``save_pretrained`` of the (merged) model + tokenizer.
    - ``save: adapter``: the peft adapter (head included) + the model config (head shape and
      labels) + the tokenizer (not for a packaged base, whose own tokenizer the runtime uses);
      ``base_model_name_or_path`` = ``base_ref``.
    - ``save: both``: merged weights in ``out_dir`` and the adapter in ``out_dir/adapter``.

    Raises:
        ConfigError: an adapter is asked for but the base has no name to point at (random init).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    if is_peft and save in ("adapter", "both"):
        if base_ref is None:
            raise ConfigError(
                "save: an adapter needs a base model on disk (model.path or model.packaged); "
                "a random_init base cannot be referenced - use save: merged"
            )
        target = out_dir if save == "adapter" else out_dir / "adapter"
        target.mkdir(parents=True, exist_ok=True)
        for peft_cfg in model.peft_config.values():
            peft_cfg.base_model_name_or_path = base_ref
        card = target / "README.md"
        had_card = card.exists()
        model.save_pretrained(str(target))
        if not had_card and card.exists():
            card.unlink()  # peft's generated model card: boilerplate with no facts of this run
        # The loader builds the base with this config, so the head has the trained shape/labels.
        model.get_base_model().config.save_pretrained(str(target))
        if not base_ref.startswith("packaged:"):
            # A packaged base's own tokenizer is the one trained with (the runtime falls back to
            # it); a copy would only add ~0.7 MB to every shipped adapter.
            tokenizer.save_pretrained(str(target))
        if save == "adapter":
            return
    final = model.merge_and_unload() if is_peft else model
    final.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def predict_logits(
    model: Any, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: str
) -> np.ndarray:
    """Sequence-classification logits ``(n, num_labels)`` float64 for token-id rows, in order.

    Right padding with an attention mask, eval mode, no gradients; rows are length-sorted into
    batches (less padding) and returned in input order.
    """
    import torch

    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[np.ndarray | None] = [None] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(ids[i]) for i in chunk)
            x = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            m = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                x[r, : len(ids[i])] = torch.tensor(list(ids[i]), dtype=torch.long)
                m[r, : len(ids[i])] = 1
            logits = model(input_ids=x.to(device), attention_mask=m.to(device)).logits
            for r, i in enumerate(chunk):
                out[i] = logits[r].float().cpu().numpy().astype(np.float64)
    n_out = int(model.config.num_labels)
    return np.stack([o for o in out if o is not None]) if ids else np.zeros((0, n_out))


CHECKPOINTS = "checkpoints"


def loop_arguments(
    cfg: HFTrainConfig,
    out_dir: Path,
    device: str,
    *,
    progress: bool,
    has_dev: bool,
    metric: str,
    greater_is_better: bool,
) -> dict[str, Any]:
    """Keyword arguments shared by ``TrainingArguments`` / TRL's ``RewardConfig`` / ``SFTConfig``.

    Evaluation and checkpoints happen together (every ``eval_steps`` or every epoch) so the best
    dev checkpoint can be restored (``load_best_model_at_end``) and early stopping can compare
    evaluations; checkpoints go to ``out_dir/checkpoints``.
    """
    loop = cfg.train
    strategy = "steps" if loop.eval_steps is not None else "epoch"
    kw: dict[str, Any] = {
        "output_dir": str(out_dir / CHECKPOINTS),
        "seed": loop.seed,
        "data_seed": loop.seed,
        "num_train_epochs": loop.epochs,
        "max_steps": loop.max_steps if loop.max_steps is not None else -1,
        "learning_rate": loop.learning_rate,
        "weight_decay": loop.weight_decay,
        # transformers 5: a float in [0, 1) is a fraction of the total steps.
        "warmup_steps": float(loop.warmup_ratio),
        "per_device_train_batch_size": loop.batch_size,
        "per_device_eval_batch_size": loop.eval_batch_size,
        "gradient_accumulation_steps": loop.grad_accum,
        "save_strategy": strategy,
        "save_total_limit": loop.save_total_limit,
        "logging_strategy": "steps",
        "logging_steps": loop.eval_steps or 10,
        "use_cpu": device == "cpu",
        "bf16": use_bf16(loop, device),
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        # transformers 5 renamed gradient_checkpointing (TRL still defaults it to True).
        "gradient_checkpointing": None,
        "activation_checkpointing": cfg.gradient_checkpointing,
    }
    if loop.eval_steps is not None:
        kw["save_steps"] = loop.eval_steps
    if has_dev:
        kw.update(
            eval_strategy=strategy,
            load_best_model_at_end=True,
            metric_for_best_model=metric,
            greater_is_better=greater_is_better,
        )
        if loop.eval_steps is not None:
            kw["eval_steps"] = loop.eval_steps
    return kw


def early_stopping(cfg: HFTrainConfig, has_dev: bool) -> list[Any]:
    """``[EarlyStoppingCallback]`` when ``train.early_stopping_patience`` is set (needs a dev split)."""
    if cfg.train.early_stopping_patience is None:
        return []
    if not has_dev:
        raise ConfigError("train.early_stopping_patience: needs a dev split, and it is empty")
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience)]


def prepare_checkpoints(cfg: HFTrainConfig, out_dir: Path) -> str | None:
    """The checkpoint to resume from (``resume`` and one exists), else None.

    Without ``resume``, stale checkpoints of an earlier run are removed first so they can
    neither be resumed by accident nor count against ``save_total_limit``.
    """
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    ckpt = out_dir / CHECKPOINTS
    if not ckpt.is_dir():
        return None
    if not cfg.resume:
        shutil.rmtree(ckpt)
        return None
    last: str | None = get_last_checkpoint(str(ckpt))
    return last


def finish_checkpoints(cfg: HFTrainConfig, out_dir: Path) -> None:
    """Remove ``out_dir/checkpoints`` after a successful run unless ``keep_checkpoints``."""
    import shutil

    ckpt = out_dir / CHECKPOINTS
    if not cfg.keep_checkpoints and ckpt.is_dir():
        shutil.rmtree(ckpt)


def history_of(trainer: Any) -> list[dict[str, Any]]:
    """The trainer's log history as plain dicts of numbers (step, epoch, loss, eval_*)."""
    rows: list[dict[str, Any]] = []
    for entry in trainer.state.log_history:
        row = {
            k: (float(v) if isinstance(v, float) else v)
            for k, v in entry.items()
            if isinstance(v, (int, float, str))
        }
        rows.append(row)
    return rows


def unwrap(trainer: Any) -> Any:
    """The trained model without accelerate's mixed-precision wrapper.

    Under bf16 / fp16 training accelerate patches ``model.forward`` with autocast; predictions
    through it would be low-precision while the saved weights are float32. Unwrapping restores
    the plain forward, so dev predictions match what a float32 load of the saved model gives.
    """
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)


def quiet(trainer: Any, progress: bool) -> None:
    """Without progress output, also drop the callback that prints every log dict to stdout
    (transformers swaps the progress bar for it when ``disable_tqdm`` is set)."""
    if progress:
        return
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
