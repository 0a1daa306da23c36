"""Step-level guided search: a reward steers generation one step at a time; gates are hard limits.

Per prompt the search keeps up to ``beams`` prefixes (it starts from the empty one). Each step:

1. every kept prefix of every prompt is extended by ``candidates`` sampled continuations that end
   at the step separator, at EOS or after ``step.max_tokens`` tokens: **one** generator call for
   all prompts and beams (each prefix is prefilled once and its KV cache shared by its samples);
2. every ``prompt + prefix + continuation`` of every prompt is scored in **one** call of the step
   reward (any ``Reward``; a ``step_scorer`` term gives a process reward over the steps so far);
3. a candidate a gate vetoes is pruned (reason recorded) and never extended; an exact duplicate of
   an earlier candidate of the same prompt is pruned too (it would waste a beam);
4. the ``beams`` best survivors (NaN below every score, ties to the earliest) are kept; a kept
   candidate the model ended (EOS) or that used up ``max_new_tokens`` is finished.

The search stops when a prompt has no unfinished beam, or after ``max_steps`` (unfinished beams
are then final as they are). The final choice is ``pick_best`` over the finished beams under the
**final** reward (again: never a vetoed one while an unvetoed one exists). If at some step every
candidate of a prompt is vetoed and no beam has finished, the search backs off to the safe
``fallback`` text instead of emitting an unsafe step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeladder.guidance.best_of_n import (
    apply_fallback_scores,
    as_samples,
    pick_best,
    result_rows,
    score_texts,
)
from safeladder.guidance.config import GuidedConfig
from safeladder.guidance.corrections import CorrectionMemory, model_prompts
from safeladder.guidance.generator import TextGenerator
from safeladder.guidance.trace import Candidate, StepTrace, Trace, candidates_from
from safeladder.rewards.reward import Reward
from safeladder.types import Prompt, Sample

# Seeds of successive generator calls are spread by a prime so that calls never share a stream.
_SEED_STRIDE = 1_000_003


@dataclass
class _Beam:
    text: str
    tokens: int
    finished: bool = False


def _rank_key(score: float | None, index: int) -> tuple[int, float, int]:
    """Sort key: scored before unscored, higher score first, earlier first."""
    if score is None or math.isnan(score):
        return (1, 0.0, index)
    return (0, -score, index)


def guided_search(
    generator: TextGenerator,
    reward: Reward,
    prompts: Iterable[Sample | Mapping[str, Any] | Prompt],
    config: GuidedConfig | None = None,
    *,
    step_reward: Reward | None = None,
    max_new_tokens: int = 256,
    seed: int = 0,
    corrections: CorrectionMemory | None = None,
) -> list[Trace]:
    """Run step-level guided search on every prompt at once (see the module docstring).

    Args:
        generator: an ``HFGenerator`` or any ``TextGenerator``.
        reward: the final reward (chooses among finished beams; its gates veto).
        prompts: P prompts (strings, chat messages, ``Sample`` rows or sample dicts).
        config: beams, candidates per beam, step end, max steps, fallback text.
        step_reward: scores prefixes after each step and prunes by its gates (default: ``reward``).
        max_new_tokens: tokens per completion at most, over all steps.
        seed: sampling seed (each step uses its own derived seed).
        corrections: inject the nearest stored corrections into what the model sees (step
            and final rewards score the original prompt).

    Returns:
        P ``Trace`` objects (mode ``guided``) with every step's candidates, scores and pruning.
    """
    cfg = config or GuidedConfig()
    scorer = step_reward or reward
    rows = as_samples(prompts)
    shown, used = model_prompts(rows, corrections)
    rendered = [generator.render(p) for p in shown]
    n_prompts = len(rows)
    beams: list[list[_Beam]] = [[_Beam("", 0)] for _ in rows]
    done: list[list[_Beam]] = [[] for _ in rows]
    fell_back = [False] * n_prompts
    steps: list[list[StepTrace]] = [[] for _ in rows]
    spent = [0] * n_prompts
    for step in range(cfg.max_steps):
        work = [(p, b) for p in range(n_prompts) for b in beams[p]]
        if not work:
            break
        conts = _extend(generator, rendered, work, cfg, max_new_tokens, seed + step * _SEED_STRIDE)
        owners: list[int] = []
        parents: list[int] = []
        cands: list[_Beam] = []
        parent_of = {id(b): j for p in range(n_prompts) for j, b in enumerate(beams[p])}
        for (p, beam), outs in zip(work, conts, strict=True):
            for c in outs:
                spent[p] += c.n_tokens
                tokens = beam.tokens + c.n_tokens
                ended = c.finished or tokens >= max_new_tokens or not c.text
                cands.append(_Beam(beam.text + c.text, tokens, ended))
                owners.append(p)
                parents.append(parent_of[id(beam)])
        result = score_texts(scorer, [rows[p] for p in owners], [c.text for c in cands])
        for p in range(n_prompts):
            mine = [j for j, o in enumerate(owners) if o == p]
            if not mine:
                continue
            scored = candidates_from(
                [cands[j].text for j in mine],
                result_rows(result, mine),
                parent=[parents[j] for j in mine],
                finished=[cands[j].finished for j in mine],
            )
            _prune(scored)
            alive = [k for k, c in enumerate(scored) if c.pruned is None]
            alive.sort(key=lambda k: _rank_key(scored[k].score, k))
            kept = sorted(alive[: cfg.beams])
            for k in alive[cfg.beams :]:
                scored[k].pruned = f"not in the top {cfg.beams} of this step"
            next_beams = [cands[mine[k]] for k in kept]
            done[p].extend(b for b in next_beams if b.finished)
            beams[p] = [b for b in next_beams if not b.finished]
            vetoed_all = not alive and not done[p]
            fell_back[p] = fell_back[p] or vetoed_all
            steps[p].append(
                StepTrace(
                    index=step,
                    beams_in=[b.text for q, b in work if q == p],
                    candidates=scored,
                    kept=kept,
                    fallback=vetoed_all,
                )
            )
    for p in range(n_prompts):
        done[p].extend(beams[p])  # out of steps: unfinished beams are final as they are
    traces = _finish(reward, rows, done, fell_back, steps, spent, cfg)
    return [t.model_copy(update={"corrections": u}) for t, u in zip(traces, used, strict=True)]


def _extend(
    generator: TextGenerator,
    rendered: list[str],
    work: list[tuple[int, _Beam]],
    cfg: GuidedConfig,
    max_new_tokens: int,
    seed: int,
) -> list[list[Any]]:
    """``cfg.candidates`` continuations per (prompt, beam): one generator call per token budget."""
    budgets = [min(cfg.step.max_tokens, max_new_tokens - b.tokens) for _, b in work]
    out: list[list[Any]] = [[] for _ in work]
    for g, budget in enumerate(sorted(set(budgets), reverse=True)):
        idx = [i for i, x in enumerate(budgets) if x == budget]
        got = generator.generate(
            [rendered[work[i][0]] + work[i][1].text for i in idx],
            cfg.candidates,
            max_new_tokens=budget,
            stop=cfg.step.separator,
            seed=seed + g,
        )
        for i, conts in zip(idx, got, strict=True):
            out[i] = conts
    return out


def _prune(scored: list[Candidate]) -> None:
    """Mark vetoed candidates and exact duplicates (in place)."""
    seen: dict[str, int] = {}
    for k, c in enumerate(scored):
        if c.gated:
            c.pruned = f"vetoed by the gate of term {c.gated_by!r}" if c.gated_by else "vetoed"
        elif c.text in seen:
            c.pruned = f"duplicate of candidate {seen[c.text]}"
        else:
            seen[c.text] = k


def _finish(
    reward: Reward,
    rows: list[Sample],
    done: list[list[_Beam]],
    fell_back: list[bool],
    steps: list[list[StepTrace]],
    used: list[int],
    cfg: GuidedConfig,
) -> list[Trace]:
    """Score the finished beams with the final reward (one call) and pick per prompt."""
    owners = [p for p in range(len(rows)) if not fell_back[p] for _ in done[p]]
    texts = [b.text for p in range(len(rows)) if not fell_back[p] for b in done[p]]
    result = score_texts(reward, [rows[p] for p in owners], texts) if texts else None
    traces: list[Trace] = []
    needs_fallback: list[int] = []
    for p, row in enumerate(rows):
        mine = [j for j, o in enumerate(owners) if o == p]
        finals: list[Candidate] = []
        idx: int | None = None
        why = "every candidate of a step was vetoed before any beam finished"
        if mine and result is not None:
            sub = result_rows(result, mine)
            finals = candidates_from(
                [texts[j] for j in mine],
                sub,
                finished=[done[p][k].finished for k in range(len(mine))],
            )
            idx, why = pick_best(np.asarray(sub.total), np.asarray(sub.gated))
            if idx is None:
                why += " by the final reward"
        if idx is None:
            needs_fallback.append(p)
        traces.append(
            Trace(
                mode="guided",
                prompt_index=p,
                prompt=row.prompt,
                reference=row.reference,
                candidates=finals,
                chosen=idx,
                completion=cfg.fallback if idx is None else finals[idx].text,
                score=None if idx is None else finals[idx].score,
                fallback=idx is None,
                reason=why + ("; the safe fallback is returned" if idx is None else ""),
                steps=steps[p],
                generated_tokens=used[p],
            )
        )
    return apply_fallback_scores(reward, rows, traces, needs_fallback)
