"""Where and how a neural verifier's model runs, and the process-wide model cache.

``RuntimeConfig`` is the ``runtime:`` block of every neural verifier config; ``load_model``
turns (checkpoint directory, model kind, runtime) into a ``LoadedModel`` with one eval-mode
replica per device. Loads are cached per process: every verifier or reward term that names the
same checkpoint with the same runtime settings shares one ``LoadedModel`` (and its memory).

Example::

    rt = RuntimeConfig(device="auto", max_tokens_per_batch=8192)
    lm = load_model("/ckpt/safety-clf", "sequence_classification", rt)
    lm.replicas[0](**lm.tokenizer("hi", return_tensors="pt").to(lm.devices[0])).logits

A vision-language checkpoint (``safeladder.neural.vision.is_vision_checkpoint``: a processor
config next to a ``vision_config``) loads its ``AutoProcessor`` (``LoadedModel.processor``; the
tokenizer is the processor's) and, as ``causal_lm``, ``AutoModelForImageTextToText``; as
``sequence_classification``, its backbone (``AutoModel``) with the safeladder score head
(``safeladder.neural.vision_head``).

torch / transformers are imported inside functions so that ``import safeladder`` stays light.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import threading
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from safeladder.errors import ConfigError
from safeladder.neural.checkpoints import (
    ADAPTER_CONFIG,
    adapter_base,
    check_model_dir,
    checkpoint_fingerprint,
    load_tokenizer,
    position_limit,
)
from safeladder.neural.vision import is_vision_checkpoint, load_processor, vision_model_type
from safeladder.neural.vision_head import attach_score_head

if TYPE_CHECKING:
    import torch

__all__ = [
    "ADAPTER_CONFIG",
    "LoadedModel",
    "ModelKind",
    "RuntimeConfig",
    "adapter_base",
    "apply_threads",
    "cached_models",
    "check_model_dir",
    "checkpoint_fingerprint",
    "clear_model_cache",
    "flash_attn_available",
    "load_model",
    "load_tokenizer",
    "position_limit",
    "quantize_dynamic_int8",
    "resolve_attn",
    "resolve_devices",
    "resolve_dtype",
]

ModelKind = Literal["sequence_classification", "causal_lm", "encoder"]


class RuntimeConfig(BaseModel):
    """Device, precision and batching settings shared by every neural verifier.

    Example (YAML, inside a verifier config)::

        runtime: {device: ["cuda:0", "cuda:1"], dtype: bfloat16, max_tokens_per_batch: 32768}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str | list[str] = Field(
        default="auto",
        description=(
            "'auto' (every visible CUDA device, else 'cpu'), 'cpu', 'cuda', 'cuda:1', or a list "
            "of devices: one model replica per listed device, micro-batches spread over them."
        ),
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Weights/compute dtype; 'auto' = bfloat16 on CUDA, float32 on CPU.",
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        default="auto",
        description=(
            "Attention kernel; 'auto' = flash_attention_2 when the flash_attn package is "
            "importable and the device is CUDA, else sdpa."
        ),
    )
    max_tokens_per_batch: int = Field(
        default=16384,
        ge=1,
        description="Padded tokens per micro-batch (rows x longest row); bounds activation memory.",
    )
    cudnn_attention: bool = Field(
        default=True,
        description=(
            "Let SDPA use its cuDNN backend on CUDA (torch's default). label_judge turns it off "
            "unless set here: its cached label passes bring many new input shapes, and on torch "
            "2.11 + H100 cuDNN spent 2-6 ms of CPU planning each (label_judge ran 1.9x faster "
            "without it), while one big forward per micro-batch ran 7% faster with it."
        ),
    )
    cpu_max_padding: float = Field(
        default=0.05,
        ge=0.0,
        lt=1.0,
        description=(
            "On CPU a row joins a micro-batch only while padding stays within this share of the "
            "batch: a CPU computes every padded position, so batches must not cost more than a "
            "one-sample loop (they win on short rows, where per-call overhead dominates)."
        ),
    )
    cpu_max_tokens_per_batch: int = Field(
        default=1024,
        ge=1,
        description=(
            "On CPU the budget is min(max_tokens_per_batch, this): big padded batches thrash "
            "the CPU caches (MiniLM, 1 thread: 16384-token batches ran at ~0.4x a one-sample "
            "loop, 512-2048 at ~1x)."
        ),
    )
    max_batch_size: int = Field(default=64, ge=1, description="Rows per micro-batch at most.")
    num_threads: int | None = Field(
        default=1,
        ge=1,
        description=(
            "torch intra-op threads when running on CPU (torch.set_num_threads, process-wide); "
            "null leaves torch's default. 1 avoids oversubscription next to other workers."
        ),
    )
    cache_size: int = Field(
        default=0,
        ge=0,
        description=(
            "Entries of an LRU cache of model outputs kept across calls, keyed by the verifier "
            "fingerprint and the exact token ids; 0 turns it off."
        ),
    )
    quantize: Literal["none", "dynamic_int8"] = Field(
        default="none",
        description=(
            "'dynamic_int8': int8 weights for every nn.Linear via torch.ao dynamic quantization "
            "(CPU only; faster, slightly different scores: measure agreement first)."
        ),
    )

    def padding_cap(self, devices: list[str]) -> float | None:
        """Largest padded share of a micro-batch on ``devices`` (None: no cap, e.g. on GPUs).

        >>> RuntimeConfig().padding_cap(["cpu"]), RuntimeConfig().padding_cap(["cuda:0"])
        (0.05, None)
        """
        if any(str(d).startswith("cpu") for d in devices):
            return self.cpu_max_padding
        return None

    def token_budget(self, devices: list[str]) -> int:
        """Padded tokens per micro-batch on ``devices`` (the CPU cap applies if any is a CPU).

        >>> RuntimeConfig().token_budget(["cpu"]), RuntimeConfig().token_budget(["cuda:0"])
        (1024, 16384)
        """
        if any(str(d).startswith("cpu") for d in devices):
            return min(self.max_tokens_per_batch, self.cpu_max_tokens_per_batch)
        return self.max_tokens_per_batch

    @field_validator("device")
    @classmethod
    def _device_shape(cls, value: str | list[str]) -> str | list[str]:
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ValueError("device: an empty list; give at least one device or 'auto'")
        for d in items:
            base = d.split(":", 1)[0]
            if d == "auto" and isinstance(value, list):
                raise ValueError("device: 'auto' cannot be part of a list")
            if base not in ("auto", "cpu", "cuda", "mps", "xpu"):
                raise ValueError(
                    f"device: unknown device {d!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or a list"
                )
        return value


