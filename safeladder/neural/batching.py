"""The batching engine every neural verifier runs its forward passes through.

``run_batched(ids, forward, loaded, runtime)`` takes one token-id list per row (or one
``safeladder.neural.vision.VisionRow`` per row for a vision-language model) and a
``forward(batch_ids, model, device) -> float32 (len(batch_ids), k)`` function, and:

1. deduplicates identical rows (each distinct id list is run once; a ``VisionRow`` is identified
   by its ids and its images' content hashes, and its length counts its image tokens);
2. answers rows from an LRU cache shared process-wide (keyed by ``cache_key``, usually the
   verifier fingerprint) when ``runtime.cache_size > 0``;
3. sorts the rest by length and packs them into micro-batches of at most
   ``runtime.token_budget(devices)`` padded tokens (``max_tokens_per_batch``, capped by
   ``cpu_max_tokens_per_batch`` on CPU) and ``runtime.max_batch_size`` rows;
4. runs the micro-batches under ``torch.inference_mode()``, spread over the model replicas
   (one thread per replica); a CUDA out-of-memory error halves the micro-batch and retries;
5. returns ``(n, k)`` float32 in the original row order.

Example::

    def forward(batch, model, device):
        input_ids, mask = pad_right(batch, lm.pad_id, device)
        return model(input_ids=input_ids, attention_mask=mask).logits.float().cpu().numpy()

    logits = run_batched(encoded.ids, forward, lm, runtime, cache_key=verifier.fingerprint)
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from safeladder.neural.runtime import LoadedModel, RuntimeConfig, apply_threads
from safeladder.neural.vision import VisionRow

if TYPE_CHECKING:
    import torch

Forward = Callable[[list[Any], Any, Any], np.ndarray]
#: One row's model input: token ids, or a multimodal ``VisionRow``.
Row = Sequence[int] | VisionRow


def plan_microbatches(
    lengths: Sequence[int], max_tokens: int, max_batch: int, max_padding: float | None = None
) -> list[list[int]]:
    """Group row indices into micro-batches by length, longest first.

    Each micro-batch's padded size ``len(batch) * max(lengths[i] for i in batch)`` is at most
    ``max_tokens`` and it has at most ``max_batch`` rows; a row longer than ``max_tokens``
    forms a batch of its own. With ``max_padding`` (a fraction), a row only joins a batch if
    the batch's padding stays within that share of its padded size: on a CPU every padded
    position is computed for nothing, so a batch must not cost more than the rows alone.
    Ties keep the input order (stable sort).

    >>> plan_microbatches([5, 100, 7, 6], max_tokens=20, max_batch=8)
    [[1], [2, 3], [0]]
    >>> plan_microbatches([100, 90, 89], max_tokens=1000, max_batch=8, max_padding=0.05)
    [[0, 1], [2]]
    """
    if max_tokens < 1 or max_batch < 1:
        raise ValueError(f"max_tokens ({max_tokens}) and max_batch ({max_batch}) must be >= 1")
    if max_padding is not None and not 0.0 <= max_padding < 1.0:
        raise ValueError(f"max_padding must be in [0, 1), got {max_padding}")
    order = sorted(range(len(lengths)), key=lambda i: -int(lengths[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0  # longest row in `current` = its first row, since rows come longest first
    real = 0  # real (unpadded) tokens in `current`
    for i in order:
        n = max(int(lengths[i]), 1)
        if current:
            padded = (len(current) + 1) * width
            too_padded = max_padding is not None and padded - (real + n) > max_padding * padded
            if padded > max_tokens or len(current) >= max_batch or too_padded:
                batches.append(current)
                current = []
        if not current:
            width, real = n, 0
        current.append(i)
        real += n
    if current:
        batches.append(current)
    return batches


def pad_right(
    ids: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(input_ids, attention_mask)``, both LongTensor ``[b, L]``.

    ``L`` is the longest row; padding positions hold ``pad_id`` and mask 0.

    >>> ids, mask = pad_right([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    import torch

    b = len(ids)
    width = max((len(r) for r in ids), default=0)
    input_ids = torch.full((b, width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    for j, row in enumerate(ids):
        if row:
            input_ids[j, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
            mask[j, : len(row)] = 1
    return input_ids.to(device), mask.to(device)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token under right padding, LongTensor ``[b]``.

    >>> import torch
    >>> last_token_index(torch.tensor([[1, 1, 1], [1, 0, 0]])).tolist()
    [2, 0]
    """
    return (attention_mask.long().sum(dim=-1) - 1).clamp(min=0)


