"""Reading answers out of completions: one module for every answer check (DESIGN.md).

Used by the answer verifiers (``math_answer``, ``qa_match``, ``choice_answer``), answer voting
(``guidance.voting``) and training. It sits at the bottom of the layer order (beside
``types``) and imports only the standard library, so ``neural`` may use it as well.

Three jobs, in this order below:

- **final answer**: ``THINK_CLOSE``, ``text_after_think`` (the text after the last
  ``</think>``) and ``final_answer`` (that, narrowed to the last ``<answer>…</answer>``);
- **extraction**: a completion's answer is taken by the first extractor of a list that finds
  one, always the *last* occurrence: ``boxed`` (last ``\\boxed{...}`` / ``\\fbox{...}``),
  ``answer_tag`` (last ``<answer>...</answer>``), ``gsm8k`` (last ``#### n``),
  ``answer_phrase`` (after the last "answer is" / "answer:") and ``last_number``;
  ``clean_answer`` strips delimiters and trailing punctuation; ``reference_answer`` reads a
  gold answer or a whole gold solution;
- **plain numbers**: ``parse_number`` reads exact rationals, percent, units and thousands
  separators (pure Python, never sympy); ``numbers_equal`` compares two of them.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "DEFAULT_EXTRACTORS",
    "REFERENCE_EXTRACTORS",
    "THINK_CLOSE",
    "THINK_OPEN",
    "Extractor",
    "Number",
    "clean_answer",
    "extract_answer",
    "extract_answer_parts",
    "final_answer",
    "join_parts",
    "last_boxed_run",
    "lists_several_values",
    "numbers_equal",
    "parse_number",
    "reference_answer",
    "text_after_think",
]

# --------------------------------------------------------------------------- final answer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


def text_after_think(text: str) -> str:
    """The text after the last ``</think>``; the whole text when there is none.

    >>> text_after_think("<think>2+2=4?</think> 4")
    ' 4'
    """
    cut = text.rfind(THINK_CLOSE)
    return text if cut < 0 else text[cut + len(THINK_CLOSE) :]


def final_answer(text: str) -> str:
    """The final answer: after the last ``</think>``, inside the last ``<answer>`` tag if any.

    An unclosed last ``<answer>`` yields the text after it.

    >>> final_answer("<think>maybe Lyon</think><answer> Paris </answer>")
    ' Paris '
    """
    text = text_after_think(text)
    start = text.rfind(ANSWER_OPEN)
    if start < 0:
        return text
    inner = text[start + len(ANSWER_OPEN) :]
    end = inner.find(ANSWER_CLOSE)
    return inner if end < 0 else inner[:end]


# --------------------------------------------------------------------------- extraction
Extractor = Literal["boxed", "answer_tag", "gsm8k", "answer_phrase", "last_number", "last_math"]
DEFAULT_EXTRACTORS: tuple[Extractor, ...] = (
    "boxed",
    "answer_tag",
    "gsm8k",
    "answer_phrase",
    "last_number",
)
REFERENCE_EXTRACTORS: tuple[Extractor, ...] = ("boxed", "answer_tag", "gsm8k", "answer_phrase")


def _match_braces(text: str, open_idx: int) -> str | None:
    """Content of the ``{...}`` group opening at ``open_idx``; None if it never closes."""
    depth = 0
    k = open_idx
    n = len(text)
    while k < n:
        ch = text[k]
        if ch == "\\":  # \{ \} and \\ are not group delimiters
            k += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : k]
        k += 1
    return None


_BARE_BOX_RE = re.compile(r"[^\s$\\{}]{1,64}")
# What may stand between two boxes of one answer ("\boxed{1}, \boxed{2}", "\boxed{1} and
# \boxed{2}", "$\boxed{1}$ \quad \text{and} \quad $\boxed{2}$"): spacing, commas, math delimiters
# and a bare "and" -- never prose, so "\boxed{3} for part (a) and \boxed{1}" is two answers.
# The optional backslash at the end is the first half of a "\\boxed" written with two. A joiner
# (comma, semicolon, "and") is required unless the boxes touch: "\boxed{20} \boxed{143}" is a
# correction, not a list.
_BOX_SEP_RE = re.compile(
    r"(?:\s|[,;$~]|\\[()\[\]]|\\\\|\\q?quad(?![A-Za-z])|\\[,;:! ]|\band\b"
    r"|\\(?:text|textrm|textnormal|mbox)\s?\{\s*(?:and|,)?\s*\})*\\?"
)
_BOX_JOINER_RE = re.compile(r"[,;]|\band\b")
_MAX_BOX_RUN = 64  # boxes combined into one answer at most; older ones are not read


def _box_before(text: str, end: int) -> tuple[int, int, str] | None:
    """``(start, stop, content)`` of the last ``\\boxed``/``\\fbox`` starting before ``end``.

    None when there is none or it is left unclosed; ``stop`` is the index just past the box.
    """
    while True:
        b, f = text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end)
        start = max(b, f)
        if start < 0:
            return None
        j = start + (6 if start == b else 5)
        if j < len(text) and text[j].isalpha():  # another command, e.g. \fboxsep
            end = start
            continue
        break
    while j < len(text) and text[j] in " \t":
        j += 1
    if j < len(text) and text[j] == "{":
        content = _match_braces(text, j)
        return None if content is None else (start, j + len(content) + 2, content)
    m = _BARE_BOX_RE.match(text, j)  # MATH's "\boxed 5" form
    return (start, m.end(), m.group(0)) if m else None


def last_boxed_run(text: str) -> list[str] | None:
    """Contents of the final run of adjacent boxes, in order; None when there is no box.

    Boxes belong to one run when they touch or only a joiner stands between them (a comma,
    semicolon or "and", with spacing and math delimiters): ``\\boxed{1}, \\boxed{2} and
    \\boxed{3}`` is one answer of three parts. A box followed by prose, or by mere spacing, and
    another box is an earlier, overridden answer.

    >>> last_boxed_run("so \\\\boxed{1}, \\\\boxed{2} and \\\\boxed{3}.")
    ['1', '2', '3']
    >>> last_boxed_run("\\\\boxed{72}, hmm, no: \\\\boxed{73}")
    ['73']
    """
    found = _box_before(text, len(text))
    if found is None:
        return None
    start, _, content = found
    parts = [content]
    while len(parts) < _MAX_BOX_RUN:
        prev = _box_before(text, start)
        if prev is None or prev[1] > start:
            break
        sep = text[prev[1] : start]
        if sep and not (_BOX_SEP_RE.fullmatch(sep) and _BOX_JOINER_RE.search(sep)):
            break
        start = prev[0]
        parts.append(prev[2])
    parts.reverse()
    return parts


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed``/``\\fbox``; None when absent or left unclosed."""
    found = _box_before(text, len(text))
    return None if found is None else found[2]