def resolve_devices(runtime: RuntimeConfig) -> list[str]:
    """The concrete device strings of ``runtime.device`` ('auto' → every CUDA device or cpu).

    >>> resolve_devices(RuntimeConfig(device=["cpu", "cpu"]))
    ['cpu', 'cpu']
    """
    import torch

    if runtime.device == "auto":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    items = runtime.device if isinstance(runtime.device, list) else [runtime.device]
    out: list[str] = []
    for d in items:
        if d.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"runtime.device: {d!r} requested but CUDA is not available")
            if d == "cuda":
                d = f"cuda:{torch.cuda.current_device()}"
        out.append(d)
    return out


def resolve_dtype(runtime: RuntimeConfig, device: str) -> torch.dtype:
    """``runtime.dtype`` as a torch dtype ('auto' → bfloat16 on CUDA, float32 elsewhere)."""
    import torch

    if runtime.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        runtime.dtype
    ]


def flash_attn_available() -> bool:
    """True when the ``flash_attn`` package can be imported (it only exists on CUDA hosts)."""
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def resolve_attn(runtime: RuntimeConfig, device: str) -> str:
    """The attention implementation to load with ('auto' → flash_attention_2 on CUDA if installed)."""
    if runtime.attn_implementation != "auto":
        return runtime.attn_implementation
    if device.startswith("cuda") and flash_attn_available():
        return "flash_attention_2"
    return "sdpa"


def apply_threads(runtime: RuntimeConfig) -> None:
    """Set torch's intra-op thread count for CPU work (process-wide; no-op when None or equal)."""
    if runtime.num_threads is None:
        return
    import torch

    if torch.get_num_threads() != runtime.num_threads:
        torch.set_num_threads(runtime.num_threads)


@dataclass(eq=False)
class LoadedModel:
    """A checkpoint loaded for inference.

    Attributes:
        path: absolute checkpoint directory.
        kind: ``sequence_classification`` | ``causal_lm`` | ``encoder``.
        replicas: one eval-mode ``torch.nn.Module`` per entry of ``devices`` (entries for the
            same device are the same object).
        devices: device strings, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu"]``.
        tokenizer: the checkpoint's tokenizer (``load_tokenizer``), with a pad token set.
        config: the transformers ``PretrainedConfig``.
        fingerprint: ``checkpoint_fingerprint(path)``.
        dtype: the torch dtype of the weights.
        pad_id: token id used for right padding (``config.pad_token_id``).
        processor: a vision-language checkpoint's ``AutoProcessor`` (None for text models).
    """

    path: str
    kind: str
    replicas: list[Any]
    devices: list[str]
    tokenizer: Any
    config: Any
    fingerprint: str
    dtype: Any
    pad_id: int
    runtime: RuntimeConfig
    extra: dict[str, Any] = field(default_factory=dict)
    processor: Any = None


