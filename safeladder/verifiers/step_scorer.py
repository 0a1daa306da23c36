"""``step_scorer``: process reward over the steps of a chain of thought.

What it checks: every step of the completion, with an inner verifier, aggregated per row.
Inputs: ``Sample.completion`` (split into steps); each prefix keeps the row's ``prompt``,
``images``, ``reference`` and ``meta``, which the inner verifier reads as it would. Score range: the inner
verifier's (``aggregate: product``: [0, inner max]). Example config below.

The completion is split into steps; every prefix ``(prompt, steps[:k])`` becomes a ``Sample``
whose completion is the original text up to the end of step ``k`` (the separators between steps
kept exactly as they appeared); all prefixes of all rows are scored in **one** call to an inner
verifier (any verifier config: a ``classifier`` / ``reward_model`` / ``label_judge`` PRM, an
``embedding_head``, a rule, a ``custom`` function); the per-step scores are aggregated per row.

Splitting (``split``):
- ``{separator: "\\n\\n"}`` (the default): steps are the pieces between occurrences of the
  separator string.
- ``{regex: "..."}``: steps are the pieces between matches of the pattern (like ``re.split``;
  Python ``regex`` syntax). A zero-width pattern such as ``(?=Step \\d)`` splits before each
  match. A pattern that matches the empty string inside plain text (``\\s*``) is refused. Each
  row's split runs under ``split.timeout_s``; past it the row is status ``timeout``.
Pieces that are empty or only whitespace are not steps (a doubled separator is one boundary);
a step's ``(start, end)`` offsets index into the completion, and the prefix of step ``k`` is
``completion[:end_k]`` (so trailing separators / whitespace after the last step are not scored).

Aggregation (``aggregate``) over the scored steps of a row: ``min`` (default: a chain is as good
as its worst step), ``mean``, ``last`` (the last scored prefix: the whole answer in context),
``product`` (of per-step probabilities; needs an inner range inside [0, 1], checked at build).
The score range is the inner verifier's (``product``: [0, inner max]).

A step the inner verifier does not score (abstain / timeout / error): ``on_step_abstain: skip``
aggregates over the scored steps (none scored → the row takes the first failing step's status),
``abstain_row`` gives the whole row that step's status and reason.

``max_steps``: at most this many prefixes per row. Prefixes are cumulative, so a cap decides
which step *boundaries* get scored, never which text is seen: the **last** ``max_steps``
boundaries are kept and the earliest steps are merged into the first scored step. The whole
answer is always scored (``last`` is unaffected), the steps nearest the answer (the ones a
step-level search is deciding) keep their resolution, and with a PRM whose score stays low
after the first wrong step (Math-Shepherd-style labels) ``min`` still sees an early error in
every later prefix. Capped rows record ``steps_found`` and ``merged_into_first``.

An empty (or whitespace-only) completion has no steps and abstains with that reason.

``details[i]``: ``aggregate``, ``n_steps``, ``n_scored`` and ``steps`` = one dict per step with
``start``, ``end`` (character offsets), ``score`` (None when not scored), ``status`` and, for
unscored steps, the inner ``reason``.

Example::

    {"type": "step_scorer", "verifier": {"type": "classifier", "path": "ckpt/prm"},
     "split": {"regex": "(?=Step \\\\d+:)"}, "aggregate": "min", "max_steps": 32}

``score_steps(batch)`` returns the raw per-row step-score arrays (the building block of
step-level guided search).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import regex
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from safeladder.errors import ConfigError
from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, abstain, ok, timed_out

Span = tuple[int, int]

# A zero-width match strictly inside this text means the pattern would split between letters.
_PROBE = "abcdefghij"


class StepSplit(BaseModel):
    """How a completion is cut into steps: exactly one of ``separator`` and ``regex``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    separator: str | None = Field(
        default=None,
        description="Literal text between steps (default '\\n\\n' when regex is not set).",
    )
    regex: str | None = Field(
        default=None,
        description=(
            "Pattern (Python 'regex' syntax) matching the text between steps; zero-width "
            "patterns such as '(?=Step \\d)' split before each match."
        ),
    )
    timeout_s: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="Wall-clock limit of one row's regex split; past it the row is status 'timeout'.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_separator(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and data.get("separator") is None
            and data.get("regex") is None
        ):
            return {**data, "separator": "\n\n"}
        return data

    @model_validator(mode="after")
    def _one_rule(self) -> StepSplit:
        if self.separator is not None and self.regex is not None:
            raise ValueError("set one of separator and regex, not both")
        if self.separator == "":
            raise ValueError("separator is empty; use e.g. '\\n\\n' or set regex instead")
        if self.regex is not None:
            try:
                pat = regex.compile(self.regex)
            except regex.error as exc:
                raise ValueError(f"regex {self.regex!r} is not a valid pattern: {exc}") from exc
            try:
                inside = [
                    m.start() for m in pat.finditer(_PROBE, timeout=1.0) if m.end() == m.start()
                ]
            except TimeoutError:
                inside = []
            if any(0 < p < len(_PROBE) for p in inside):
                raise ValueError(
                    f"regex {self.regex!r} matches the empty string inside plain text, so it would "
                    "split between characters; make it consume a separator (e.g. '\\n\\s*\\n') or "
                    "use an anchored lookahead (e.g. '(?=Step \\d)')"
                )
        return self


