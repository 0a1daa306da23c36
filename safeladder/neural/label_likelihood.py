"""Label log-likelihoods of a causal LM judge: the two algorithms, the label softmax, aggregation.

A judge "answers" with one of ``m`` fixed labels; nothing is generated. For each prefix (the
judge input ids) and each label ``j`` (its token ids)::

    ll_ij = Σ_t log p(label_j[t] | prefix_i, label_j[:t])
    p_ij  = softmax_j(ll_ij)   (``length_normalize``: ll_ij / len(label_j) first)

- ``label_loglik_duplicate``: one forward over every ``prefix + label`` pair (``b·m`` rows).
- ``label_loglik_shared_prefix``: each prefix once with the KV cache; every label's first token
  from the prefix's last logits, the rest of each multi-token label in one small cached pass.
  All three give the same numbers (the label_judge tests check 1e-4).
- ``label_loglik_tree``: one forward per batch: each prefix once, followed by every label's
  tokens as siblings under a 4-D attention mask (no KV cache, no pass per label).
- ``label_forward``: any of them as a ``forward`` for ``run_batched``.

A prefix is a token-id list, or a ``VisionRow`` for a vision-language judge: its image tensors
go into the prefix pass (``vision.collate``, left padding, the model's own positions), and the
label tokens continue each row's positions after its cached prefix.
- ``aggregate_scores``: probabilities → one score per row (``expected`` / ``argmax`` /
  ``true_false``).

torch is imported inside the functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from safeladder.neural.activations import softmax
from safeladder.neural.batching import Forward
from safeladder.neural.vision import VisionRow, collate

if TYPE_CHECKING:
    import torch


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad ``seqs`` → ``(input_ids, attention_mask, position_ids)``, each ``[b, L]``.

    Left padding puts every row's last token in the last column, so the logits needed (the last
    one, or the last k) are the same columns for every row and ``logits_to_keep`` applies;
    explicit position ids keep each row's positions 0..n-1 as if it were alone.
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def _left_batch(
    model: Any, seqs: Sequence[Any], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], Any]:
    """Left-padded ``(input_ids, mask, model kwargs, next_positions(n))`` of token lists or
    ``VisionRow``s; ``next_positions(n)`` gives the positions of ``n`` tokens appended to each."""
    import torch

    if seqs and isinstance(seqs[0], VisionRow):
        dtype = next(model.parameters()).dtype
        c = collate(seqs, pad_id, device, model, left=True, dtype=dtype)
        extra = {"position_ids": c.position_ids, **c.kwargs}
        return c.input_ids, c.attention_mask, extra, c.next_positions
    ids, mask, pos = left_pad(seqs, pad_id, device)
    lengths = mask.sum(-1, keepdim=True)

    def next_positions(n: int) -> torch.Tensor:
        return lengths + torch.arange(n, device=ids.device)

    return ids, mask, {"position_ids": pos}, next_positions


def _extend(prefix: Any, label: Sequence[int]) -> Any:
    return prefix.extended(label) if isinstance(prefix, VisionRow) else [*prefix, *label]


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (transformers >= 4.45 causal LMs)."""
    return _accepts(model, "logits_to_keep")


