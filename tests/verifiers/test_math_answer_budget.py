"""``math_answer`` under hostile answers: power towers, the per-call symbolic budget, the warm
spare worker and the worker memory cap (issue 10, item 4). Pool mechanics are tested in
``tests/test_timeout_pool.py``; here, what a scored row looks like."""

from __future__ import annotations

import math
from typing import Any

import pytest

from safeladder import Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers import math_answer as ma
from safeladder.verifiers.math_answer import MathAnswerVerifier, parse_number
from safeladder.verifiers.math_cost import MAX_POWER_DIGITS, power_digits, symbolic_cost

HONEST = [
    # (reference, completion): symbolic rows, each settled by math-verify in milliseconds
    ("x^2+7x+10", "\\boxed{(x+2)(x+5)}"),
    ("\\sqrt{2}", "\\boxed{2^{1/2}}"),
]
# sympy expands these term by term: minutes each, and no size estimate from the text rejects them.
SLOW = [("5", "\\boxed{(x+1)^{3000}}"), ("5", "\\boxed{(x+2)^{2999}}")]


def rows(pairs: list[tuple[Any, str]]) -> list[Sample]:
    return [Sample(completion=c, reference=r) for r, c in pairs]


@pytest.mark.parametrize(
    "text,digits",
    [
        # log10(9^(9^9)) = 9^9 * log10(9) = 387420489 * 0.9542...
        ("9^{9^{9}}", 387420489 * math.log10(9)),
        ("9^{9^{9^{9^{5}}}}", math.inf),
        ("2 \\cdot 10^{10^{6}} + 1", 1e6),
        ("\\left(9\\right)^{9^{9}}", 387420489 * math.log10(9)),
        ("10^{-10^{9}}", 1e9),  # a reciprocal is as long as the number
        ("(10^{5})!", math.lgamma(100001) / math.log(10)),  # 456573.45 digits
        ("((9!)!)!", math.inf),
        ("0^{9^{9}}", 9 * math.log10(9)),  # 0^e is 0; only the exponent 9^9 is a real number
        ("2^{2^{x}}", 0.0),  # symbols: nothing to evaluate
        ("(x+1)^{3000}", 0.0),
        ("6.02 \\times 10^{23}", 23.0),
    ],
)
def test_power_digits(text: str, digits: float) -> None:
    assert power_digits(text) == pytest.approx(digits, rel=1e-9)


def test_power_digits_is_linear_in_the_text_even_when_nested() -> None:
    # 250 levels of nesting are read 50 deep at most; this must return at all, and say "huge".
    assert power_digits("9^{" * 250 + "9" + "}" * 250) == math.inf
    assert power_digits("{" * 480 + "9^9" + "}" * 480) == pytest.approx(9 * math.log10(9))


def test_cheap_rows_are_ordered_before_polynomial_powers() -> None:
    honest = [symbolic_cost((r,), c) for r, c in HONEST]
    slow = [symbolic_cost((r,), c) for r, c in SLOW]
    assert max(honest) < min(slow)


def test_power_towers_never_reach_a_worker_nor_the_numeric_fast_path() -> None:
    v = build_verifier({"type": "math_answer", "workers": 3})  # a pool of its own, if any
    assert isinstance(v, MathAnswerVerifier)
    towers = [
        ("72", "\\boxed{9^{9^{9^{9^{5}}}}}"),
        ("x+1", "So the answer is $10^{10^{10}}$."),
        ("72", "\\boxed{(10^{6})!}"),
        ("9^{9^{9}}", "\\boxed{5}"),  # a hostile reference is no better
    ]
    assert parse_number("9^{9^{9^{9^{5}}}}") is None  # the fast path reads no exponents
    sb = v.score([*rows(towers), Sample(completion="#### 72", reference="72")])
    assert list(sb.status) == ["timeout"] * 4 + ["ok"]
    assert all(math.isnan(s) for s in sb.scores[:4]) and sb.scores[4] == 1.0
    assert "infinitely many digits" in sb.details[0]["reason"]
    assert f"above {MAX_POWER_DIGITS} digits" in sb.details[0]["reason"]
    assert "~1e+10 digits" in sb.details[1]["reason"]
    assert "~5.57e+06 digits" in sb.details[2]["reason"]  # log10(10^6!) = 5565708.9
    assert v.pool is None  # no worker was started for any of them
    assert v.stats["too_large"] == 4 and v.stats["symbolic"] == 0
    v.close()


@pytest.mark.slow
def test_budget_cuts_slow_rows_and_keeps_honest_ones() -> None:
    # A 3 s budget and per-row limits far above it: only the budget can end the slow rows.
    v = build_verifier(
        {
            "type": "math_answer",
            "workers": 1,
            "timeout_s": 600,
            "budget_s": 3.0,
            "budget_per_row_s": 0.0,
        }
    )
    assert isinstance(v, MathAnswerVerifier)
    # Slow rows first in the batch: the verifier still checks the cheap ones first.
    sb = v.score(rows([*SLOW, *HONEST]))
    assert list(sb.status) == ["timeout", "timeout", "ok", "ok"]
    assert list(sb.scores[2:]) == [1.0, 1.0] and all(math.isnan(s) for s in sb.scores[:2])
    for d in sb.details[:2]:
        assert "symbolic budget of 3 s (budget_s=3 + budget_per_row_s=0 x 4 rows)" in d["reason"]
        assert d["method"] == "symbolic"
    assert v.stats["budget_expired"] == 2 and v.stats["timeout"] == 0
    pool = v.pool
    assert pool is not None and pool.expired == 2
    # A budget cut says nothing about the row: it is not cached, the honest rows are.
    again = v.score(rows([HONEST[0], SLOW[0]]))
    assert list(again.status) == ["ok", "timeout"]
    assert v.stats["symbolic_cached"] == 1 and v.stats["budget_expired"] == 3
    v.close()


def test_pool_gets_the_spare_and_the_memory_cap() -> None:
    v = build_verifier(
        {"type": "math_answer", "workers": 1, "spare_workers": 2, "worker_memory_mb": 1024}
    )
    assert isinstance(v, MathAnswerVerifier)
    assert v.score(rows(HONEST[:1])).scores[0] == 1.0
    pool = v.pool
    assert pool is not None and pool.spares == 2 and pool.memory_limit_mb == 1024
    assert pool.processes_started == 3
    v.close()


def allocate_8_gib(task: object) -> object:
    """Stands in for a symbolic check that needs more memory than a worker may have."""
    return bytearray(8 * 2**30)


def test_running_out_of_memory_is_a_row_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers import this module from the caller's sys.path to run allocate_8_gib.
    monkeypatch.setattr(ma, "symbolic_check", allocate_8_gib)
    v = build_verifier({"type": "math_answer", "workers": 1, "worker_memory_mb": 1024})
    sb = v.score(rows([HONEST[0], ("72", "#### 72")]))  # on_error: raise (the default)
    assert list(sb.status) == ["timeout", "ok"] and math.isnan(sb.scores[0])
    assert sb.details[0]["reason"] == "symbolic check ran out of memory (worker_memory_mb=1024)"
    assert isinstance(v, MathAnswerVerifier) and v.stats["memory"] == 1
    v.close()


@pytest.mark.parametrize(
    "field,value",
    [("budget_s", 0), ("budget_per_row_s", -1), ("spare_workers", -1), ("worker_memory_mb", 64)],
)
def test_bad_budget_settings_are_rejected(field: str, value: object) -> None:
    from safeladder import ConfigError

    with pytest.raises(ConfigError, match=field):
        build_verifier({"type": "math_answer", field: value})
