"""``qa_match``: normalized exact match / token F1 of a short answer against reference answers.

The SQuAD v1.1 evaluation recipe (Rajpurkar et al. 2016, ``evaluate-v1.1.py``), written anew:
lowercase, delete punctuation, drop the articles a / an / the, collapse whitespace; then

- ``mode: exact`` — 1.0 if the normalized answer equals a normalized reference, else 0.0;
- ``mode: f1`` — token-level F1 (bag of tokens) against the best reference, in [0, 1];
- ``mode: contains`` (opt-in) — 1.0 if a normalized reference occurs as a whole-token span of the
  normalized answer. **Gameable**: an answer that lists every candidate ("Paris, London, Rome, …")
  or pads a long text scores 1.0, so use it only for evaluation of short, free-form answers or
  behind a length / format term, never alone as an RL reward.

The score is the best over all references (max), as in SQuAD.

Differences from the SQuAD script, on purpose: punctuation is every Unicode punctuation
character plus ASCII ``string.punctuation`` (so Chinese ，。 are deleted too), and each CJK
ideograph / kana is its own token (Chinese has no spaces; whitespace tokens would make F1 all or
nothing — the per-character convention of the CMRC 2018 / DuReader scripts).

``reference`` may be a string, a number, a list of strings, or a dict with ``answers`` and / or
``correct_answers`` (each a string or a list; SQuAD's ``{"text": [...]}`` shape is accepted
under ``answers``) — so TruthfulQA rows work as they are. A missing or empty reference, or one of
an unusable type (e.g. a list of dicts), gives NaN with status ``abstain`` and the reason (never
raises). An empty answer scores 0.0: it is a real, wrong answer.

``judge_final_answer`` (default on) judges only the final answer: the text after the last
``</think>``, and within it the content of the last ``<answer>…</answer>`` if there is one.

Inputs: ``completion`` (its final answer) and ``reference`` (string, number, list, or a dict
with ``answers`` / ``correct_answers``).
Score range: [0, 1] -- 0 / 1 for ``exact`` and ``contains``, token F1 for ``f1``; NaN with
status ``abstain`` when the reference is missing or unusable.

Example::

    {"type": "qa_match", "mode": "f1"}
    # completion "<think>…</think><answer>The Eiffel tower</answer>", reference ["Eiffel Tower"] → 1.0
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import regex
from pydantic import Field

from safeladder.answers import THINK_CLOSE, final_answer, text_after_think
from safeladder.types import Sample
from safeladder.verifiers.base import RowResult, RuleVerifier, Verifier, VerifierConfig, abstain, ok

_PUNCT = regex.compile("[\\p{P}" + regex.escape(string.punctuation) + "]")
_ARTICLES = regex.compile(r"\b(?:a|an|the)\b")
# Han (incl. extension A and compatibility), Hiragana, Katakana: one token per character.
_CJK = regex.compile(r"([\p{Han}\p{Hiragana}\p{Katakana}])")

# Re-exported: THINK_CLOSE, final_answer and text_after_think lived here before safeladder.answers.
__all__ = [
    "THINK_CLOSE",
    "QAMatchConfig",
    "QAMatchVerifier",
    "answer_tokens",
    "final_answer",
    "normalize_answer",
    "reference_answers",
    "text_after_think",
    "token_f1",
]


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization (see the module docstring).

    >>> normalize_answer("The  U.S.A., of course!")
    'usa of course'
    """
    text = _PUNCT.sub("", text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """Normalized tokens; each CJK character is a token of its own.

    >>> answer_tokens("The capital is 北京.")
    ['capital', 'is', '北', '京']
    """
    return _CJK.sub(r" \1 ", normalize_answer(text)).split()


def token_f1(pred: list[str], gold: list[str]) -> float:
    """Bag-of-tokens F1 of two token lists; two empty lists match (1.0), one empty list scores 0.0.

    >>> round(token_f1(["eiffel", "tower", "paris"], ["eiffel", "tower"]), 4)
    0.8
    """
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _contains(pred: list[str], gold: list[str]) -> bool:
    # Whole-token span: pad with spaces so "paris" does not match inside "parisian".
    return f" {' '.join(gold)} " in f" {' '.join(pred)} "


def reference_answers(reference: Any) -> list[str] | str:
    """The acceptable answers in ``reference``, or a reason string when there are none usable."""
    if reference is None:
        return "no reference"
    if isinstance(reference, Mapping):
        keys = [k for k in ("answers", "correct_answers") if k in reference]
        if not keys:
            return f"dict reference has neither 'answers' nor 'correct_answers' (keys: {sorted(map(str, reference))[:8]})"
        found: list[str] = []
        for k in keys:
            value = reference[k]
            if (
                isinstance(value, Mapping) and "text" in value
            ):  # SQuAD: {"text": [...], "answer_start": [...]}
                value = value["text"]
            got = reference_answers(value)
            if isinstance(got, str):
                return f"reference[{k!r}]: {got}"
            found.extend(got)
        return found
    if isinstance(reference, str):
        return [reference]
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        return [str(reference)]
    if isinstance(reference, (list, tuple)):
        out: list[str] = []
        for i, item in enumerate(reference):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append(str(item))
            else:
                return f"reference item {i} is a {type(item).__name__}, expected a string"
        return out
    return f"reference of type {type(reference).__name__}; expected a string, a list or a dict with 'answers'"


class QAMatchConfig(VerifierConfig):
    """Config of the short-answer matcher."""

    type: Literal["qa_match"] = "qa_match"
    mode: Literal["exact", "f1", "contains"] = Field(
        default="exact",
        description=(
            "'exact': normalized exact match (0/1); 'f1': token F1 in [0, 1]; 'contains': 1 if a "
            "reference occurs as a whole-token span of the answer (gameable by listing candidates; "
            "opt-in, for evaluation)."
        ),
    )
    judge_final_answer: bool = Field(
        default=True,
        description=(
            "Judge only the final answer: the text after the last '</think>', and inside the last "
            "<answer>…</answer> when present."
        ),
    )

    def build(self) -> Verifier:
        return QAMatchVerifier(self)


class QAMatchVerifier(RuleVerifier):
    """Exact match / F1 / containment of the answer against the best reference."""

    _reads_reference: ClassVar[bool] = True

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: QAMatchConfig):
        super().__init__(config)
        self.cfg = config

    def score_row(self, sample: Sample) -> RowResult:
        refs = reference_answers(sample.reference)
        if isinstance(refs, str):
            return abstain(refs)
        golds = [(r, answer_tokens(r)) for r in refs]
        golds = [(r, toks) for r, toks in golds if toks]
        if not golds:
            return abstain("reference is empty after normalization")
        text = final_answer(sample.completion) if self.cfg.judge_final_answer else sample.completion
        pred = answer_tokens(text)
        best, best_ref = -1.0, golds[0][0]
        for raw, gold in golds:
            if self.cfg.mode == "exact":
                s = float(pred == gold)
            elif self.cfg.mode == "f1":
                s = token_f1(pred, gold)
            else:
                s = float(_contains(pred, gold))
            if s > best:
                best, best_ref = s, raw
        return ok(best, best_reference=best_ref)
