"""Confidence-weighted voting: N sampled answers, equal answers grouped, largest total confidence wins.

The deliberative mode of SafeLadder / Deliberative Searcher (``reference/papers.md`` §2): the
model states a confidence with its answer; answers are pooled by *what* they answer, and each
group weighs as much as the confidences its members stated. Plain majority voting (self-
consistency) is computed alongside and the trace says whether the two agree.

Reading and comparing answers reuses the public readers of the answer checks (nothing is
re-implemented here):

- ``math``: ``safeladder.answers.extract_answer`` on the text after the last ``</think>``
  (``\\boxed{}``, ``<answer>``, ``#### n``, "the answer is", last number); two answers are
  equal when both read as numbers and ``numbers_equal`` holds (``1/2`` = ``0.5``, ``50%`` =
  ``0.5``), else when their texts match ignoring spaces (the symbolic math-verify path is not
  used for grouping);
- ``choice``: ``choice_answer.extract_choice`` (the verifier's letter extraction); exactly one
  distinct letter is an answer;
- ``qa``: ``safeladder.answers.final_answer``, normalized by ``qa_match.normalize_answer``;
  equal normalized texts are equal.

The stated confidence is ``confidence_calibration.parse_confidence`` (the last one in the text),
read on ``confidence_scale``; a sample without one weighs ``missing_confidence``. A sample with
no answer takes part in neither vote.

Winner: the largest total confidence, ties broken by the larger count, then by the answer seen
first. Majority: the largest count, ties broken by the answer seen first. The returned
completion is the winning group's most confident sample (the earliest among equals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safeladder.answers import (
    extract_answer,
    final_answer,
    numbers_equal,
    parse_number,
    text_after_think,
)
from safeladder.guidance.best_of_n import as_samples, result_rows, score_texts
from safeladder.guidance.config import VoteConfig
from safeladder.guidance.corrections import CorrectionMemory, model_prompts
from safeladder.guidance.generator import TextGenerator
from safeladder.guidance.trace import Candidate, Trace, candidates_from
from safeladder.rewards.reward import Reward
from safeladder.types import Prompt, Sample
from safeladder.verifiers.choice_answer import extract_choice
from safeladder.verifiers.confidence_calibration import parse_confidence
from safeladder.verifiers.qa_match import normalize_answer


def read_answer(text: str, kind: str) -> str | None:
    """The answer a completion states, as ``kind`` reads it (None when it states none).

    >>> read_answer("so 48 + 24 = 72\\n#### 72", "math")
    '72'
    >>> read_answer("The answer is (B).", "choice"), read_answer("<answer>The Paris</answer>", "qa")
    ('B', 'paris')
    """
    if kind == "math":
        found = extract_answer(text_after_think(text))
        return found[0] if found is not None and found[0] else None
    if kind == "choice":
        _, letters = extract_choice(text_after_think(text))
        return letters[0] if len(set(letters)) == 1 else None
    if kind == "qa":
        return normalize_answer(final_answer(text)) or None
    raise ValueError(f"answer kind must be math, choice or qa, got {kind!r}")


def same_answer(a: str, b: str, kind: str) -> bool:
    """Whether two answers read by ``read_answer(..., kind)`` are the same answer.

    >>> same_answer("1/2", "0.5", "math"), same_answer("x + 1", "x+1", "math")
    (True, True)
    """
    if kind == "math":
        na, nb = parse_number(a), parse_number(b)
        if na is not None and nb is not None:
            return numbers_equal(na, nb)
        return "".join(a.split()) == "".join(b.split())
    return a == b


@dataclass
class VoteOutcome:
    """The tally of one prompt's samples.

    Attributes:
        answers: per sample, its answer (None: none stated).
        confidences: per sample, its stated confidence in [0, 1] (None: none stated).
        groups: per distinct answer, in order of first appearance: ``answer`` (the first
            member's text), ``count``, ``confidence`` (total weight) and ``members`` (indices).
        winner: index into ``groups`` of the confidence-weighted pick (None: no answers).
        majority: index into ``groups`` of the plain-majority pick (None: no answers).
        chosen: index of the returned sample (None: no answers).
    """

    answers: list[str | None]
    confidences: list[float | None]
    groups: list[dict[str, Any]] = field(default_factory=list)
    winner: int | None = None
    majority: int | None = None
    chosen: int | None = None

    @property
    def winner_answer(self) -> str | None:
        """The confidence-weighted pick's answer text (None: no answers)."""
        return None if self.winner is None else str(self.groups[self.winner]["answer"])

    @property
    def majority_answer(self) -> str | None:
        """The plain-majority pick's answer text (None: no answers)."""
        return None if self.majority is None else str(self.groups[self.majority]["answer"])

    @property
    def agrees(self) -> bool | None:
        """Whether the weighted and the majority votes pick the same answer (None: no answers)."""
        return None if self.winner is None else self.winner == self.majority


def tally(texts: Sequence[str], config: VoteConfig | None = None) -> VoteOutcome:
    """Group the answers of ``texts`` and run both votes (see the module docstring).

    >>> texts = ["#### 4\\nConfidence: 9/10", "#### 5\\nconfidence: 3/10", "#### 5.0\\nconfidence: 2/10"]
    >>> out = tally(texts)
    >>> [(g["answer"], g["count"], round(g["confidence"], 2)) for g in out.groups]
    [('4', 1, 0.9), ('5', 2, 0.5)]
    >>> out.winner_answer, out.majority_answer, out.agrees
    ('4', '5', False)
    """
    cfg = config or VoteConfig()
    answers = [read_answer(t, cfg.answer) for t in texts]
    confs = [parse_confidence(t, cfg.confidence_scale) for t in texts]
    out = VoteOutcome(answers, confs)
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        weight = cfg.missing_confidence if confs[i] is None else float(confs[i] or 0.0)
        for g in out.groups:
            if same_answer(g["answer"], ans, cfg.answer):
                g["count"] += 1
                g["confidence"] += weight
                g["members"].append(i)
                break
        else:
            out.groups.append({"answer": ans, "count": 1, "confidence": weight, "members": [i]})
    if not out.groups:
        return out
    order = range(len(out.groups))
    out.winner = _best(order, lambda k: (out.groups[k]["confidence"], out.groups[k]["count"]))
    out.majority = _best(order, lambda k: (out.groups[k]["count"],))
    members = out.groups[out.winner]["members"]
    out.chosen = _best(members, lambda i: (_weight(confs[i], cfg),))
    return out


def _weight(conf: float | None, cfg: VoteConfig) -> float:
    return cfg.missing_confidence if conf is None else conf


def _best(items: Iterable[int], key: Callable[[int], tuple[float, ...]]) -> int:
    """The item with the largest key; the first one among equals."""
    best: int | None = None
    for i in items:
        if best is None or key(i) > key(best):
            best = i
    if best is None:
        raise ValueError("no items")
    return best


def vote(
    generator: TextGenerator,
    prompts: Iterable[Sample | Mapping[str, Any] | Prompt],
    config: VoteConfig | None = None,
    *,
    reward: Reward | None = None,
    max_new_tokens: int = 256,
    seed: int = 0,
    corrections: CorrectionMemory | None = None,
) -> list[Trace]:
    """Sample ``config.n`` answers per prompt (one batched call) and vote (see ``tally``).

    Args:
        generator: an ``HFGenerator`` or any ``TextGenerator``.
        prompts: P prompts (strings, chat messages, ``Sample`` rows or sample dicts).
        config: n, answer kind, confidence scale, weight of a missing confidence.
        reward: optional; when given every sample is scored (one call) for the trace, and the
            trace's ``score`` is the chosen sample's total. It does not influence the vote.
        max_new_tokens: tokens per answer at most.
        seed: sampling seed.
        corrections: inject the nearest stored corrections into what the model sees.

    Returns:
        P ``Trace`` objects (mode ``vote``) with the groups, both picks and their agreement.
    """
    cfg = config or VoteConfig()
    rows = as_samples(prompts)
    shown, used = model_prompts(rows, corrections)
    outs = generator.generate(
        [generator.render(p) for p in shown], cfg.n, max_new_tokens=max_new_tokens, seed=seed
    )
    result = None
    if reward is not None:
        result = score_texts(
            reward,
            [r for r, o in zip(rows, outs, strict=True) for _ in o],
            [c.text for o in outs for c in o],
        )
    traces: list[Trace] = []
    start = 0
    for p, (row, conts) in enumerate(zip(rows, outs, strict=True)):
        texts = [c.text for c in conts]
        t = tally(texts, cfg)
        extra: dict[str, Any] = {
            "answer": t.answers,
            "confidence": t.confidences,
            "finished": [c.finished for c in conts],
        }
        if result is not None:
            cands = candidates_from(
                texts, result_rows(result, slice(start, start + len(texts))), **extra
            )
        else:
            cands = [
                Candidate(text=x, score=None, **{k: v[i] for k, v in extra.items()})
                for i, x in enumerate(texts)
            ]
        start += len(texts)
        votes = [
            {
                "answer": g["answer"],
                "count": g["count"],
                "confidence": g["confidence"],
                "members": g["members"],
            }
            for g in t.groups
        ]
        if t.chosen is None or t.winner is None or t.majority is None:
            chosen, why, majority = 0, f"none of the {len(texts)} samples states an answer", None
        else:
            chosen = t.chosen
            win, maj = t.groups[t.winner], t.groups[t.majority]
            majority = str(maj["answer"])
            why = (
                f"answer {win['answer']!r}: total confidence {win['confidence']:.3g} from "
                f"{win['count']} of {len(texts)} samples; majority answer {majority!r} "
                f"({maj['count']} samples)"
            )
        traces.append(
            Trace(
                mode="vote",
                prompt_index=p,
                prompt=row.prompt,
                reference=row.reference,
                candidates=cands,
                chosen=chosen,
                completion=texts[chosen] if texts else "",
                score=cands[chosen].score if cands else None,
                reason=why,
                votes=votes,
                majority=majority,
                agrees_with_majority=t.agrees,
                generated_tokens=sum(c.n_tokens for c in conts),
                corrections=used[p],
            )
        )
    return traces