def _last_answer_tag(text: str) -> str | None:
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    return None if start < 0 else text[start + len(ANSWER_OPEN) : end]


_GSM8K_VALUE_RE = re.compile(r"[ \t]*([-+$\\.(\d][^\n]{0,200})")


def _last_gsm8k(text: str) -> str | None:
    end = len(text)
    while (i := text.rfind("####", 0, end)) >= 0:
        m = _GSM8K_VALUE_RE.match(text, i + 4)
        if m:  # "#### Step 3" is a markdown heading, not an answer line
            return m.group(1)
        end = i
    return None


_PHRASE_RE = re.compile(
    r"\banswer\b(?:\*\*)?[ \t]{0,8}(?:is\b[ \t]{0,8}:?|:|=)(?:\*\*)?", re.IGNORECASE
)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_PROSE_START_RE = re.compile(r"[A-Za-z]{2,}\b")
_NEGATION_RE = re.compile(r"\b(?:not|no|never|isn't|cannot|can't|neither|nor)\b", re.IGNORECASE)
# A number token as written in text: a LaTeX fraction of plain numbers, or a number not glued to
# a word, an exponent, a subscript or a brace group.
_NUMBER_TOKEN_RE = re.compile(
    r"[-−]?\\[dtc]?frac\{\s?-?\d+(?:\.\d+)?\s?\}\{\s?\d+(?:\.\d+)?\s?\}"
    r"|(?<![\w.\\^_{])[-−]?(?:(?:[1-9]\d{0,2}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[ \t]?/[ \t]?\d+)?(?:[ \t]?%)?"
)
_MATH_SPAN_RE = re.compile(
    r"\$\$([^$]{1,300})\$\$|\$([^$\n]{1,300})\$|\\\((.{1,300}?)\\\)|\\\[(.{1,300}?)\\\]", re.DOTALL
)


def _last_match(pattern: re.Pattern[str], text: str, pos: int = 0) -> re.Match[str] | None:
    tail = deque(pattern.finditer(text, pos), maxlen=1)
    return tail[0] if tail else None


