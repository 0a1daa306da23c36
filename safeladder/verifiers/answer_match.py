"""``answer_match``: the answer check for a row whose task is unknown but whose reference is given.

A trainer that hands over a gold answer expects it to be used, whatever the row's data source
is called. This verifier decides per row how to compare, from the reference alone:

- a number, or a short string with a digit or LaTeX / math notation (``\\``, ``^``, ``_``,
  ``{``, ``=``, ``$``), is checked as math: ``math_answer`` extraction (boxed, ``<answer>``,
  ``#### n``, "the answer is", last number) and equivalence;
- any other reference (words: "Paris", a list of aliases, a TruthfulQA-style dict) is checked
  as a short text answer: ``qa_match`` normalized exact match;
- a math-looking reference that math cannot parse falls back to the text check.

A reference longer than ``max_reference_chars`` is not an answer (e.g. a code task's test
cases): the row abstains with that reason instead of being compared to nonsense, so a required
term makes it unscorable and the trainer hears about it. ``details["checked_as"]`` says which
check scored the row.

Inputs: ``completion`` (its final answer) and ``reference`` (which also decides the check).
Score range: [0, 1] -- 1.0 equal, 0.0 not; NaN with status ``abstain`` (no or overlong
reference) or ``timeout`` (math check).

Example::

    {"type": "answer_match"}
    # completion "... so the answer is 72.", reference "72"     → 1.0 (math)
    # completion "<answer>paris</answer>", reference ["Paris"]  → 1.0 (text)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from safeladder.types import SampleBatch, ScoreBatch
from safeladder.verifiers.base import Verifier, VerifierConfig
from safeladder.verifiers.math_answer import MathAnswerConfig
from safeladder.verifiers.qa_match import QAMatchConfig

_MATHY = re.compile(r"[0-9\\^_{}=$]")


class AnswerMatchConfig(VerifierConfig):
    """Config of the reference-driven answer check."""

    type: Literal["answer_match"] = "answer_match"
    math: MathAnswerConfig = Field(
        default_factory=MathAnswerConfig,
        description="The math_answer settings for math-looking references.",
    )
    text: QAMatchConfig = Field(
        default_factory=lambda: QAMatchConfig(mode="exact"),
        description="The qa_match settings for word references (and unparseable math ones).",
    )
    max_reference_chars: int = Field(
        default=500,
        ge=1,
        description=(
            "A string reference longer than this is not a short answer (test cases, a whole "
            "solution): the row abstains with that reason."
        ),
    )

    def build(self) -> Verifier:
        return AnswerMatchVerifier(self)


def reference_kind(reference: Any, max_chars: int = 500) -> Literal["math", "text", "too_long"]:
    """How a reference is checked: ``math``, ``text``, or ``too_long`` (abstain).

    >>> [reference_kind(r) for r in ("72", r"\\frac{1}{2}", "Paris", ["Paris", "paris"], 3.5)]
    ['math', 'math', 'text', 'text', 'math']
    """
    items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    if not items or isinstance(reference, Mapping):
        return "text"
    kinds = set()
    for item in items:
        if isinstance(item, bool):
            return "text"
        if isinstance(item, Real):
            kinds.add("math")
        elif isinstance(item, str):
            if len(item) > max_chars:
                return "too_long"
            kinds.add("math" if _MATHY.search(item) else "text")
        else:
            return "text"
    return "math" if kinds == {"math"} else "text"


class AnswerMatchVerifier(Verifier):
    """Math equivalence or normalized exact match, chosen per row from the reference."""

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    _reads_reference: ClassVar[bool] = True

    def __init__(self, config: AnswerMatchConfig):
        super().__init__(config)
        self.cfg = config
        self.math = config.math.build()
        self.text = config.text.build()

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        n = len(batch)
        scores = np.full(n, np.nan, dtype=np.float32)
        status = np.array(["abstain"] * n, dtype=object)
        details: list[dict[str, Any]] = [{} for _ in range(n)]
        kinds = [reference_kind(r, self.cfg.max_reference_chars) for r in batch.references]
        for i, k in enumerate(kinds):
            if k == "too_long":
                details[i] = {
                    "reason": f"reference is not a short answer (over max_reference_chars="
                    f"{self.cfg.max_reference_chars}); route the row to a task that can check it"
                }
        math_rows = [i for i, k in enumerate(kinds) if k == "math"]
        text_rows = [i for i, k in enumerate(kinds) if k == "text"]
        if math_rows:
            sb = self.math.score(batch.take(math_rows))
            for j, i in enumerate(math_rows):
                if sb.status[j] == "abstain":
                    # e.g. "reference could not be parsed": the text check may still read it.
                    text_rows.append(i)
                    details[i] = {"math_abstained": sb.details[j].get("reason")}
                    continue
                scores[i], status[i] = sb.scores[j], sb.status[j]
                details[i] = {**sb.details[j], "checked_as": "math"}
        if text_rows:
            text_rows.sort()
            sb = self.text.score(batch.take(text_rows))
            for j, i in enumerate(text_rows):
                scores[i], status[i] = sb.scores[j], sb.status[j]
                details[i] = {**details[i], **sb.details[j], "checked_as": "text"}
        return ScoreBatch(self.name, scores, status, details)

    def close(self) -> None:
        self.math.close()
        self.text.close()