def _accepts(model: Any, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _cache_of(out: Any) -> Any:
    """The KV cache of a forward's output (``cache`` in transformers >= 5.2x, else
    ``past_key_values``)."""
    got = getattr(out, "cache", None)
    return got if got is not None else getattr(out, "past_key_values", None)


def label_loglik_duplicate(
    model: Any,
    prefixes: Sequence[Any],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
) -> np.ndarray:
    """Summed label log-likelihoods from one forward over every ``prefix + label`` pair.

    Args:
        model: a causal LM (``model(input_ids, attention_mask, position_ids).logits``).
        prefixes: ``b`` token-id lists (each non-empty) or ``VisionRow``s.
        labels: ``m`` non-empty token-id lists.

    Returns:
        float32 ``[b, m]``: ``Σ_t log p(label_j[t] | prefix_i, label_j[:t])``.
    """
    import torch

    k = max(len(lab) for lab in labels)
    seqs = [_extend(p, lab) for p in prefixes for lab in labels]
    ids, mask, extra, _ = _left_batch(model, seqs, pad_id, device)
    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": False, **extra}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = k + 1
    logits = model(input_ids=ids, **kwargs).logits[:, -(k + 1) : -1].float()  # [b*m, k, V]
    logp = torch.log_softmax(logits, dim=-1)
    # Column c of ``logp`` predicts the token at column width - k + c of ``ids``; label j fills
    # the last n_j columns, i.e. columns k - n_j .. k - 1. One gather, one mask, one sum.
    tok_lp = logp.gather(-1, ids[:, -k:].unsqueeze(-1)).squeeze(-1)  # [b*m, k]
    n = torch.tensor([len(lab) for lab in labels], device=ids.device).repeat(len(prefixes))
    keep = torch.arange(k, device=ids.device)[None, :] >= (k - n)[:, None]
    # where, not multiply: columns before a short label may sit on padding (NaN-prone logits).
    ll = torch.where(keep, tok_lp, torch.zeros_like(tok_lp)).double().sum(-1)
    return ll.view(len(prefixes), len(labels)).detach().cpu().numpy().astype(np.float32)


def label_loglik_shared_prefix(
    model: Any,
    prefixes: Sequence[Any],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
) -> np.ndarray:
    """Summed label log-likelihoods, running each prefix once and the labels over its KV cache.

    Same contract as ``label_loglik_duplicate`` (float32 ``[b, m]``). The first token of every
    label is read from the prefix's last logits; each multi-token label's remaining tokens take
    one small pass of ``[b, n - 1]`` tokens over the cached prefix, after which the cache is
    cropped back to the prefix. Falls back to ``label_loglik_duplicate`` when the model returns
    no croppable cache, or when a row is longer than the model's sliding window.
    """
    import torch

    b = len(prefixes)
    multi = any(len(lab) > 1 for lab in labels)
    longest = max((len(p) for p in prefixes if not isinstance(p, VisionRow)), default=0)
    if multi and window_exceeded(model, longest + max(len(lab) for lab in labels)):
        return label_loglik_duplicate(model, prefixes, labels, pad_id, device)
    ids, mask, extra, next_positions = _left_batch(model, prefixes, pad_id, device)
    # Single-token labels need only the prefix's last logits: no cache to keep.
    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": multi, **extra}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = 1
    out = model(input_ids=ids, **kwargs)
    cache: Any = _cache_of(out)
    # transformers 5.2x renamed the forward's past_key_values to cache (the old name warns).
    cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"
    if multi and (cache is None or not getattr(cache, "is_croppable", False)):
        return label_loglik_duplicate(model, prefixes, labels, pad_id, device)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [b, V]
    heads = torch.tensor([lab[0] for lab in labels], dtype=torch.long, device=first.device)
    ll = first[:, heads].double()  # [b, m]: every label's first token, from the prefix pass
    for j, lab in enumerate(labels):
        n = len(lab)
        if n == 1:
            continue
        step = torch.tensor(lab[:-1], dtype=torch.long, device=ids.device).expand(b, n - 1)
        step_mask = torch.cat([mask, torch.ones_like(step)], dim=-1)
        step_pos = next_positions(n - 1)
        res = model(
            input_ids=step,
            attention_mask=step_mask,
            position_ids=step_pos,
            use_cache=True,
            **{cache_kw: cache},
        )
        logp = torch.log_softmax(res.logits.float(), dim=-1)  # [b, n-1, V]
        tgt = torch.tensor(lab[1:], dtype=torch.long, device=logp.device)
        ll[:, j] += logp[:, torch.arange(n - 1, device=logp.device), tgt].double().sum(-1)
        # Back to the prefix for the next label. A negative argument removes that many tokens in
        # transformers 5 and means "keep all but that many" in 4.x: the same cut in both.
        cache.crop(-(n - 1))
    return ll.detach().cpu().numpy().astype(np.float32)


def window_exceeded(model: Any, width: int) -> bool:
    """Whether ``model`` has a sliding attention window narrower than ``width`` tokens: then
    only a full forward (``label_loglik_duplicate``) applies it (a block mask would not, and
    a sliding-window KV cache cannot be cropped back past its window)."""
    cfg = getattr(model, "config", None)
    window = getattr(cfg, "sliding_window", None)
    return bool(getattr(cfg, "use_sliding_window", True) and window and width > window)


#: Largest ``b · width²`` attention mask ``label_loglik_tree`` builds (elements); past it the
#: KV-cache path runs instead (2^28 bf16 elements = 512 MiB).
TREE_MAX_MASK = 2**28


def tree_supported(model: Any, prefixes: Sequence[Any], width: int = 0) -> bool:
    """Whether ``label_loglik_tree`` can run on ``prefixes`` laid out ``width`` tokens wide.

    It needs token-id prefixes (not ``VisionRow``s, whose positions the model builds itself),
    a transformers model whose attention kernel takes a 4-D additive mask (eager / SDPA; not
    flash-attention or flex), no sliding window narrower than ``width`` (the mask would not apply it) and a mask
    of at most ``TREE_MAX_MASK`` elements.
    """
    cfg = getattr(model, "config", None)
    impl = getattr(cfg, "_attn_implementation", None)  # None: not a transformers model
    if window_exceeded(model, width) or len(prefixes) * width * width > TREE_MAX_MASK:
        return False
    return not (prefixes and isinstance(prefixes[0], VisionRow)) and impl in ("eager", "sdpa")


def label_loglik_tree(
    model: Any,
    prefixes: Sequence[Any],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
) -> np.ndarray:
    """Summed label log-likelihoods from ONE forward: each prefix once, its labels as siblings.

    Same contract as ``label_loglik_duplicate`` (float32 ``[b, m]``). Each row is laid out as
    ``[pad…, prefix, label_1[:-1], …, label_m[:-1]]`` (left padded) under a 4-D additive mask:
    the prefix is causal, every label segment sees the whole prefix and its own earlier tokens
    but no other label, and label ``j``'s token ``t`` sits at position ``len(prefix) + t``, as if
    it followed the prefix alone. The prefix's last logits give every label's first token; each
    segment's logits give the rest. No KV cache and no per-label pass: ``b`` rows of
    ``len(prefix) + Σ_j (n_j - 1)`` tokens. Falls back to ``label_loglik_shared_prefix`` where
    ``tree_supported`` says no (which runs ``label_loglik_duplicate`` past a sliding window).
    """
    import torch

    tails = [list(lab[:-1]) for lab in labels]  # the tokens fed; a label's last is only read
    seg_len = [len(t) for t in tails]
    s = sum(seg_len)
    width = max((len(p) for p in prefixes if not isinstance(p, VisionRow)), default=0) + s
    if not tree_supported(model, prefixes, width):
        return label_loglik_shared_prefix(model, prefixes, labels, pad_id, device)
    b = len(prefixes)
    # Segment of each of the last s columns (-1: none), and each column's offset in it.
    seg = torch.tensor([j for j, n in enumerate(seg_len) for _ in range(n)], dtype=torch.long)
    off = torch.tensor([t for n in seg_len for t in range(n)], dtype=torch.long)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    pos = torch.zeros((b, width), dtype=torch.long)
    tail_ids = torch.tensor([x for t in tails for x in t], dtype=torch.long)
    plen = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
    for i, p in enumerate(prefixes):
        n = len(p)
        ids[i, width - s - n : width - s] = torch.tensor(list(p), dtype=torch.long)
        pos[i, width - s - n : width - s] = torch.arange(n)
    if s:
        ids[:, width - s :] = tail_ids
        pos[:, width - s :] = plen[:, None] + off[None, :]
    # Who sees whom, built from per-column tags: segment (-1 prefix, -2 pad) and order.
    col = torch.arange(width)
    tag = torch.full((b, width), -1, dtype=torch.long)
    tag[col[None, :] < (width - s - plen)[:, None]] = -2  # left padding
    if s:
        tag[:, width - s :] = seg
    q, k = tag[:, :, None], tag[:, None, :]
    causal = col[None, :, None] >= col[None, None, :]
    allowed = causal & (k != -2) & ((k == -1) | (k == q))
    allowed |= torch.eye(width, dtype=torch.bool)[None]  # a pad row sees itself: no all-masked row
    dtype = getattr(model, "dtype", torch.float32)
    mask = torch.zeros((b, 1, width, width), dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    kwargs: dict[str, Any] = {"attention_mask": mask.to(device), "use_cache": False}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = s + 1
    out = model(input_ids=ids.to(device), position_ids=pos.to(device), **kwargs)
    logp = torch.log_softmax(out.logits[:, -(s + 1) :].float(), dim=-1)  # [b, s + 1, V]
    heads = torch.tensor([lab[0] for lab in labels], dtype=torch.long, device=logp.device)
    ll = logp[:, 0, heads].double()  # [b, m]: first tokens from the prefix's last column
    start = 1
    for j, lab in enumerate(labels):
        n = seg_len[j]
        if n:
            tgt = torch.tensor(list(lab[1:]), dtype=torch.long, device=logp.device)
            cols = torch.arange(start, start + n, device=logp.device)
            ll[:, j] += logp[:, cols, tgt].double().sum(-1)
            start += n
    return ll.detach().cpu().numpy().astype(np.float32)


def label_probabilities(loglik: np.ndarray, lengths: Sequence[int] | None = None) -> np.ndarray:
    """Softmax over the allowed labels: ``[b, m]`` log-likelihoods → ``[b, m]`` probabilities.

    ``lengths`` (tokens per label) turns sums into per-token means first (``length_normalize``).

    >>> label_probabilities(np.log(np.array([[1.0, 3.0]]))).round(2).tolist()
    [[0.25, 0.75]]
    """
    x = np.asarray(loglik, dtype=np.float64)
    if lengths is not None:
        x = x / np.asarray(lengths, dtype=np.float64)[None, :]
    return softmax(x)


def aggregate_scores(
    probs: np.ndarray,
    rewards: np.ndarray,
    mode: str,
    true_index: int | None = None,
    false_index: int | None = None,
) -> np.ndarray:
    """``[b, m]`` label probabilities → ``[b]`` scores (see the module docstring for the modes).

    >>> p = np.array([[0.25, 0.75]]); r = np.array([1.0, 0.0])
    >>> aggregate_scores(p, r, "expected").tolist(), aggregate_scores(p, r, "argmax").tolist()
    ([0.25], [0.0])
    >>> aggregate_scores(p, r, "true_false", 0, 1).tolist()
    [0.25]
    """
    if mode == "expected":
        return probs @ rewards
    if mode == "argmax":
        return rewards[np.argmax(probs, axis=1)]
    if mode == "true_false":
        assert true_index is not None and false_index is not None
        return (probs[:, true_index] + 1.0 - probs[:, false_index]) / 2.0
    raise ValueError(f"aggregate: unknown mode {mode!r}")


def label_forward(
    labels: Sequence[Sequence[int]],
    pad_id: int,
    scoring: Literal["shared_prefix", "duplicate", "tree"] = "shared_prefix",
) -> Forward:
    """A ``run_batched`` forward: prefixes ``[b]`` → float32 label log-likelihoods ``[b, m]``."""
    fn = {
        "shared_prefix": label_loglik_shared_prefix,
        "duplicate": label_loglik_duplicate,
        "tree": label_loglik_tree,
    }[scoring]
    label_lists = [list(lab) for lab in labels]

    def forward(batch_ids: list[Any], model: Any, device: Any) -> np.ndarray:
        return fn(model, batch_ids, label_lists, pad_id, device)

    return forward
