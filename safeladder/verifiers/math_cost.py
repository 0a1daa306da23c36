"""How expensive an answer is to check symbolically, read from its text before any worker sees it.

A policy can write an answer whose exact value no computer can hold: ``9^{9^{9^{9^{5}}}}``
(sympy evaluates integer powers exactly, so math-verify spends minutes building a number of
~10^(10^8) digits before its worker is killed). ``power_digits`` estimates, without computing
anything big, the number of decimal digits of the largest numeric power or factorial written
in an answer; ``math_answer`` does not send an answer above ``MAX_POWER_DIGITS`` to math-verify
at all. ``symbolic_cost`` is a rough per-row cost used to run cheap rows first, so rows that
are slow for other reasons (long, deeply nested, polynomial powers such as ``(x+1)^{3000}``)
come last and are the ones a call's time budget cuts.

Measured with math-verify 0.9.0 / sympy 1.14 on one core (``symbolic_check`` against ``5``):
``9^{500000}`` (4.8e5 digits) 0.4 s, ``9^{5000000}`` (4.8e6 digits) 3.6 s, ``9^{50000000}``
and ``9^{9^{9^{9^{5}}}}`` more than 20 s.

>>> power_digits("9^{9^{9^{9^{5}}}}"), round(power_digits("9^{500000}"))
(inf, 477121)
>>> round(power_digits("2^{10}"), 2), round(power_digits("x^2 + 10^{100}"))
(3.01, 100)
>>> power_digits("(x+1)^{3000}"), power_digits("\\\\frac{1}{2}")
(0.0, 0.0)
"""

from __future__ import annotations

import math
import re

# Beyond this many digits a number is not an answer anyone means, and checking it costs
# seconds: 9^{500000} (4.8e5 digits) takes 0.4 s, ten times that 3.6 s (see above).
MAX_POWER_DIGITS = 100_000

_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_TRAILING_NUMBER_RE = re.compile(r"(?:\d+(?:\.\d+)?|\.\d+)$")
_LEADING_DIGITS_RE = re.compile(r"\d+")
_SPACES_RE = re.compile(r"\s+|\\[,;!: ]|\\left|\\right")
_OPEN = {"{": "}", "(": ")"}
_CLOSE = {"}": "{", ")": "("}
_MAX_DEPTH = 50


def _matches(s: str) -> list[int]:
    """``m[k]``: index of the bracket matching ``s[k]`` (``{}``/``()``), -1 if unmatched/none."""
    m = [-1] * len(s)
    stack: list[int] = []
    for k, ch in enumerate(s):
        if ch in _OPEN:
            stack.append(k)
        elif ch in _CLOSE:
            if stack and s[stack[-1]] == _CLOSE[ch]:
                o = stack.pop()
                m[o], m[k] = k, o
            else:
                stack.clear()  # a stray closer: nothing before it pairs with anything after
    return m


class _Reader:
    """Log-magnitude evaluation of the numeric sub-expressions of one answer."""

    def __init__(self, s: str):
        self.s = s
        self.m = _matches(s)

    def _top_level(self, i: int, j: int, op: str) -> int:
        """Index of the first ``op`` in ``s[i:j]`` outside any group, or -1."""
        s, m = self.s, self.m
        k = i
        while k < j:
            ch = s[k]
            if ch == op:
                return k
            k = m[k] + 1 if ch in _OPEN and i <= m[k] < j else k + 1
        return -1

    def log10(self, i: int, j: int, depth: int = 0) -> float | None:
        """log10 of the magnitude of ``s[i:j]`` when it is made of numbers, ``{}``/``()``
        groups, a sign, ``^`` (right-associative) and postfix ``!``; None for anything else
        (a symbol, ``\\frac``). Infinity when even the exponent is too big for a float."""
        s = self.s
        if depth > _MAX_DEPTH or i >= j:
            return None
        if s[i] in _OPEN and self.m[i] == j - 1:
            return self.log10(i + 1, j - 1, depth + 1)
        if s[i] in "+-":
            return self.log10(i + 1, j, depth + 1)
        if _NUMBER_RE.fullmatch(s, i, j):
            value = float(s[i:j])
            return -math.inf if value == 0 else math.log10(value)
        k = self._top_level(i, j, "^")
        if k > i:
            base = self.log10(i, k, depth + 1)
            exponent = None if base is None else self.log10(k + 1, j, depth + 1)
            return None if base is None or exponent is None else _power(base, exponent)
        if s[j - 1] == "!":
            n = self.log10(i, j - 1, depth + 1)
            return None if n is None else _factorial(n)
        return None

    def before(self, end: int) -> int | None:
        """Start of the operand (number or group) that ends at ``end``, or None."""
        s = self.s
        if end <= 0:
            return None
        if s[end - 1] in _CLOSE:
            start = self.m[end - 1]
            return None if start < 0 else start
        m = _TRAILING_NUMBER_RE.search(s[max(0, end - 64) : end])
        return None if m is None else end - len(m.group(0))

    def after(self, start: int) -> int | None:
        """End of the operand that starts at ``start``, or None."""
        s = self.s
        if start >= len(s):
            return None
        if s[start] in _OPEN:
            end = self.m[start]
            return None if end < 0 else end + 1
        # LaTeX reads one character after a bare ^; a run of digits is read whole here, which
        # can only overestimate (9^999999 is counted as 9^{999999}).
        m = _LEADING_DIGITS_RE.match(s, start)
        return None if m is None else m.end()


