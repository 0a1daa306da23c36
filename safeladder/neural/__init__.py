"""The shared engine of the neural verifiers: loading, rendering and batched forward passes.

- ``runtime``: ``RuntimeConfig`` (device, dtype, attention, budgets, threads, cache, int8) and
  ``load_model`` (one process-wide ``LoadedModel`` per checkpoint and settings).
- ``rendering``: ``RenderConfig`` and ``encode_pairs`` (chat template or plain text, final-answer
  judging, prompt-first truncation with a counter).
- ``batching``: ``run_batched`` (dedup, LRU cache, length-sorted token-budget micro-batches,
  OOM halving, one thread per replica) and its pieces.

Importing this package does not import torch; the functions do.
"""

from safeladder.neural.batching import (
    cache_info,
    clear_caches,
    last_token_index,
    logits_forward,
    pad_right,
    plan_microbatches,
    run_batched,
)
from safeladder.neural.rendering import Encoded, RenderConfig, encode_pairs, final_answer
from safeladder.neural.runtime import (
    LoadedModel,
    RuntimeConfig,
    checkpoint_fingerprint,
    clear_model_cache,
    load_model,
    load_tokenizer,
)

__all__ = [
    "Encoded",
    "LoadedModel",
    "RenderConfig",
    "RuntimeConfig",
    "cache_info",
    "checkpoint_fingerprint",
    "clear_caches",
    "clear_model_cache",
    "encode_pairs",
    "final_answer",
    "last_token_index",
    "load_model",
    "load_tokenizer",
    "logits_forward",
    "pad_right",
    "plan_microbatches",
    "run_batched",
]
