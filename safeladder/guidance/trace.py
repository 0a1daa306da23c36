"""What a guided generation run did, per prompt: candidates, steps, scores, pruning, the choice.

Every search returns one ``Trace`` per prompt. ``save_traces`` writes them as JSONL (one line per
prompt), ``load_traces`` reads them back, ``render_report`` turns them into a readable Markdown
report. Scores are ``None`` (JSON null) where the reward could not score, never 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safeladder.errors import InputError
from safeladder.numeric import nan_to_none
from safeladder.types import Prompt, RewardResult, prompt_text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Model):
    """One scored candidate (a whole completion, or a prefix after a step)."""

    text: str = Field(description="The candidate's completion text (a prefix during a search).")
    score: float | None = Field(description="Reward total; None when it could not be scored.")
    gated: bool = Field(default=False, description="A gate of the reward vetoed it.")
    gated_by: str | None = Field(default=None, description="The term whose gate vetoed it.")
    terms: dict[str, float | None] = Field(
        default_factory=dict, description="Per-term scores (after normalization)."
    )
    parent: int | None = Field(
        default=None, description="Guided search: index of the beam this step extended."
    )
    finished: bool = Field(default=False, description="The model ended it (EOS).")
    pruned: str | None = Field(default=None, description="Why it was dropped, if it was.")
    answer: str | None = Field(default=None, description="Voting: the extracted answer.")
    confidence: float | None = Field(default=None, description="Voting: stated confidence.")


class UsedCorrection(_Model):
    """A stored correction injected into the prompt (``safeladder.guidance.corrections``)."""

    id: str = Field(description="The correction's id in the store.")
    similarity: float = Field(description="Cosine similarity of its prompt to this prompt.")


class StepTrace(_Model):
    """One step of guided search: the candidates sampled from every kept beam."""

    index: int
    beams_in: list[str] = Field(description="The prefixes this step extended.")
    candidates: list[Candidate]
    kept: list[int] = Field(description="Indices of the candidates kept as the next beams.")
    fallback: bool = Field(
        default=False, description="Every candidate was vetoed and no finished beam existed."
    )


class Trace(_Model):
    """One prompt's run: the final candidates, the chosen completion, and how it was found."""

    mode: Literal["best_of_n", "guided", "vote"]
    prompt_index: int
    prompt: Prompt
    reference: Any = None
    candidates: list[Candidate] = Field(
        description="Final candidates (best-of-N / vote: every sample; guided: finished beams)."
    )
    chosen: int | None = Field(
        description="Index into candidates of the returned completion; None for the fallback."
    )
    completion: str = Field(description="The returned completion.")
    score: float | None = Field(description="Final reward of the returned completion.")
    fallback: bool = Field(
        default=False, description="The safe fallback was returned (every candidate vetoed)."
    )
    reason: str = Field(default="", description="Why this completion was chosen.")
    steps: list[StepTrace] = Field(default_factory=list, description="Guided search steps.")
    votes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Voting: one entry per answer group (answer, count, confidence, members).",
    )
    majority: str | None = Field(default=None, description="Voting: the plain-majority answer.")
    agrees_with_majority: bool | None = Field(
        default=None, description="Voting: confidence-weighted and majority picks agree."
    )
    generated_tokens: int = Field(default=0, description="Tokens sampled for this prompt.")
    corrections: list[UsedCorrection] = Field(
        default_factory=list,
        description="Stored corrections injected into the model's prompt (best first).",
    )


def candidates_from(
    texts: Sequence[str], result: RewardResult, **per_row: Sequence[Any]
) -> list[Candidate]:
    """``Candidate`` rows from completion texts and their ``RewardResult`` (same length).

    ``per_row`` adds one column per keyword (e.g. ``parent=[0, 0, 1]``).
    """
    if len(texts) != len(result):
        raise ValueError(f"{len(texts)} texts but {len(result)} reward rows")
    out: list[Candidate] = []
    for i, text in enumerate(texts):
        extra = {k: v[i] for k, v in per_row.items()}
        out.append(
            Candidate(
                text=text,
                score=nan_to_none(result.total[i]),
                gated=bool(result.gated[i]),
                gated_by=result.gate_by[i] if result.gate_by else None,
                terms={name: nan_to_none(sb.scores[i]) for name, sb in result.terms.items()},
                **extra,
            )
        )
    return out


