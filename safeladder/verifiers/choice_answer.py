"""``choice_answer``: did the completion pick the gold option letter of a multiple-choice question?

Score ``1.0`` when the extracted letter equals the gold letter, ``0.0`` when it differs, when no
letter can be found, or when several **different** letters are offered as the answer ("A or B",
``\\boxed{A}\\boxed{C}``, "The answer is A, B, C"): a grader that accepts any listed letter is
gamed by listing them all (Liuziyu77/Visual-RFT #79; trainer-contracts.md (c).7).

Extraction is deterministic, by priority; the first kind that yields any letter decides, and all
of its letters must agree:

1. ``statement`` — "The answer is (B)", "Answer: B", "**Answer:** B", "the correct option is
   C", "answers are A and C";
2. ``boxed`` — ``\\boxed{B}``, ``\\boxed{\\text{(B)}}``;
3. ``answer_tag`` — ``<answer>B</answer>``, ``<answer>B) Paris</answer>``;
4. ``line_start`` — a line that starts with a letter and a delimiter: "B) …", "(B) …",
   "B. …", "B: …", "**B**", "- B", or a letter alone on its line (so a bare "B" completion);
5. ``lone`` — the whole completion is a list of letters: "A or B", "A, C";
6. ``delimited`` — "(B)" or "**B**" anywhere else ("I'd pick (B) here").

Letters are upper case only. Ordinary English is not read as a choice: a letter needs one of
these shapes, and a bare "A" or "I" followed by a lower-case word is the article / pronoun
("Answer: A train leaves…", "The answer is A few large producers", "I think…"), not option A /
I — unless that word cannot follow an article or a pronoun ("A because…", "A is correct", "A or
B"). With ``strip_think`` (default) only the text after the last ``</think>`` is read, so
letters weighed while reasoning don't count.

Reference (the gold letter): a letter ``"B"`` (``"b"``, ``"(B)"`` also accepted); an integer
index (``0`` → the first of ``letters``); or a dict with ``answer`` (letter or index) and / or
``answer_index`` (index), e.g. an ``mmlu_mc.jsonl`` row. Missing, unparsable, out-of-range or
contradictory references (``answer`` and ``answer_index`` disagree) **abstain** with the reason;
nothing raises.

``match_text: true`` also accepts the gold option's text when the completion gives no letter at
all: the gold text is the reference dict's ``answer_text``, else ``choices[gold index]`` (from
the reference dict, else from ``meta["answer_text"]`` / ``meta["choices"]``). The completion's
answer text is, by the same priority, the rest of the line after an answer statement ("The
answer is Paris."), else the ``\\boxed{}`` contents, else the ``<answer>`` contents, else the
whole (post-think) text; after trimming, case-folding and dropping final periods / markdown
emphasis, it must equal the gold text exactly (every candidate of the deciding kind). Only the
line after a statement is read, so a multi-line option text is not matched by a statement.

``details``: ``pred``, ``gold``, ``via`` (the kind that decided), ``reason`` for a 0.0.

Inputs: ``completion`` (the letter it picks), ``reference`` (gold letter, index or dict) and,
with ``match_text``, ``meta["answer_text"]`` / ``meta["choices"]``.
Score range: [0, 1] -- 1.0 the gold letter, 0.0 otherwise; NaN with status ``abstain`` for a
missing or unusable reference.

Example::

    {"type": "choice_answer", "letters": "ABCD", "match_text": true}
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import lru_cache
from numbers import Integral
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from safeladder.answers import ANSWER_CLOSE, ANSWER_OPEN, text_after_think
from safeladder.types import Sample
from safeladder.verifiers.base import RowResult, RuleVerifier, Verifier, VerifierConfig, abstain, ok

Kind = Literal["statement", "boxed", "answer_tag", "line_start", "lone", "delimited"]

_BOXED = "\\boxed{"
#: Longest ``\\boxed{…}`` content read; a longer box is not a letter.
_MAX_BOX = 300

# An answer lead-in: "answer is", "Answer:", "correct option is", "answers are", "answer =".
# Plural only for "answers": "the options are A) …, B) …" lists options, it does not answer.
_LEAD = re.compile(
    r"(?i:\b(?:answers?|option|choice)\b)[ \t]{0,3}\*{0,2}[ \t]{0,3}"
    r"(?:(?i:is|are|would[ \t]{1,3}be|should[ \t]{1,3}be|will[ \t]{1,3}be)\b|[:=])"
    r"[\s:*]{0,8}(?:(?i:option|choice)[ \t]{1,3})?"
)
# Joins the letters of a list: "A, B", "A or B", "A/B", "A, and C", "A & option B".
_SEP = re.compile(
    r"[ \t]{0,3}(?:[,/&;][ \t]{0,3}(?:(?i:or|and)\b)?|(?i:or|and)\b)[ \t]{0,3}"
    r"(?:(?i:option|choice)[ \t]{1,3})?"
)
_BRACE = re.compile(r"[{}]")
_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)[ ]?\{([^{}]{0,200})\}")
# A bare "A" / "I" followed by a lower-case word is the article / pronoun ("A train leaves",
# "I think"), unless the word is one that cannot follow them ("A because", "A is correct").
_PROSE_AFTER = re.compile(
    r"[ \t]+(?!(?:because|since|which|is|seems|matches|fits|and|or|but)\b)[a-z]"
)
_WORD_LETTERS = frozenset("AI")


class ChoiceAnswerConfig(VerifierConfig):
    """Config of the multiple-choice letter check."""

    type: Literal["choice_answer"] = "choice_answer"
    letters: str = Field(
        default="ABCDEFGHIJ",
        description="Allowed option letters in option order (upper case; index 0 is the first).",
    )
    match_text: bool = Field(
        default=False,
        description=(
            "When the completion names no letter, accept it if its answer text equals the gold "
            "option's text (reference dict 'answer_text' / 'choices', or the same keys in meta)."
        ),
    )
    strip_think: bool = Field(
        default=True,
        description=(
            "Read only the text after the last '</think>' (letters weighed while reasoning "
            "don't count)."
        ),
    )

    @field_validator("letters")
    @classmethod
    def _letters(cls, value: str) -> str:
        if not value or any(c not in string.ascii_uppercase for c in value):
            raise ValueError(
                f"letters must be upper-case A-Z letters such as 'ABCD', got {value!r}"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"letters has a repeated letter: {value!r}")
        return value

    def build(self) -> Verifier:
        return ChoiceAnswerVerifier(self)


def _norm_text(text: str) -> str:
    """Trimmed, case-folded, whitespace-collapsed text without final periods or emphasis."""
    return " ".join(text.split()).lstrip("*_`\"'$ ").rstrip(".*_`\"'$ ").casefold()


def _tag_contents(text: str) -> list[str]:
    """Contents of every ``<answer>…</answer>`` pair, by plain string search (linear)."""
    out: list[str] = []
    start = text.find(ANSWER_OPEN)
    while start != -1:
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
        if end == -1:
            break
        out.append(text[start + len(ANSWER_OPEN) : end])
        start = text.find(ANSWER_OPEN, end + len(ANSWER_CLOSE))
    return out


def _boxed_contents(text: str) -> list[str]:
    """Contents of every brace-balanced ``\\boxed{…}`` of at most ``_MAX_BOX`` characters."""
    out: list[str] = []
    start = text.find(_BOXED)
    while start != -1:
        begin = start + len(_BOXED)
        depth, close = 1, -1
        for m in _BRACE.finditer(text, begin, min(len(text), begin + _MAX_BOX + 1)):
            depth += 1 if m.group(0) == "{" else -1
            if depth == 0:
                close = m.start()
                break
        if close != -1:
            content = text[begin:close]
            for _ in range(3):  # \text{\textbf{B}} nests at most a few wrappers deep
                content = _WRAPPER.sub(r"\1", content)
            out.append(content)
        start = text.find(_BOXED, begin)
    return out


def _line_after(text: str, pos: int) -> str:
    end = text.find("\n", pos)
    return text[pos:] if end == -1 else text[pos:end]


def _gold_index(value: Any, letters: str) -> tuple[int | None, str]:
    """Index of the gold option in ``value`` (a letter or an index), or None and the reason."""
    if isinstance(value, bool):
        return None, f"reference {value!r} is a bool, not a letter or an index"
    if isinstance(value, Integral):
        i = int(value)
        if 0 <= i < len(letters):
            return i, ""
        return None, f"reference index {i} is outside 0..{len(letters) - 1} (letters {letters!r})"
    if isinstance(value, str):
        s = value.strip()
        if len(s) == 3 and s[0] == "(" and s[2] == ")":
            s = s[1]
        if len(s) == 1 and s.upper() in letters:
            return letters.index(s.upper()), ""
        return None, f"reference {value!r:.40} is not one of the letters {letters!r}"
    return None, f"reference must be a letter, an index or a dict, got {type(value).__name__}"


class ChoiceReader:
    """Reads the option letters a text offers as its answer (see the module docstring).

    Args:
        letters: the allowed option letters, upper case (``"ABCD"``).
    """

    def __init__(self, letters: str = "ABCDEFGHIJ"):
        self.letters = letters
        let = f"[{letters}]"
        # One letter form: "B", "(B)", "[B]", "**B**", "**(B)**"; never glued to a word character.
        self._one = re.compile(rf"(\*{{0,2}}[(\[]?)({let})([)\]]?\*{{0,2}})(?!\w)")
        self._line = re.compile(
            rf"^[ \t]{{0,8}}(?:[-*+>][ \t]{{1,3}})?(?:\*\*)?"
            rf"(?:\(({let})\)|\[({let})\]|({let})(?=[.:)]|\*\*|[ \t\r]*$))",
            re.MULTILINE,
        )
        self._delimited = re.compile(rf"(?<!\w)\(({let})\)|\*\*\(?({let})\)?\*\*")

    def letters_at(self, text: str, pos: int) -> list[str]:
        """The letter, or list of letters ("A, B or C"), that starts at ``pos``; [] if none.

        >>> r = ChoiceReader()
        >>> r.letters_at("(B) Paris", 0), r.letters_at("A or C", 0), r.letters_at("A train", 0)
        (['B'], ['A', 'C'], [])
        """
        return self._letters_span(text, pos)[0]

    def _letters_span(self, text: str, pos: int) -> tuple[list[str], int]:
        m = self._one.match(text, pos)
        if m is None:
            return [], pos
        found = [m.group(2)]
        end = m.end()
        while (sep := _SEP.match(text, end)) is not None:
            nxt = self._one.match(text, sep.end())
            if nxt is None:
                break
            found.append(nxt.group(2))
            end = nxt.end()
        bare = not m.group(1) and not m.group(3)
        if len(found) == 1 and bare and found[0] in _WORD_LETTERS and _PROSE_AFTER.match(text, end):
            return [], pos
        return found, end

    def extract(self, text: str) -> tuple[Kind | None, list[str]]:
        """``(kind, letters)`` of the highest-priority kind with any letter, else ``(None, [])``.

        >>> ChoiceReader().extract("\\boxed{C}. The answer is (B).")
        ('statement', ['B'])
        """
        found = [x for m in _LEAD.finditer(text) for x in self.letters_at(text, m.end())]
        if found:
            return "statement", found
        blocks: tuple[tuple[Kind, list[str]], ...] = (
            ("boxed", _boxed_contents(text)),
            ("answer_tag", _tag_contents(text)),
        )
        for kind, contents in blocks:
            found = [x for c in contents for x in self.letters_at(c.strip(" \t\r\n$"), 0)]
            if found:
                return kind, found
        found = [next(g for g in m.groups() if g) for m in self._line.finditer(text)]
        if found:
            return "line_start", found
        whole = text.strip().removesuffix(".")
        found, end = self._letters_span(whole, 0)
        if found and end == len(whole):
            return "lone", found
        found = [next(g for g in m.groups() if g) for m in self._delimited.finditer(text)]
        if found:
            return "delimited", found
        return None, []

    def text_candidates(self, text: str) -> list[str]:
        """Answer texts for ``match_text``, by the same priority as the letters."""
        kinds = (
            [_line_after(text, m.end()) for m in _LEAD.finditer(text)],
            _boxed_contents(text),
            _tag_contents(text),
            [text],
        )
        for kind in kinds:
            normed = [_norm_text(t) for t in kind]
            if any(normed):
                return normed
        return []


@lru_cache(maxsize=32)
def choice_reader(letters: str = "ABCDEFGHIJ") -> ChoiceReader:
    """The (shared, cached) ``ChoiceReader`` for ``letters``."""
    return ChoiceReader(letters)


def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> tuple[Kind | None, list[str]]:
    """``(kind, letters)`` the text offers as its answer, by priority; ``(None, [])`` if none.

    Reads ``text`` as given: drop a reasoning block first (``safeladder.answers.text_after_think``)
    if only the final answer should count. Several different letters mean no single answer.

    >>> extract_choice("Between A and C... The answer is (C).")
    ('statement', ['C'])
    """
    return choice_reader(letters).extract(text)


class ChoiceAnswerVerifier(RuleVerifier):
    """1.0 for the gold letter, 0.0 otherwise; see the module docstring."""

    _reads_reference: ClassVar[bool] = True

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: ChoiceAnswerConfig):
        super().__init__(config)
        self.cfg = config
        self.reader = choice_reader(config.letters)

    # --- extraction (``ChoiceReader``) --------------------------------------------------------

    def letters_at(self, text: str, pos: int) -> list[str]:
        """The letter, or list of letters ("A, B or C"), that starts at ``pos``; [] if none."""
        return self.reader.letters_at(text, pos)

    def extract(self, text: str) -> tuple[Kind | None, list[str]]:
        """``(kind, letters)`` of the highest-priority kind with any letter, else ``(None, [])``."""
        return self.reader.extract(text)

    def text_candidates(self, text: str) -> list[str]:
        """Answer texts for ``match_text``, by the same priority as the letters."""
        return self.reader.text_candidates(text)

    # --- reference --------------------------------------------------------------------------

    def gold(self, sample: Sample) -> tuple[int | None, str]:
        """Gold option index, or None and the reason to abstain."""
        ref = sample.reference
        letters = self.cfg.letters
        if ref is None:
            return None, "no reference (the gold letter or index)"
        if not isinstance(ref, Mapping):
            return _gold_index(ref, letters)
        keys = [k for k in ("answer", "answer_index") if ref.get(k) is not None]
        if not keys:
            return None, "reference dict has neither 'answer' nor 'answer_index'"
        parsed = [_gold_index(ref[k], letters) for k in keys]
        for (idx, why), k in zip(parsed, keys, strict=True):
            if idx is None:
                return None, f"{k}: {why}"
        if len({idx for idx, _ in parsed}) > 1:
            return (
                None,
                f"reference answer {ref['answer']!r} and answer_index "
                f"{ref['answer_index']!r} disagree",
            )
        return parsed[0][0], ""

    @staticmethod
    def gold_text(sample: Sample, index: int) -> str | None:
        for source in (sample.reference, sample.meta):
            if not isinstance(source, Mapping):
                continue
            text = source.get("answer_text")
            if isinstance(text, str) and text.strip():
                return text
            choices = source.get("choices")
            if (
                isinstance(choices, list)
                and index < len(choices)
                and isinstance(choices[index], str)
            ):
                return str(choices[index])
        return None

    # --- scoring ----------------------------------------------------------------------------

    def score_row(self, sample: Sample) -> RowResult:
        index, why = self.gold(sample)
        if index is None:
            return abstain(why)
        gold = self.cfg.letters[index]
        text = text_after_think(sample.completion) if self.cfg.strip_think else sample.completion
        kind, found = self.extract(text)
        if kind is not None:
            distinct = sorted(set(found))
            if len(distinct) > 1:
                return ok(
                    0.0,
                    gold=gold,
                    via=kind,
                    reason=f"several different letters offered: {', '.join(distinct)}",
                )
            pred = distinct[0]
            return ok(float(pred == gold), pred=pred, gold=gold, via=kind)
        if self.cfg.match_text:
            gold_text = self.gold_text(sample, index)
            if gold_text is not None and _norm_text(gold_text):
                cands = self.text_candidates(text)
                if cands and all(c == _norm_text(gold_text) for c in cands):
                    return ok(1.0, pred=gold, gold=gold, via="text")
                return ok(
                    0.0,
                    gold=gold,
                    via="text",
                    reason="no choice letter found and the answer text differs",
                )
        return ok(0.0, gold=gold, reason="no choice letter found")