_MODELS: weakref.WeakValueDictionary[tuple[Any, ...], LoadedModel] = weakref.WeakValueDictionary()
_LOAD_LOCK = threading.Lock()


def _auto_class(kind: str, vision: bool = False) -> Any:
    import transformers

    if vision:
        if kind == "encoder":
            raise ConfigError("a vision-language checkpoint cannot be loaded as a text encoder")
        # Both kinds load weights this way; sequence_classification adds the score head.
        return (
            transformers.AutoModelForImageTextToText
            if kind == "causal_lm"
            else transformers.AutoModel
        )
    classes = {
        "sequence_classification": transformers.AutoModelForSequenceClassification,
        "causal_lm": transformers.AutoModelForCausalLM,
        "encoder": transformers.AutoModel,
    }
    if kind not in classes:
        raise ConfigError(f"model kind {kind!r} is not one of {sorted(classes)}")
    return classes[kind]


def _dtype_kwarg() -> str:
    # transformers 4.56 renamed from_pretrained(torch_dtype=) to dtype=; older versions would
    # silently store an unknown 'dtype' kwarg on the config instead of using it.
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def load_model(
    path: str | os.PathLike[str],
    kind: ModelKind,
    runtime: RuntimeConfig,
    *,
    model_kwargs: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load (or reuse) ``path`` as ``kind`` on the runtime's devices.

    Args:
        path: local Hugging Face model directory (no Hub downloads).
        kind: ``sequence_classification`` (AutoModelForSequenceClassification), ``causal_lm``
            (AutoModelForCausalLM) or ``encoder`` (AutoModel).
        runtime: device / dtype / attention / quantization settings.
        model_kwargs: extra ``from_pretrained`` keyword arguments (e.g. ``num_labels``).

    Returns:
        A ``LoadedModel``; the same object for the same (realpath, checkpoint fingerprint,
        kind, devices, dtype, attention, quantization, model_kwargs) while anyone holds a
        reference to it.

    Raises:
        ConfigError: the path does not exist / is not a model directory / cannot be loaded.
    """
    p = check_model_dir(path)
    devices = resolve_devices(runtime)
    dtypes = [resolve_dtype(runtime, d) for d in devices]
    attns = [resolve_attn(runtime, d) for d in devices]
    if len(set(dtypes)) > 1 or len(set(attns)) > 1:
        raise ConfigError(
            f"runtime.device: {devices} mixes CPU and CUDA; list devices of one kind "
            "(or set dtype and attn_implementation explicitly)"
        )
    if runtime.quantize == "dynamic_int8" and any(not d.startswith("cpu") for d in devices):
        raise ConfigError(
            "runtime.quantize: dynamic_int8 runs on CPU only; set device: cpu or quantize: none"
        )
    kw = dict(model_kwargs or {})
    # The checkpoint's content is part of the key: a directory re-saved in place (training
    # again into the same path) loads afresh instead of reusing stale weights.
    fingerprint = checkpoint_fingerprint(p)
    base = adapter_base(p)
    if base is not None:
        fingerprint = hashlib.sha256(
            f"{fingerprint}+{checkpoint_fingerprint(base)}".encode()
        ).hexdigest()[:16]
    key = (
        str(p),
        fingerprint,
        kind,
        tuple(devices),
        str(dtypes[0]),
        attns[0],
        runtime.quantize,
        json.dumps(kw, sort_keys=True, default=str),
    )
    with _LOAD_LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return cached
        loaded = _load(p, kind, runtime, devices, dtypes[0], attns[0], kw, fingerprint, base)
        _MODELS[key] = loaded
        return loaded


def _load(
    p: Path,
    kind: str,
    runtime: RuntimeConfig,
    devices: list[str],
    dtype: Any,
    attn: str,
    kw: dict[str, Any],
    fingerprint: str,
    base: Path | None,
) -> LoadedModel:

    apply_threads(runtime)
    vision = base is None and is_vision_checkpoint(p)
    processor = None
    if vision:
        vision_model_type(p)
        processor = load_processor(p)
        tokenizer = processor.tokenizer
    else:
        has_tokenizer = any(
            (p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
        )
        tokenizer = load_tokenizer(p if base is None or has_tokenizer else base)
    if tokenizer.pad_token_id is None:
        # Decoder tokenizers often have no pad token; any id works for right padding as long as
        # the model's config uses the same one (sequence-classification heads pool the last
        # token that is not pad_token_id).
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
    auto = _auto_class(kind, vision)
    load_kw: dict[str, Any] = {_dtype_kwarg(): dtype, "attn_implementation": attn, **kw}
    if base is not None and (p / "config.json").is_file() and "config" not in load_kw:
        # The adapter directory's config carries the fine-tuned head's shape and labels
        # (num_labels, id2label, problem_type); the base only supplies the frozen weights.
        from transformers import AutoConfig

        load_kw["config"] = AutoConfig.from_pretrained(str(p))
    weights = base if base is not None else p
    # The base of an adapter lacks the fine-tuned head, and transformers reports it as
    # "newly initialized"; the adapter supplies it, so that report would only alarm users.
    # A VLM classifier loads the backbone of a checkpoint saved with its LM head (reported as
    # unused weights): the score head replaces it.
    noisy = base is not None or (vision and kind == "sequence_classification")
    quiet = _quiet_transformers() if noisy else contextlib.nullcontext()
    try:
        with quiet:
            model = auto.from_pretrained(str(weights), **load_kw)
    except Exception as exc:
        message = str(exc).lower()
        no_sdpa = "sdpa" in message or "scaled_dot_product_attention" in message
        if attn == "sdpa" and no_sdpa and "attn_implementation" not in kw:
            # Some architectures have no SDPA kernel: fall back to eager attention.
            load_kw["attn_implementation"] = attn = "eager"
            with quiet:
                model = auto.from_pretrained(str(weights), **load_kw)
        else:
            raise ConfigError(
                f"path: cannot load {str(p)!r} as {kind}: {type(exc).__name__}: {exc}"
            ) from exc
    if base is not None:
        model = _merge_adapter(model, p)
    if vision and kind == "sequence_classification":
        model = attach_score_head(model, p)
    cfg = model.config
    pad_id = getattr(cfg, "pad_token_id", None)
    if vision and tokenizer.pad_token_id is not None:
        # A composite VLM config may carry a default pad id of another vocabulary (Idefics3:
        # 128002); VLM forwards read padding from the mask, so the tokenizer's id is safe.
        pad_id = tokenizer.pad_token_id
    if pad_id is None and tokenizer.pad_token_id is not None:
        # transformers' decoder sequence classifiers pool the rightmost token != pad_token_id;
        # without it they refuse batches > 1. TRL's RewardTrainer sets it the same way.
        cfg.pad_token_id = pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = 0
    model.eval()
    if runtime.quantize == "dynamic_int8":
        model = quantize_dynamic_int8(model)
    replicas: list[Any] = []
    by_device: dict[str, Any] = {}
    for i, dev in enumerate(devices):
        if dev not in by_device:
            # The first device takes the loaded weights; further devices get deep copies.
            by_device[dev] = model.to(dev) if i == 0 else copy.deepcopy(model).to(dev)
        replicas.append(by_device[dev])
    return LoadedModel(
        path=str(p),
        kind=kind,
        replicas=replicas,
        devices=devices,
        tokenizer=tokenizer,
        config=cfg,
        fingerprint=fingerprint,
        dtype=dtype,
        pad_id=int(pad_id),
        runtime=runtime,
        extra={"attn_implementation": attn},
        processor=processor,
    )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' logging at error level, no progress bars, while the block runs."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def _merge_adapter(model: Any, adapter_dir: Path) -> Any:
    """``model`` with the peft adapter in ``adapter_dir`` applied and merged into its weights.

    Merging once at load time makes inference cost the same as a plain checkpoint's.
    """
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ConfigError(
            f"path: {str(adapter_dir)!r} is a LoRA adapter; loading it needs peft "
            "(pip install peft)"
        ) from exc
    try:
        with warnings.catch_warnings():
            # peft calls transformers' deprecated is_gradient_checkpointing on load.
            warnings.simplefilter("ignore", FutureWarning)
            wrapped = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except Exception as exc:
        raise ConfigError(
            f"path: cannot apply the adapter in {str(adapter_dir)!r} to its base model: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return wrapped.merge_and_unload()


def quantize_dynamic_int8(model: Any) -> Any:
    """int8 weights (per output channel) with dynamic int8 activations for every ``nn.Linear``.

    Per-channel weight scales halve the decision flips of per-tensor ones on the shipped
    ``safety`` at the same speed (``benchmarks/bench_int8.py``: 3.2 % vs 6.7 % of 600 rows).
    """
    import warnings

    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:  # torch.ao.quantization is deprecated in favour of torchao
        raise ConfigError(
            "runtime.quantize: dynamic_int8 needs torch.ao.quantization, which this torch "
            f"({torch.__version__}) no longer ships; set quantize: none"
        ) from exc
    with warnings.catch_warnings():
        # torch >= 2.10 warns that torch.ao.quantization is deprecated; it still works, and the
        # warning would repeat in every worker that loads a model.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def clear_model_cache() -> None:
    """Forget every cached model (objects still referenced elsewhere stay alive)."""
    with _LOAD_LOCK:
        _MODELS.clear()


def cached_models() -> list[LoadedModel]:
    """Models currently alive in the process-wide cache."""
    return list(_MODELS.values())