class _LRU:
    """A thread-safe LRU map from a digest of token ids to an output row."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.data: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def get(self, key: bytes) -> np.ndarray | None:
        with self.lock:
            row = self.data.get(key)
            if row is None:
                self.misses += 1
                return None
            self.data.move_to_end(key)
            self.hits += 1
            return row

    def put(self, key: bytes, row: np.ndarray) -> None:
        with self.lock:
            self.data[key] = row
            self.data.move_to_end(key)
            while len(self.data) > self.maxsize:
                self.data.popitem(last=False)


_CACHES: dict[str, _LRU] = {}
_CACHES_LOCK = threading.Lock()


def _cache_for(cache_key: str, size: int) -> _LRU:
    with _CACHES_LOCK:
        c = _CACHES.get(cache_key)
        if c is None:
            c = _CACHES[cache_key] = _LRU(size)
        c.maxsize = size  # the latest caller's size wins (same fingerprint, same runtime)
        return c


def cache_info(cache_key: str) -> dict[str, int]:
    """``{"hits", "misses", "size"}`` of the LRU cache for ``cache_key`` (zeros when none)."""
    with _CACHES_LOCK:
        c = _CACHES.get(cache_key)
    if c is None:
        return {"hits": 0, "misses": 0, "size": 0}
    with c.lock:
        return {"hits": c.hits, "misses": c.misses, "size": len(c.data)}


def clear_caches() -> None:
    """Drop every LRU cache of model outputs."""
    with _CACHES_LOCK:
        _CACHES.clear()


def _digest(row: tuple[int, ...]) -> bytes:
    return hashlib.blake2b(np.asarray(row, dtype=np.int64).tobytes(), digest_size=16).digest()


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _as_input(row: tuple[int, ...] | VisionRow) -> list[int] | VisionRow:
    return row if isinstance(row, VisionRow) else list(row)


def _run_one(
    batch: list[tuple[int, ...] | VisionRow],
    forward: Forward,
    model: Any,
    device: Any,
    stats: dict[str, int],
) -> list[np.ndarray]:
    """Forward one micro-batch; on CUDA OOM split it in two halves and recurse (down to 1 row)."""
    oom = False
    try:
        out = forward([_as_input(r) for r in batch], model, device)
    except Exception as exc:
        if not _is_oom(exc) or len(batch) == 1:
            raise
        oom = True  # split below, outside the handler, so the traceback frees the activations
    if oom:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        stats["oom_splits"] = stats.get("oom_splits", 0) + 1
        half = len(batch) // 2
        return _run_one(batch[:half], forward, model, device, stats) + _run_one(
            batch[half:], forward, model, device, stats
        )
    stats["forward_calls"] = stats.get("forward_calls", 0) + 1
    arr = np.asarray(out, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != len(batch):
        raise ValueError(
            f"forward returned shape {arr.shape} for a micro-batch of {len(batch)} rows; "
            "expected (rows, k)"
        )
    return list(arr)


def run_batched(
    ids: Sequence[Row],
    forward: Forward,
    loaded: LoadedModel,
    runtime: RuntimeConfig,
    *,
    cache_key: str | None = None,
    out_dim: int | None = None,
    stats: dict[str, int] | None = None,
) -> np.ndarray:
    """Score ``ids`` with ``forward`` in deduplicated, length-sorted micro-batches.

    Args:
        ids: one non-empty token-id list (or ``VisionRow``) per row.
        forward: ``forward(batch_ids, model, device) -> np.ndarray`` float32 of shape
            ``(len(batch_ids), k)``; called under ``torch.inference_mode()`` with one replica of
            ``loaded`` and its device. It must treat rows independently (right padding).
        loaded: the model (``load_model``); its replicas share the micro-batches.
        runtime: batching budgets, threads and cache size.
        cache_key: the caller's fingerprint; with ``runtime.cache_size > 0`` outputs are cached
            across calls under ``(cache_key, ids)``. None = no cache.
        out_dim: ``k`` to use when there are no rows (the result is then ``(0, out_dim)``).
        stats: if given, filled with counts: ``rows``, ``unique``, ``cache_hits``,
            ``forward_calls``, ``microbatches``, ``oom_splits``.

    Returns:
        float32 array ``(len(ids), k)`` in the order of ``ids``.

    Raises:
        ValueError: a row is empty, or ``forward`` returned a wrong shape.
        torch.cuda.OutOfMemoryError: a single row does not fit.
    """
    st: dict[str, int] = stats if stats is not None else {}
    for key in ("cache_hits", "forward_calls", "microbatches", "oom_splits"):
        st[key] = 0
    n = len(ids)
    st["rows"] = n
    if n == 0:
        st["unique"] = 0
        return np.zeros((0, out_dim or 0), dtype=np.float32)
    # 1. dedup: rows with identical ids share one result.
    first_of: dict[Any, int] = {}
    inverse = np.empty(n, dtype=np.int64)
    uniq: list[tuple[int, ...] | VisionRow] = []
    for i, row in enumerate(ids):
        item: tuple[int, ...] | VisionRow = (
            row if isinstance(row, VisionRow) else tuple(int(x) for x in row)
        )
        if not len(item):
            raise ValueError(f"row {i} has no tokens; a verifier must not send empty rows")
        ident = item.key() if isinstance(item, VisionRow) else item
        j = first_of.get(ident)
        if j is None:
            j = first_of[ident] = len(uniq)
            uniq.append(item)
        inverse[i] = j
    st["unique"] = len(uniq)
    results: list[np.ndarray | None] = [None] * len(uniq)
    # 2. cache lookup.
    cache = (
        _cache_for(cache_key, runtime.cache_size)
        if cache_key is not None and runtime.cache_size > 0
        else None
    )
    digests: list[bytes] = []
    todo: list[int] = []
    if cache is not None:
        digests = [t.digest() if isinstance(t, VisionRow) else _digest(t) for t in uniq]
        for j, dg in enumerate(digests):
            hit = cache.get(dg)
            if hit is None:
                todo.append(j)
            else:
                results[j] = hit
                st["cache_hits"] += 1
    else:
        todo = list(range(len(uniq)))
    # 3. plan and 4. run.
    if todo:
        plan = plan_microbatches(
            [len(uniq[j]) for j in todo],
            runtime.token_budget([str(d) for d in loaded.devices]),
            runtime.max_batch_size,
            runtime.padding_cap([str(d) for d in loaded.devices]),
        )
        batches = [[todo[k] for k in mb] for mb in plan]
        st["microbatches"] = len(batches)
        outs = _execute(batches, uniq, forward, loaded, runtime, st)
        for mb, rows in zip(batches, outs, strict=True):
            for j, out_row in zip(mb, rows, strict=True):
                results[j] = out_row
                if cache is not None:
                    cache.put(digests[j], out_row)
    widths = {r.shape[0] for r in results if r is not None}
    if len(widths) != 1:
        raise ValueError(f"forward returned rows of different widths: {sorted(widths)}")
    table = np.stack([r for r in results if r is not None]).astype(np.float32, copy=False)
    return table[inverse]


def _attention_backends(runtime: RuntimeConfig, dev: str) -> contextlib.AbstractContextManager[Any]:
    """SDPA backends for a forward on ``dev``: cuDNN excluded on CUDA when the runtime says so.

    ``sdpa_kernel`` only narrows which SDPA kernels may run inside the ``with``; it changes
    no result beyond kernel rounding.
    """
    if not dev.startswith("cuda") or runtime.cudnn_attention:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )


def _execute(
    batches: list[list[int]],
    uniq: list[tuple[int, ...] | VisionRow],
    forward: Forward,
    loaded: LoadedModel,
    runtime: RuntimeConfig,
    st: dict[str, int],
) -> list[list[np.ndarray]]:
    """Run every micro-batch, on one replica in this thread or on each replica in its own."""
    import torch

    outs: list[list[np.ndarray] | None] = [None] * len(batches)
    replicas = list(zip(loaded.replicas, loaded.devices, strict=True))
    on_cpu = any(str(d).startswith("cpu") for d in loaded.devices)
    if len(replicas) == 1 or len(batches) == 1:
        if on_cpu:
            apply_threads(runtime)
        model, dev = replicas[0]
        with torch.inference_mode(), _attention_backends(runtime, str(dev)):
            for b, mb in enumerate(batches):
                outs[b] = _run_one([uniq[j] for j in mb], forward, model, torch.device(dev), st)
        return [o for o in outs if o is not None]

    # Several replicas: a shared queue, longest micro-batches first, so a slow replica never
    # holds the last big batch while the others idle.
    work: queue.Queue[int] = queue.Queue()
    for b in range(len(batches)):
        work.put(b)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(model: Any, dev: str) -> None:
        local: dict[str, int] = {}
        try:
            if dev.startswith("cpu"):
                apply_threads(runtime)  # intra-op thread count is per calling thread
            elif dev.startswith("cuda"):
                torch.cuda.set_device(torch.device(dev))
            # inference_mode is thread-local: enter it in the worker thread.
            with torch.inference_mode(), _attention_backends(runtime, dev):
                while not errors:
                    try:
                        b = work.get_nowait()
                    except queue.Empty:
                        return
                    outs[b] = _run_one(
                        [uniq[j] for j in batches[b]], forward, model, torch.device(dev), local
                    )
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            with lock:
                for k, v in local.items():
                    st[k] = st.get(k, 0) + v

    threads = [
        threading.Thread(target=worker, args=(m, d), name=f"safeladder-replica-{i}", daemon=True)
        for i, (m, d) in enumerate(replicas)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [o for o in outs if o is not None]


def logits_forward(pad_id: int) -> Forward:
    """A ``forward`` for sequence-classification models: right-pad, run, return the logits.

    The model pools the last non-pad token itself (decoder heads use ``config.pad_token_id``,
    which must equal ``pad_id``: ``LoadedModel.pad_id`` is). Returns float32 ``(b, num_labels)``.
    """

    def forward(batch: list[list[int]], model: Any, device: Any) -> np.ndarray:
        input_ids, mask = pad_right(batch, pad_id, device)
        out = model(input_ids=input_ids, attention_mask=mask)
        return out.logits.float().cpu().numpy()

    return forward
