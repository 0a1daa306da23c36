"""``kk_logic``: Logic-RL's knights-and-knaves reward, reproduced rule for rule.

Source: Unakar/Logic-RL @ 9d2c457, ``verl/utils/reward_score/kk.py`` (``compute_score``);
described in ``shared/data/kk_logic_reward_notes.md`` and papers.md §3. No upstream code is
copied; the rules, including their quirks, are:

1. **Processed response**: ``<think>`` + completion when the prompt prefilled the think tag
   (Logic-RL's templates always do), with the ``"Assistant:"`` quirk — see
   ``think_format.logic_rl_processed`` for how prompt and completion map onto the text Logic-RL
   scores.
2. **Format**: each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` occurs exactly once
   and their first positions are in order → ``+1``, else ``-1``.
3. **Answer**: the content of the *last* ``<answer>…</answer>`` pair, stripped. It is only read
   when the format passed and the answer is non-empty; then the number of case-insensitive
   substring occurrences of ``knight`` plus ``knave`` must equal the number of people ("knights"
   counts, so a plural or a repeated role word breaks parsing), and every name must match
   ``\\b<Name>\\b\\s+is\\s+a\\s+\\b(knight|knave)\\b`` (case-insensitive).
4. **Answer score**: ``+2`` all roles right, ``-1.5`` parsed but some role wrong, ``-2`` not
   parsed, no answer, or format failed.

``include_format: true`` (default) scores format + answer ∈ {3, -0.5, -1, -3}; ``false`` the
answer score alone ∈ {2, -1.5, -2} (still ``-2`` when the format fails, since Logic-RL never
reads the answer then).

Reference: the ``solution_text_format`` string (``kk_logic.jsonl.gz``'s ``answer``: one
``(i) Name is a knight|knave`` per line; each non-empty line gives its first word and the first
``knight``/``knave`` word after it) or a dict holding it under ``solution_text_format`` (verl's
``ground_truth``). A missing reference, one of another type, a dict without that key, or text
with no parsable line **abstains** (NaN with the reason); none of these raise.

``details``: ``outcome`` (``correct | wrong | unparsed | no_answer | format_failed``),
``format_score``, ``answer_score``, ``prefilled``, and ``reason`` when the format failed.

Inputs: ``completion``, ``prompt`` (whether it prefilled ``<think>``) and ``reference`` (the
solution text, or a dict holding it).
Score range: [-3, 3] (format + answer) or [-2, 2] (``include_format: false``); NaN with status
``abstain`` for a missing or unusable reference.

Example::

    {"type": "kk_logic", "prefilled_think": true}       # preset logic_rl
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeladder.types import Sample
from safeladder.verifiers.base import RowResult, RuleVerifier, Verifier, VerifierConfig, abstain, ok
from safeladder.verifiers.think_format import (
    LOGIC_RL_TAGS,
    PrefillSetting,
    is_prefilled,
    logic_rl_format_failure,
    logic_rl_processed,
)

# Upstream reads a ground-truth line with r"\b([A-Za-z]+)\b.*?\b(knight|knave)\b" (IGNORECASE).
# A match can only start at the first word, and succeeds iff a role word starts after it, so two
# linear searches give the same result without the lazy ``.*?`` retried from every word.
_GT_WORD = re.compile(r"\b[A-Za-z]+\b", re.IGNORECASE)
_GT_ROLE = re.compile(r"\b(knight|knave)\b", re.IGNORECASE)
_ANSWER_OPEN, _ANSWER_CLOSE = LOGIC_RL_TAGS[2], LOGIC_RL_TAGS[3]


def parse_ground_truth(text: str) -> dict[str, str]:
    """``{name: "knight" | "knave"}`` from ``solution_text_format`` (a later line wins on a repeat).

    >>> parse_ground_truth("(1) Zoey is a knight\\n(2) Oliver is a KNAVE")
    {'Zoey': 'knight', 'Oliver': 'knave'}
    """
    roles: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        word = _GT_WORD.search(line)
        if word is None:
            continue
        role = _GT_ROLE.search(line, word.end())
        if role is not None:
            roles[word.group(0)] = role.group(1).lower()
    return roles


def last_answer(text: str) -> str | None:
    """Stripped content of the last ``<answer>…</answer>`` pair, None when there is none.

    Pairs are found left to right, each closing at the first ``</answer>`` after its opening tag
    (upstream's non-greedy DOTALL regex), by plain string search so hostile input stays linear.

    >>> last_answer("<answer> a </answer> x <answer>b</answer><answer>c")
    'b'
    """
    found: str | None = None
    start = text.find(_ANSWER_OPEN)
    while start != -1:
        end = text.find(_ANSWER_CLOSE, start + len(_ANSWER_OPEN))
        if end == -1:
            break
        found = text[start + len(_ANSWER_OPEN) : end]
        start = text.find(_ANSWER_OPEN, end + len(_ANSWER_CLOSE))
    return None if found is None else found.strip()


@lru_cache(maxsize=4096)
def _name_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(name)}\b\s+is\s+a\s+\b(knight|knave)\b", re.IGNORECASE)


def parse_model_answer(answer: str, names: list[str]) -> dict[str, str] | None:
    """``{name: role}`` read from the model's answer, None when Logic-RL cannot parse it.

    >>> parse_model_answer("(1) Zoey is a knight\\n(2) Oliver is a knave", ["Zoey", "Oliver"])
    {'Zoey': 'knight', 'Oliver': 'knave'}
    >>> parse_model_answer("Zoey and Oliver are knights", ["Zoey", "Oliver"]) is None
    True
    """
    low = answer.lower()
    if low.count("knight") + low.count("knave") != len(names):
        return None
    roles: dict[str, str] = {}
    for name in names:
        m = _name_pattern(name).search(answer)
        if m is None:
            return None
        roles[name] = m.group(1).lower()
    return roles


class KKLogicConfig(VerifierConfig):
    """Config of Logic-RL's knights-and-knaves reward."""

    type: Literal["kk_logic"] = "kk_logic"
    include_format: bool = Field(
        default=True,
        description=(
            "true: Logic-RL's total, format (+1/-1) + answer (+2/-1.5/-2), in {3, -0.5, -1, -3}; "
            "false: the answer score alone, in {2, -1.5, -2}."
        ),
    )
    prefilled_think: PrefillSetting = Field(
        default="auto",
        description=(
            "Whether the prompt already wrote '<think>' (Logic-RL's templates do, so the "
            "completion must not): true, false, or 'auto' = per row, whether the prompt text "
            "ends with it."
        ),
    )

    def build(self) -> Verifier:
        return KKLogicVerifier(self) if self.include_format else KKLogicAnswerVerifier(self)


class KKLogicVerifier(RuleVerifier):
    """Logic-RL's format + answer total; see the module docstring."""

    _reads_reference: ClassVar[bool] = True

    score_range: ClassVar[tuple[float, float]] = (-3.0, 3.0)

    def __init__(self, config: KKLogicConfig):
        super().__init__(config)
        self.cfg = config

    def score_row(self, sample: Sample) -> RowResult:
        ref = sample.reference
        if ref is None:
            return abstain("no reference (the solution_text_format string)")
        if isinstance(ref, Mapping):
            if "solution_text_format" not in ref:
                return abstain("reference dict has no 'solution_text_format'")
            ref = ref["solution_text_format"]
        if not isinstance(ref, str):
            return abstain(
                "reference must be the solution_text_format string or a dict holding it, "
                f"got {type(ref).__name__}"
            )
        truth = parse_ground_truth(ref)
        if not truth:
            return abstain("no '<Name> is a knight|knave' line in the reference")

        prefilled = is_prefilled(self.cfg.prefilled_think, sample.prompt, LOGIC_RL_TAGS[0])
        processed = logic_rl_processed(
            sample.completion, sample.prompt, prefilled, LOGIC_RL_TAGS[0]
        )
        failure = logic_rl_format_failure(processed, LOGIC_RL_TAGS)
        answer = last_answer(processed)
        detail: dict[str, Any] = {
            "prefilled": prefilled,
            "format_score": 1.0 if failure is None else -1.0,
        }
        if failure is not None:
            outcome, answer_score = "format_failed", -2.0
            detail["reason"] = failure
        elif not answer:
            outcome, answer_score = "no_answer", -2.0
        else:
            predicted = parse_model_answer(answer, list(truth))
            if predicted is None:
                outcome, answer_score = "unparsed", -2.0
            elif predicted == truth:
                outcome, answer_score = "correct", 2.0
            else:
                outcome, answer_score = "wrong", -1.5
        detail["outcome"] = outcome
        detail["answer_score"] = answer_score
        return ok(self._total(detail["format_score"], answer_score), **detail)

    def _total(self, format_score: float, answer_score: float) -> float:
        return format_score + answer_score


class KKLogicAnswerVerifier(KKLogicVerifier):
    """The answer score alone (``include_format: false``)."""

    score_range: ClassVar[tuple[float, float]] = (-2.0, 2.0)

    def _total(self, format_score: float, answer_score: float) -> float:
        return answer_score