def _power(base: float, exponent: float) -> float:
    """log10 magnitude of ``b^e`` from log10 magnitudes of ``b`` and ``e`` (sign ignored)."""
    if base == 0 or exponent == -math.inf:  # 1^e, b^0
        return 0.0
    if base == -math.inf:  # 0^e
        return -math.inf
    e = math.inf if exponent > 300 else 10.0**exponent
    return math.copysign(math.inf, base) if math.isinf(e) else e * base


def _factorial(n_log10: float) -> float:
    """log10 of ``n!`` from log10 of ``n``."""
    if n_log10 > 15:
        return math.inf
    n = 10.0**n_log10
    return math.lgamma(n + 1) / math.log(10)


def power_digits(text: str) -> float:
    """Decimal digits of the largest numeric power or factorial written in ``text``, estimated.

    Every ``a^b`` and ``a!`` whose operands are numbers or numeric groups (towers included) is
    measured in log space, so nothing big is ever computed; powers of symbols are ignored
    (0.0). Returns a float that may be ``inf``; the magnitude of a negative exponent counts too
    (``10^{-10^{9}}`` is as costly as its reciprocal). Linear in ``len(text)`` times the
    nesting depth (at most 50 levels are read).
    """
    s = _SPACES_RE.sub("", text)
    r = _Reader(s)
    worst = 0.0
    for k, ch in enumerate(s):
        if ch == "^":
            i, j = r.before(k), r.after(k + 1)
            if i is None or j is None:
                continue
            lb = r.log10(i, k)
            le = None if lb is None else r.log10(k + 1, j)
            if lb is not None and le is not None:
                digits = _power(lb, le)
                if digits != -math.inf:  # 0^e is 0, however large e is
                    worst = max(worst, abs(digits))
        elif ch == "!":
            i = r.before(k)
            n = None if i is None else r.log10(i, k)
            if n is not None:
                worst = max(worst, _factorial(n))
    return worst


def _largest_exponent(s: str) -> float:
    """The largest numeric exponent in ``s`` (of any base, ``x`` included), 0.0 if none."""
    r = _Reader(s)
    worst = 0.0
    for k, ch in enumerate(s):
        if ch == "^":
            j = r.after(k + 1)
            le = None if j is None else r.log10(k + 1, j)
            if le is not None and le > 0:
                worst = max(worst, math.inf if le > 300 else 10.0**le)
    return worst


def symbolic_cost(golds: tuple[str, ...], pred: str | None) -> float:
    """A rough cost of checking one row symbolically: characters, with powers, factorials and
    nesting weighted up, plus the largest numeric exponent (sympy expands ``(x+1)^{3000}``
    term by term). Only the order matters: cheap rows are sent first.

    >>> symbolic_cost(("x^2+7x+10",), "(x+2)(x+5)") < symbolic_cost(("5",), "(x+1)^{3000}")
    True
    """
    cost = 0.0
    for text in (*golds, pred or ""):
        s = _SPACES_RE.sub("", text)
        cost += len(s) + 20 * (s.count("^") + s.count("!") + s.count("{"))
        cost += _largest_exponent(s)
    return cost


def too_large_reason(digits: float) -> str:
    """Why an answer holding a number of ``digits`` digits is not checked (a timeout reason)."""
    size = "infinitely many" if digits == math.inf else f"~{digits:.3g}"
    return (
        f"answer holds a number with {size} digits (a power or factorial above "
        f"{MAX_POWER_DIGITS} digits); not checked"
    )
