"""Best-of-N: sample N completions per prompt in one batched call, keep the best by the reward.

Selection (``pick_best``), the same rule guided search uses for its final choice:
1. a candidate a gate vetoed is never chosen while an unvetoed one exists (safety is a hard
   constraint, not just a low score); if every candidate is vetoed, the fallback is returned;
2. the highest total wins; NaN (unscorable) ranks below every scored candidate;
3. ties go to the earliest sample (sampling order is seeded, so the choice is reproducible).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from safeladder.guidance.config import BestOfNConfig
from safeladder.guidance.corrections import CorrectionMemory, model_prompts
from safeladder.guidance.generator import TextGenerator
from safeladder.guidance.trace import Trace, candidates_from
from safeladder.rewards.reward import Reward
from safeladder.types import Prompt, RewardResult, Sample, SampleBatch


def as_samples(prompts: Iterable[Sample | Mapping[str, Any] | Prompt]) -> list[Sample]:
    """Prompts as ``Sample`` rows (reference and meta kept; the completion is ignored).

    A string or a list of chat messages is a prompt; a mapping is a sample dict whose
    ``completion`` may be left out.
    """
    out: list[Sample] = []
    for p in prompts:
        if isinstance(p, Sample):
            out.append(p)
        elif isinstance(p, Mapping):
            out.append(SampleBatch.coerce([{"completion": "", **dict(p)}])[0])
        else:
            out.append(Sample(prompt=p, completion=""))
    return out


def pick_best(scores: np.ndarray, gated: np.ndarray) -> tuple[int | None, str]:
    """Index of the best candidate and why; None when every candidate is vetoed (or none exist).

    Args:
        scores: float ``(n,)`` reward totals, NaN = unscorable.
        gated: bool ``(n,)``, True where a gate vetoed the candidate.

    >>> pick_best(np.array([0.2, np.nan, 0.9, 0.9]), np.array([False, False, False, False]))
    (2, 'highest score 0.9 of 4 candidates (2 tied; the earliest is kept)')
    >>> pick_best(np.array([5.0, 0.1]), np.array([True, False]))[0]
    1
    """
    scores = np.asarray(scores, dtype=np.float64)
    gated = np.asarray(gated, dtype=bool)
    if scores.shape != gated.shape:
        raise ValueError(f"scores {scores.shape} and gated {gated.shape} differ in shape")
    if scores.size == 0:
        return None, "no candidates"
    allowed = ~gated
    if not allowed.any():
        return None, f"a gate vetoed all {scores.size} candidates"
    usable = allowed & ~np.isnan(scores)
    if not usable.any():
        first = int(np.flatnonzero(allowed)[0])
        return first, "no candidate could be scored; the first unvetoed one is kept"
    best = float(scores[usable].max())
    tied = np.flatnonzero(usable & (scores == best))
    vetoed = int(gated.sum())
    why = f"highest score {best:.4g} of {scores.size} candidates"
    notes = []
    if tied.size > 1:
        notes.append(f"{tied.size} tied; the earliest is kept")
    if vetoed:
        notes.append(f"{vetoed} vetoed by a gate")
    return int(tied[0]), why + (f" ({'; '.join(notes)})" if notes else "")


def score_texts(reward: Reward, rows: Sequence[Sample], texts: Sequence[str]) -> RewardResult:
    """``reward.score`` of ``texts`` as completions of ``rows`` (prompt, reference, meta kept)."""
    batch = SampleBatch(
        prompts=[r.prompt for r in rows],
        completions=list(texts),
        references=[r.reference for r in rows],
        metas=[dict(r.meta) for r in rows],
    )
    return reward.score(batch)


def best_of_n(
    generator: TextGenerator,
    reward: Reward,
    prompts: Iterable[Sample | Mapping[str, Any] | Prompt],
    config: BestOfNConfig | None = None,
    *,
    max_new_tokens: int = 256,
    seed: int = 0,
    corrections: CorrectionMemory | None = None,
) -> list[Trace]:
    """Sample ``config.n`` completions per prompt, score them all in one reward call, pick the best.

    Args:
        generator: an ``HFGenerator`` (or anything implementing ``TextGenerator``).
        reward: the reward that ranks completions (its gates veto).
        prompts: P prompts (strings, chat messages, ``Sample`` rows or sample dicts with a
            reference / meta for the reward).
        config: ``n`` and the fallback text.
        max_new_tokens: tokens per completion at most.
        seed: sampling seed.
        corrections: inject the nearest stored corrections into what the model sees (the
            reward scores the original prompt); ``n=1`` with it is plain corrected generation.

    Returns:
        P ``Trace`` objects (mode ``best_of_n``); ``trace.candidates`` holds all N with scores.
    """
    cfg = config or BestOfNConfig()
    rows = as_samples(prompts)
    shown, used = model_prompts(rows, corrections)
    outs = generator.generate(
        [generator.render(p) for p in shown], cfg.n, max_new_tokens=max_new_tokens, seed=seed
    )
    flat_rows = [r for r, cands in zip(rows, outs, strict=True) for _ in cands]
    flat_texts = [c.text for cands in outs for c in cands]
    result = score_texts(reward, flat_rows, flat_texts)
    traces: list[Trace] = []
    start = 0
    fallback_rows: list[int] = []
    for i, (row, cands) in enumerate(zip(rows, outs, strict=True)):
        sl = slice(start, start + len(cands))
        start += len(cands)
        scored = candidates_from(
            [c.text for c in cands],
            result_rows(result, sl),
            finished=[c.finished for c in cands],
        )
        idx, why = pick_best(result.total[sl], result.gated[sl])
        if idx is None:
            fallback_rows.append(i)
        traces.append(
            Trace(
                mode="best_of_n",
                prompt_index=i,
                prompt=row.prompt,
                reference=row.reference,
                candidates=scored,
                chosen=idx,
                completion=cfg.fallback if idx is None else scored[idx].text,
                score=None if idx is None else scored[idx].score,
                fallback=idx is None,
                reason=why + ("; the fallback is returned" if idx is None else ""),
                generated_tokens=sum(c.n_tokens for c in cands),
                corrections=used[i],
            )
        )
    return apply_fallback_scores(reward, rows, traces, fallback_rows)


def apply_fallback_scores(
    reward: Reward, rows: Sequence[Sample], traces: list[Trace], which: Sequence[int]
) -> list[Trace]:
    """Score the fallback completion of the traces at ``which`` (one reward call) and record it."""
    if not which:
        return traces
    res = score_texts(reward, [rows[i] for i in which], [traces[i].completion for i in which])
    for j, i in enumerate(which):
        total = float(res.total[j])
        traces[i] = traces[i].model_copy(update={"score": None if total != total else total})
    return traces


def result_rows(result: RewardResult, rows: Sequence[int] | slice) -> RewardResult:
    """The rows ``rows`` (indices or a slice) of a ``RewardResult``, as a ``RewardResult``."""
    idx = np.arange(len(result))[rows] if isinstance(rows, slice) else np.asarray(rows, np.int64)
    return RewardResult(
        total=result.total[idx],
        terms={k: v.take(idx) for k, v in result.terms.items()},
        raw={k: v.take(idx) for k, v in result.raw.items()},
        gated=result.gated[idx],
        route=[result.route[int(i)] for i in idx],
        weights=result.weights,
        fingerprints=result.fingerprints,
        gate_by=[result.gate_by[int(i)] for i in idx] if result.gate_by else [],
    )