def split_steps(
    text: str,
    separator: str | None = "\n\n",
    pattern: regex.Pattern[str] | str | None = None,
    timeout_s: float | None = None,
) -> list[Span]:
    """``(start, end)`` character offsets of the steps of ``text``.

    Steps are the pieces between separators (a literal ``separator``, or matches of
    ``pattern`` when given); empty / whitespace-only pieces are dropped.

    Raises:
        TimeoutError: the pattern ran past ``timeout_s`` (in total for the whole text).

    >>> text = "Step 1: 2+2=4.\\n\\nStep 2: so 4.\\n\\n"
    >>> [text[a:b] for a, b in split_steps(text)]
    ['Step 1: 2+2=4.', 'Step 2: so 4.']
    >>> text = "Step 1: a Step 2: b"
    >>> [text[a:b] for a, b in split_steps(text, pattern=r"(?=Step \\d)")]
    ['Step 1: a ', 'Step 2: b']
    """
    cuts: list[Span] = []  # (start, end) of each separator
    if pattern is not None:
        pat = regex.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pos = 0
        while pos <= len(text):
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("regex timed out")
            m = pat.search(text, pos, timeout=remaining)
            if m is None:
                break
            cuts.append((m.start(), m.end()))
            # After a zero-width match, move on one character (as re.split does).
            pos = m.end() if m.end() > m.start() else m.end() + 1
    else:
        if not separator:
            raise ValueError("give a non-empty separator or a pattern")
        pos = text.find(separator)
        while pos >= 0:
            cuts.append((pos, pos + len(separator)))
            pos = text.find(separator, pos + len(separator))
    spans: list[Span] = []
    start = 0
    for a, b in [*cuts, (len(text), len(text))]:
        if a >= start and text[start:a].strip():
            spans.append((start, a))
        start = max(start, b)
    return spans


def cap_steps(spans: list[Span], max_steps: int | None) -> tuple[list[Span], int]:
    """Keep the last ``max_steps`` step boundaries, merging the earliest steps into the first.

    Returns ``(spans, merged)``: ``merged`` = how many original steps the first span covers
    (1 when nothing was capped).

    >>> cap_steps([(0, 1), (2, 3), (4, 5), (6, 7)], 2)
    ([(0, 5), (6, 7)], 3)
    """
    if max_steps is None or len(spans) <= max_steps:
        return spans, 1
    merged = len(spans) - max_steps + 1
    return [(spans[0][0], spans[merged - 1][1]), *spans[merged:]], merged