def save_traces(traces: Iterable[Trace], path: str | Path) -> Path:
    """Write one JSON line per trace; returns the path."""
    p = Path(path)
    with p.open("w", encoding="utf-8") as fh:
        for t in traces:
            fh.write(json.dumps(t.model_dump(mode="json"), ensure_ascii=False) + "\n")
    return p


def load_traces(path: str | Path) -> list[Trace]:
    """Read a file written by ``save_traces``; a bad line is an ``InputError`` naming it."""
    out: list[Trace] = []
    with Path(path).open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(Trace.model_validate_json(line))
            except ValueError as exc:
                raise InputError(f"{path}:{line_no}: not a guidance trace: {exc}") from exc
    return out


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def render_report(traces: Sequence[Trace], *, max_candidates: int = 16) -> str:
    """A Markdown report: a summary table, then per prompt the choice, candidates and steps."""
    lines = ["# Guided generation report", ""]
    if not traces:
        return "\n".join([*lines, "No prompts.", ""])
    modes = sorted({t.mode for t in traces})
    scored = [t.score for t in traces if t.score is not None]
    lines += [
        f"- prompts: {len(traces)}; mode: {', '.join(modes)}",
        f"- mean final score: {_fmt(sum(scored) / len(scored) if scored else None)}"
        f" ({len(scored)} scored)",
        f"- fallbacks: {sum(t.fallback for t in traces)}",
        f"- tokens generated: {sum(t.generated_tokens for t in traces)}",
    ]
    voted = [t for t in traces if t.agrees_with_majority is not None]
    if voted:
        agree = sum(bool(t.agrees_with_majority) for t in voted)
        lines.append(f"- confidence vote agrees with majority: {agree}/{len(voted)}")
    lines.append("")
    for t in traces:
        lines += [f"## Prompt {t.prompt_index}", "", f"> {_short(prompt_text(t.prompt), 300)}", ""]
        tag = "fallback" if t.fallback else f"candidate {t.chosen}"
        lines += [
            f"**Chosen** ({tag}, score {_fmt(t.score)}): {_short(t.completion, 300)}",
            "",
            f"Why: {t.reason}",
            "",
        ]
        if t.corrections:
            shown = ", ".join(f"{c.id} ({c.similarity:.3f})" for c in t.corrections)
            lines += [f"Corrections shown to the model: {shown}", ""]
        if t.votes:
            lines += ["| answer | count | total confidence |", "| --- | --- | --- |"]
            for v in t.votes:
                lines.append(f"| {v['answer']} | {v['count']} | {v['confidence']:.3g} |")
            lines.append("")
        if t.candidates:
            lines += ["| # | score | gated | pruned | text |", "| --- | --- | --- | --- | --- |"]
            for i, c in enumerate(t.candidates[:max_candidates]):
                gate = c.gated_by or ("yes" if c.gated else "")
                text = _short(c.text, 100).replace("|", "\\|")
                lines.append(f"| {i} | {_fmt(c.score)} | {gate} | {c.pruned or ''} | {text} |")
            if len(t.candidates) > max_candidates:
                lines.append(f"| … | {len(t.candidates) - max_candidates} more | | | |")
            lines.append("")
        for s in t.steps:
            pruned = sum(c.pruned is not None for c in s.candidates)
            note = " — every candidate vetoed: fallback" if s.fallback else ""
            lines.append(
                f"- step {s.index}: {len(s.beams_in)} beam(s) → {len(s.candidates)} candidates, "
                f"{pruned} pruned, kept {s.kept}{note}"
            )
        if t.steps:
            lines.append("")
    return "\n".join(lines)