def _after_phrase(text: str) -> str | None:
    last = _last_match(_PHRASE_RE, text)
    if last is None:
        return None
    value = text[last.end() : last.end() + 400].lstrip().split("\n", 1)[0]
    cut = _SENTENCE_END_RE.search(value)
    if cut:
        value = value[: cut.start()]
    value = value.strip().strip("*").strip()
    if _PROSE_START_RE.match(value) and not _NEGATION_RE.search(value):
        # "Final Answer: The volume of $ABCDEFGH$ is 120" -> 120, but only when unambiguous.
        numbers = _NUMBER_TOKEN_RE.findall(value)
        if len(numbers) == 1:
            return numbers[0]
    return value


def _last_number(text: str) -> str | None:
    whole = _MATH_SPAN_RE.fullmatch(text.strip())
    if whole is not None:  # the completion is nothing but one formula: that is the answer
        return next(g for g in whole.groups() if g is not None)
    num = _last_match(_NUMBER_TOKEN_RE, text)
    # Math spans are looked for near the end only: an unclosed "\(" costs a bounded scan each,
    # and a hostile text could hold thousands of them.
    offset = max(0, len(text) - _SPAN_TAIL_CHARS)
    span = None
    for m in _MATH_SPAN_RE.finditer(text, offset):
        if any(ch.isdigit() for ch in m.group(0)):
            span = m
    if span is not None and (num is None or span.end() >= num.end()):
        return next(g for g in span.groups() if g is not None)
    return num.group(0) if num is not None else None


# Math-Verify's LaTeX reading: display math may span lines, inline math may not.
_LATEX_SPAN_RE = re.compile(
    r"(?<!\\)\$\$(.{1,300}?)\$\$|\\\[(.{1,300}?)\\\]"
    r"|(?<!\\)\$((?:\\\$|[^$\n]){1,300}?)(?<!\\)\$|\\\(([^\n]{1,300}?)\\\)",
    re.DOTALL,
)


def _last_math(text: str) -> str | None:
    """The last math span (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) holding a digit."""
    span = None
    for m in _LATEX_SPAN_RE.finditer(text, max(0, len(text) - _SPAN_TAIL_CHARS)):
        if any(ch.isdigit() for ch in m.group(0)):
            span = m
    return None if span is None else next(g for g in span.groups() if g is not None)


_SPAN_TAIL_CHARS = 3000
_EXTRACT: dict[str, Callable[[str], str | None]] = {
    "boxed": _last_boxed,
    "answer_tag": _last_answer_tag,
    "gsm8k": _last_gsm8k,
    "answer_phrase": _after_phrase,
    "last_number": _last_number,
    "last_math": _last_math,
}


def clean_answer(answer: str) -> str:
    """Strip math delimiters, currency ``\\$``, and trailing sentence punctuation.

    >>> clean_answer(" $\\\\frac{1}{2}$. ")
    '\\\\frac{1}{2}'
    """
    s = answer.replace("\\$", "").strip()
    for _ in range(4):
        prev = s
        while s and s[-1] in ".,;:" and not s.endswith(".."):  # keep an ellipsis "1, 2, ..."
            s = s[:-1].rstrip()
        s = s.lstrip("=").strip()  # "= \frac{10}{9}" from the tail of an equation
        if len(s) > 4 and s.startswith("$$") and s.endswith("$$"):
            s = s[2:-2].strip()
        elif len(s) > 2 and s.startswith("$") and s.endswith("$") and s.count("$") == 2:
            s = s[1:-1].strip()
        elif len(s) > 4 and (s[:2], s[-2:]) in (("\\(", "\\)"), ("\\[", "\\]")):
            s = s[2:-2].strip()
        if s == prev:
            break
    if s.count("$") == 1:  # "$5": a currency sign or a stray delimiter
        s = s.replace("$", "").strip()
    return s.replace("\\displaystyle", "").strip()


def extract_answer_parts(
    text: str, extractors: Sequence[str] = DEFAULT_EXTRACTORS, combine_boxes: bool = True
) -> tuple[tuple[str, ...], str] | None:
    """``(answer parts, extractor name)`` from the first extractor that finds one, or None.

    Every extractor gives one part, except ``boxed`` with ``combine_boxes``: the final run of
    adjacent boxes (``\\boxed{1}, \\boxed{2}``, see ``last_boxed_run``) gives one part per box.

    >>> extract_answer_parts("so \\\\boxed{1} and \\\\boxed{-2}.")
    (('1', '-2'), 'boxed')
    """
    for name in extractors:
        if name == "boxed" and combine_boxes:
            run = last_boxed_run(text)
            if run is not None:
                return tuple(clean_answer(p) for p in run), name
            continue
        found = _EXTRACT[name](text)
        if found is not None:
            return (clean_answer(found),), name
    return None