class StepScorerConfig(VerifierConfig):
    """Config of the process-reward step scorer (see the module docstring)."""

    type: Literal["step_scorer"] = "step_scorer"
    verifier: dict[str, Any] | str = Field(
        description=(
            "The verifier that scores each prefix: any verifier config (e.g. {type: classifier, "
            "path: ...}) or a preset name. Built once with the step scorer."
        ),
    )
    split: StepSplit = Field(
        default_factory=StepSplit,
        description="How to cut the completion into steps: {separator: '\\n\\n'} or {regex: '...'}.",
    )
    aggregate: Literal["min", "mean", "last", "product"] = Field(
        default="min",
        description=(
            "Row score from its step scores: min, mean, last (the last scored prefix) or product "
            "(needs inner scores in [0, 1])."
        ),
    )
    on_step_abstain: Literal["skip", "abstain_row"] = Field(
        default="skip",
        description=(
            "A step the inner verifier does not score: 'skip' aggregates over the scored steps; "
            "'abstain_row' gives the row that step's status."
        ),
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description=(
            "At most this many prefixes per row: the last max_steps step boundaries are scored and "
            "the earliest steps merge into the first (the whole answer is always scored)."
        ),
    )

    @field_validator("verifier")
    @classmethod
    def _inner_valid(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        # Imported here: the registry imports this module.
        from safeladder.verifiers import parse_verifier_config

        try:
            parse_verifier_config(value)
        except ConfigError as exc:
            raise ValueError(f"the inner verifier config is invalid: {exc}") from exc
        return value

    def build(self) -> Verifier:
        return StepScorerVerifier(self)


class _RowPlan:
    """One row's steps, or the result it gets without scoring anything."""

    __slots__ = ("merged", "result", "spans", "steps_found")

    def __init__(
        self,
        spans: list[Span] | None = None,
        result: RowResult | None = None,
        steps_found: int = 0,
        merged: int = 1,
    ):
        self.spans = spans or []
        self.result = result
        self.steps_found = steps_found
        self.merged = merged


class StepScorerVerifier(Verifier):
    """Splits completions into steps, scores all prefixes in one inner call, aggregates per row.

    Attributes:
        inner: the verifier that scores prefixes (built with this one).
    """

    @property
    def reads_reference(self) -> bool:
        return self.inner.reads_reference

    @property
    def reads_images(self) -> bool:
        return self.inner.reads_images

    def __init__(self, config: StepScorerConfig):
        super().__init__(config)
        self.cfg = config
        from safeladder.verifiers import parse_verifier_config

        self.inner: Verifier = parse_verifier_config(config.verifier).build()
        if self.inner.requires:
            raise ConfigError(
                f"verifier: the inner verifier {self.inner.name!r} reads other reward terms "
                f"{list(self.inner.requires)} from context, which a step scorer cannot supply per "
                "prefix; give it a standalone source (e.g. a nested correctness verifier)"
            )
        lo, hi = (float(x) for x in self.inner.score_range)
        if config.aggregate == "product":
            if lo < 0.0 or hi > 1.0:
                raise ConfigError(
                    f"aggregate: 'product' multiplies step scores and needs them in [0, 1], but the "
                    f"inner verifier {self.inner.name!r} declares the range [{lo}, {hi}]; use min, "
                    "mean or last, or an inner verifier that scores probabilities"
                )
            lo = 0.0
        # The range is known per instance only, from the inner verifier.
        self.score_range = (lo, hi)  # type: ignore[misc]
        self._pattern = regex.compile(config.split.regex) if config.split.regex else None
        self._lock = threading.Lock()

    def _fingerprint_extra(self) -> str:
        return f"inner={self.inner.fingerprint}"

    def steps(self, text: str) -> list[Span]:
        """The ``(start, end)`` offsets of the steps of ``text`` under this config (uncapped)."""
        split = self.cfg.split
        return split_steps(text, split.separator, self._pattern, split.timeout_s)

    def _plan(self, text: str) -> _RowPlan:
        try:
            spans = self.steps(text)
        except TimeoutError:
            return _RowPlan(
                result=timed_out(
                    f"the step regex ran past split.timeout_s={self.cfg.split.timeout_s}"
                )
            )
        if not spans:
            return _RowPlan(result=abstain("no steps: the completion is empty or whitespace only"))
        capped, merged = cap_steps(spans, self.cfg.max_steps)
        return _RowPlan(spans=capped, steps_found=len(spans), merged=merged)

    def _run(
        self, batch: SampleBatch
    ) -> tuple[list[_RowPlan], list[tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]]]:
        """Plans per row and, per row, (step scores, step statuses, step details)."""
        plans: list[_RowPlan] = []
        for i, text in enumerate(batch.completions):
            got = self._guard(i, self._plan, text)
            plans.append(got if isinstance(got, _RowPlan) else _RowPlan(result=got))
        # Every prefix of every row, identical (prompt, prefix, reference, meta) scored once.
        index: dict[tuple[str, str], int] = {}
        prefixes: list[Sample] = []
        where: list[list[int]] = []
        for i, plan in enumerate(plans):
            slots: list[int] = []
            if plan.result is None and plan.spans:
                text = batch.completions[i]
                # A row with images never shares prefixes with another row: two rows that
                # differ only in their pictures must be judged apart.
                row_key = json.dumps(
                    [batch.prompts[i], batch.references[i], batch.metas[i]]
                    + ([i] if batch.images[i] else []),
                    sort_keys=True,
                    default=repr,
                )
                for _, end in plan.spans:
                    key = (row_key, text[:end])
                    if key not in index:
                        index[key] = len(prefixes)
                        prefixes.append(
                            Sample.model_construct(
                                prompt=batch.prompts[i],
                                completion=text[:end],
                                reference=batch.references[i],
                                meta=batch.metas[i],
                                images=batch.images[i],
                            )
                        )
                    slots.append(index[key])
            where.append(slots)
        inner = self._score_prefixes(prefixes)
        steps = []
        for slots in where:
            idx = np.asarray(slots, dtype=np.int64)
            steps.append(
                (
                    inner.scores[idx].astype(np.float32),
                    inner.status[idx],
                    [inner.details[j] for j in slots],
                )
            )
        return plans, steps

    def _score_prefixes(self, prefixes: list[Sample]) -> ScoreBatch:
        if not prefixes:
            return ScoreBatch(self.inner.name, np.zeros(0, np.float32), np.zeros(0, object), [])
        batch = SampleBatch.from_samples(prefixes)
        try:
            return self.inner.score(batch)
        except Exception as exc:
            if self.cfg.on_error == "raise":
                raise
            reason = f"inner verifier {self.inner.name!r}: {type(exc).__name__}: {exc}"
            return ScoreBatch.from_rows(
                self.inner.name,
                [(float("nan"), "error", {"reason": reason}) for _ in prefixes],
            )

    def _aggregate(
        self,
        plan: _RowPlan,
        scores: np.ndarray,
        status: np.ndarray,
        inner_details: list[dict[str, Any]],
    ) -> RowResult:
        steps: list[dict[str, Any]] = []
        for (a, b), s, st, d in zip(plan.spans, scores, status, inner_details, strict=True):
            step: dict[str, Any] = {
                "start": a,
                "end": b,
                "score": None if math.isnan(s) else float(s),
                "status": str(st),
            }
            if st != "ok":
                step["reason"] = d.get("reason", "")
            steps.append(step)
        detail: dict[str, Any] = {
            "aggregate": self.cfg.aggregate,
            "n_steps": len(steps),
            "n_scored": int(np.sum(status == "ok")),
            "steps": steps,
        }
        if plan.merged > 1:
            detail["steps_found"] = plan.steps_found
            detail["merged_into_first"] = plan.merged
        failed = [k for k, st in enumerate(status) if st != "ok"]
        if failed and (self.cfg.on_step_abstain == "abstain_row" or len(failed) == len(steps)):
            k = failed[0]
            why = "no step was scored; " if len(failed) == len(steps) else ""
            reason = f"{why}step {k} has status {status[k]!r}: {steps[k].get('reason', '')}"
            return (float("nan"), str(status[k]), {"reason": reason, **detail})
        vals = scores[status == "ok"].astype(np.float64)
        agg = self.cfg.aggregate
        if agg == "min":
            value = float(vals.min())
        elif agg == "mean":
            value = float(vals.mean())
        elif agg == "last":
            value = float(vals[-1])
        else:
            value = float(np.prod(vals))
        lo, hi = self.score_range
        return ok(min(max(value, lo), hi), **detail)  # float rounding must not leave the range

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        plans, steps = self._run(batch)
        rows: list[RowResult] = []
        for i, (plan, (scores, status, details)) in enumerate(zip(plans, steps, strict=True)):
            if plan.result is not None:
                rows.append(plan.result)
            else:
                rows.append(self._guard(i, self._aggregate, plan, scores, status, details))
        return ScoreBatch.from_rows(self.name, rows)

    def score_steps(
        self, samples: SampleBatch | Sample | Iterable[Sample | Mapping[str, Any]]
    ) -> list[np.ndarray]:
        """Per-row step scores, for step-level search.

        Returns:
            One float32 array per row, shape ``(n_steps_i,)`` (after ``max_steps``), NaN where
            the inner verifier did not score the step; an empty array for a row without steps
            (empty completion, split timeout). ``score`` gives the reasons.
        """
        plans, steps = self._run(SampleBatch.coerce(samples))
        return [
            s if p.result is None else np.zeros(0, np.float32)
            for p, (s, _, _) in zip(plans, steps, strict=True)
        ]

    def close(self) -> None:
        self.inner.close()
