"""Plain numbers in answers: exact rationals, percent, units, thousands separators.

The numeric fast path of ``math_answer`` and of answer voting: pure Python, never sympy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction


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