def join_parts(parts: Sequence[str]) -> str:
    """One answer string from the parts of a multi-box answer: ``1, 2`` (a set to math-verify)."""
    return ", ".join(parts)


def extract_answer(
    text: str, extractors: Sequence[str] = DEFAULT_EXTRACTORS, combine_boxes: bool = True
) -> tuple[str, str] | None:
    """``(answer, extractor name)`` from the first extractor that finds one, or None.

    A multi-box answer comes back joined: ``\\boxed{1}, \\boxed{2}`` gives ``'1, 2'``.

    >>> extract_answer("I think 3. No: \\\\boxed{4}, not \\\\boxed{5}")
    ('5', 'boxed')
    >>> extract_answer("48/2 = 24 clips\\n#### 72")
    ('72', 'gsm8k')
    """
    found = extract_answer_parts(text, extractors, combine_boxes)
    return None if found is None else (join_parts(found[0]), found[1])


def reference_answer(reference: str) -> str:
    """The answer part of a reference: its marked answer, or the whole (cleaned) string.

    >>> reference_answer("Natalia sold 48+24 = 72 clips.\\n#### 72")
    '72'
    >>> reference_answer("\\\\frac{1}{2}")
    '\\\\frac{1}{2}'
    """
    found = extract_answer(reference, REFERENCE_EXTRACTORS)
    return found[0] if found is not None else clean_answer(reference)


# --------------------------------------------------------------------------- plain numbers
@dataclass(frozen=True)
class Number:
    """A plain number read from an answer: its exact value and whether it carried a percent sign."""

    value: Fraction
    percent: bool = False
    decimal: bool = False  # written with a decimal point ("0.3333"), i.e. a float to math-verify


_SPACING_RE = re.compile(r"\\[!,;:>]|\\quad|\\qquad")
_TEXT_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathit|rm)\s?\{([^{}]{0,40})\}"
)
_DEGREE_RE = re.compile(r"\^\s?\{?\s?\\circ\s?\}?|\\circ|°|\\degree")
_ASSIGN_RE = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]{1,4}\}?)?\s?=\s?")
_DEC = r"(?:(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
_UNIT = r"(?:[A-Za-z]{2,20}(?:\^\{?[23]\}?|[²³])?|[A-Za-z]{1,10}/[A-Za-z]{1,10})"
_NUMBER_RE = re.compile(
    rf"(?P<sign>[-+]?)\s?(?:\\?\$|€|£|¥)?\s?(?P<sign2>[-+]?)\s?"
    rf"(?:\\[dtc]?frac\{{\s?(?P<fsign>-?)\s?(?P<fn>{_DEC})\s?\}}\{{\s?(?P<fd>{_DEC})\s?\}}"
    rf"|\\[dtc]?frac(?P<fn1>\d)(?P<fd1>\d)"
    rf"|(?P<an>{_DEC})\s?/\s?(?P<ad>{_DEC})"
    rf"|(?P<num>{_DEC}))"
    rf"\s?(?P<pct>\\%|%|percent(?:age)?|pct)?\s?(?:\\?\$|€)?"
    rf"(?:\s(?P<unit>{_UNIT}(?:\s{_UNIT}){{0,3}}))?"
)
# Two-letter words accepted as units; longer words are units unless they are math words.
_SHORT_UNITS = frozenset(
    {"cm", "mm", "km", "kg", "mg", "lb", "oz", "ft", "yd", "mi", "ml", "hr", "am", "pm"}
)
_NOT_UNITS = frozenset(
    {
        "and", "or", "not", "nor", "to", "times", "plus", "minus", "over", "cdot", "div", "pi",
        "sqrt", "sin", "cos", "tan", "sec", "csc", "cot", "log", "ln", "exp", "mod", "pmod",
        "max", "min", "gcd", "lcm", "inf", "infty", "frac", "squared", "cubed", "root", "roots",
    }
)  # fmt: skip


def _to_fraction(s: str) -> Fraction:
    return Fraction(s.replace(",", ""))


def parse_number(answer: str) -> Number | None:
    """Read ``answer`` as a plain number, or None if it is anything else (never raises).

    >>> parse_number("$1,234")
    Number(value=Fraction(1234, 1), percent=False, decimal=False)
    >>> parse_number("-\\\\dfrac{3}{4}").value
    Fraction(-3, 4)
    >>> parse_number("50\\\\%")
    Number(value=Fraction(50, 1), percent=True, decimal=False)
    >>> parse_number("5xy") is None, parse_number("2 pi") is None
    (True, True)
    """
    if len(answer) > 120:
        return None
    s = _SPACING_RE.sub("", answer).replace("\\ ", " ").replace("~", " ").replace("{,}", ",")
    s = _TEXT_CMD_RE.sub(lambda m: f" {m.group(1)}", s)
    s = _DEGREE_RE.sub("", s).replace("−", "-")
    s = " ".join(s.split()).rstrip(".")
    m = _ASSIGN_RE.match(s)
    if m:
        s = s[m.end() :]
    m = _NUMBER_RE.fullmatch(s)
    if m is None:
        return None
    unit = m.group("unit")
    if unit:
        for token in unit.split():
            word = re.sub(r"[\^{}²³\d]", "", token).lower()
            if "/" not in word and (
                word in _NOT_UNITS or (len(word) < 3 and word not in _SHORT_UNITS)
            ):
                return None
    try:
        if m.group("fn") is not None:
            den = _to_fraction(m.group("fd"))
            value = _to_fraction(m.group("fn")) / den if den else None
            if value is not None and m.group("fsign") == "-":
                value = -value
        elif m.group("fn1") is not None:
            den = Fraction(m.group("fd1"))
            value = Fraction(m.group("fn1")) / den if den else None
        elif m.group("an") is not None:
            den = _to_fraction(m.group("ad"))
            value = _to_fraction(m.group("an")) / den if den else None
        else:
            value = _to_fraction(m.group("num"))
    except (ValueError, ZeroDivisionError):
        return None
    if value is None:
        return None
    if (m.group("sign") == "-") != (m.group("sign2") == "-"):
        value = -value
    return Number(value, percent=m.group("pct") is not None, decimal="." in s)


def _terminates(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _close(x: Fraction, y: Fraction, rel_tol: float) -> bool:
    if x == y:
        return True
    if _terminates(x) and _terminates(y):
        return False  # two exact decimals: no reason to allow slack
    return abs(x - y) <= Fraction(str(rel_tol)) * max(abs(x), abs(y))


def _rounded_equal(x: Fraction, y: Fraction, places: int) -> bool:
    # Math-Verify compares a float with another number after rounding both to float_rounding
    # places (math_verify.grader.sympy_numeric_eq): 1/3 equals 0.3333 at 4 places.
    return round(x, places) == round(y, places)


def numbers_equal(
    a: Number, b: Number, rel_tol: float = 1e-6, float_rounding: int | None = None
) -> bool:
    """Equality of two plain numbers; a percent on one side only may also mean /100.

    With ``float_rounding``, a number written as a decimal also equals any number that rounds to
    the same value at that many decimal places (Math-Verify's rule for floats).

    >>> numbers_equal(parse_number("50%"), parse_number("0.5"))
    True
    >>> numbers_equal(parse_number("1/3"), parse_number("0.333333"))
    True
    >>> numbers_equal(parse_number("16386.17"), parse_number("16386.169"))
    False
    >>> numbers_equal(parse_number("1/3"), parse_number("0.3333"), float_rounding=4)
    True
    """
    xs = [a.value] + ([a.value / 100] if a.percent and not b.percent else [])
    ys = [b.value] + ([b.value / 100] if b.percent and not a.percent else [])
    if any(_close(x, y, rel_tol) for x in xs for y in ys):
        return True
    if float_rounding is None or not (a.decimal or b.decimal):
        return False
    return any(_rounded_equal(x, y, float_rounding) for x in xs for y in ys)


_SEVERAL_VALUES_RE = re.compile(r"\\cup|\\(?:pm|mp)\b|\band\b|\bor\b|^\s*\\?\{")


def lists_several_values(gold: str) -> bool:
    """Whether an answer lists values: ``1, 2``, ``\\{1, 2\\}``, ``(1,2),(3,4)``, ``a \\cup b``.

    A plain number, a single tuple ``(1, 2)`` or an expression is one value.

    >>> lists_several_values("1, 2"), lists_several_values("(1, 2)"), lists_several_values("1,234")
    (True, False, False)
    """
    if parse_number(gold) is not None:
        return False
    if _SEVERAL_VALUES_RE.search(gold):
        return True
    depth = 0
    for i, ch in enumerate(gold):
        if ch in "([{" and not (ch == "{" and i and gold[i - 1] == "\\"):
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch in ",;" and depth <= 0:
            return True
    return False
