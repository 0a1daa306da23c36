"""``math_answer``: Math-Verify's own cases, numeric fast path, real GSM8K / MATH rows, timeouts.

One verifier (and so one worker pool) is shared by the module; tests that need other settings
build their own, and only the ones that must start a separate pool do so.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeladder import ConfigError, Sample, VerifierError
from safeladder.answers import last_boxed_run
from safeladder.verifiers import build_verifier
from safeladder.verifiers import math_answer as ma
from safeladder.verifiers.math_answer import MathAnswerVerifier, extract_answer, parse_number
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    read_shared,
    sample_strategy,
)
from tests.verifiers.math_verify_cases import CASES


@pytest.fixture(scope="module")
def verifier() -> Iterator[MathAnswerVerifier]:
    v = build_verifier({"type": "math_answer"})
    assert isinstance(v, MathAnswerVerifier)
    yield v
    v.close()


def rows(pairs: list[tuple[Any, str]]) -> list[Sample]:
    return [Sample(completion=c, reference=r) for r, c in pairs]


# --------------------------------------------------------------------------- Math-Verify's cases

_RUN = [c for c in CASES if c.skip is None]


@pytest.fixture(scope="module")
def mv_results(verifier: MathAnswerVerifier) -> dict[int, tuple[float, str]]:
    # One batch per set of options (each case runs with the options its upstream test passes);
    # verifiers with the same number of workers share one pool.
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for i, c in enumerate(CASES):
        if c.skip is None:
            groups.setdefault(tuple(sorted(c.options.items())), []).append(i)
    out: dict[int, tuple[float, str]] = {}
    for options, idx in groups.items():
        v = verifier if not options else build_verifier({"type": "math_answer", **dict(options)})
        sb = v.score([Sample(completion=CASES[i].pred, reference=CASES[i].gold) for i in idx])
        out.update(
            {i: (float(s), str(st)) for i, s, st in zip(idx, sb.scores, sb.status, strict=True)}
        )
        if v is not verifier:
            v.close()
    return out


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(i, id=f"{i}", marks=[pytest.mark.skip(reason=c.skip)] if c.skip else [])
        for i, c in enumerate(CASES)
    ],
)
def test_agrees_with_math_verify_test_suite(index: int, mv_results: dict) -> None:
    case = CASES[index]
    score, status = mv_results[index]
    assert status == "ok", (case.source, status)
    assert score == case.expected, (case.source, case.options, case.gold, case.pred[-120:])


def test_most_math_verify_cases_run() -> None:
    # Issue 10: agree with >= 97 % of Math-Verify's public cases, skipping only with a reason.
    assert len(_RUN) >= 0.95 * len(CASES) and len(_RUN) >= 240
    assert all(c.skip for c in CASES if c not in _RUN)


# --------------------------------------------------------------------------- numeric fast path

NUMERIC = [
    # (reference, completion, expected) -- hand-computed; none of these may reach sympy.
    ("72", "48/2 = 24 clips in May.\n#### 72", 1.0),  # GSM8K train row 0 format
    ("72", "#### 73", 0.0),
    ("1234", "so she has \\boxed{1,234} apples", 1.0),  # thousands separator
    ("1234", "\\boxed{1{,}234}", 1.0),  # LaTeX thousands separator
    ("40320", "\\boxed{40,\\!320}", 1.0),  # MATH answer style, e.g. "40,\\!320"
    ("-3", "\\boxed{-3}", 1.0),
    ("3", "\\boxed{-3}", 0.0),
    ("0.5", "\\boxed{\\frac{1}{2}}", 1.0),
    ("\\frac{1}{2}", "\\boxed{0.5}", 1.0),
    ("\\dfrac{3}{4}", "The answer is 3/4.", 1.0),
    ("-\\frac{5}{3}.", "\\boxed{-\\frac53}", 1.0),  # MATH answer with a trailing period
    ("1/3", "\\boxed{0.333333}", 1.0),  # non-terminating fraction: rel_tol 1e-6
    ("1/3", "\\boxed{0.3333}", 0.0),  # 1e-4 off: too far (Math-Verify also says no at 6 digits)
    ("16386.17", "\\boxed{16386.169}", 0.0),  # two exact decimals compare exactly
    ("1000000", "\\boxed{1000001}", 0.0),  # integers compare exactly
    ("2.50", "\\boxed{2.5}", 1.0),
    ("50", "\\boxed{50\\%}", 1.0),  # a percent sign is a unit...
    ("0.5", "\\boxed{50\\%}", 1.0),  # ...that may also mean /100
    ("50\\%", "\\boxed{0.5}", 1.0),
    ("50\\%", "\\boxed{0.5\\%}", 0.0),  # both in percent: 50 vs 0.5
    ("$0.28$", "28", 0.0),  # Math-Verify test_percent_notation: no % sign, no /100
    ("72", "The answer is 72 dollars.", 1.0),
    ("5", "\\boxed{5\\text{ cm}}", 1.0),
    ("16", "\\boxed{16\\text{ daps}}", 1.0),  # MATH answer "16\\text{ daps}"
    ("180", "\\boxed{\\$180}", 1.0),  # MATH answer "\\$180"
    ("54.6", "\\boxed{\\$ 54.60}", 1.0),  # MATH answer " \\$ 54.60"
    ("18", "She makes $18 every day.", 1.0),  # last number, currency sign
    ("90", "\\boxed{90^\\circ}", 1.0),
    ("5", "\\boxed{x = 5}", 1.0),
    ("7", "so the answer is $\\boxed 7$.", 1.0),  # MATH's "\\boxed 7" form
    ("12", "<answer>12</answer>", 1.0),
    ("12", "<think>maybe 12</think> <answer>13</answer>", 0.0),
    (72, "#### 72", 1.0),  # numeric reference
    (0.25, "\\boxed{\\frac{1}{4}}", 1.0),
    (["71", "72"], "#### 72", 1.0),  # a list of acceptable answers
    (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72",
        "\\boxed{72}",
        1.0,
    ),  # GSM8K solution
    ("We get $a+b=\\boxed{36}$.", "The answer is 36", 1.0),  # MATH solution as reference
    ("72", "I could not solve it.", 0.0),  # no answer at all: wrong, not NaN
    ("72", "\\boxed{}", 0.0),  # empty box: an empty answer
]


def test_numeric_fast_path_never_reaches_the_pool() -> None:
    v = build_verifier({"type": "math_answer"})
    assert isinstance(v, MathAnswerVerifier)
    sb = v.score(rows([(r, c) for r, c, _ in NUMERIC]))
    for (r, c, want), got, status in zip(NUMERIC, sb.scores, sb.status, strict=True):
        assert status == "ok" and got == want, (r, c, got, status)
    assert v.pool is None and v.stats["symbolic"] == 0
    v.close()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("\\boxed{1} then \\boxed{\\frac{2}{3}}", ("\\frac{2}{3}", "boxed")),
        ("\\boxed{\\{1, 2\\}}", ("\\{1, 2\\}", "boxed")),  # escaped braces do not close the box
        ("\\boxed{72", None),  # unclosed (truncated) box; "{72" is a brace group, not a number
        ("\\fbox{5}", ("5", "boxed")),
        ("#### Step 3\nresult 4", ("4", "last_number")),  # a markdown heading is not "#### n"
        (
            "Final Answer: The final answer is $28 \\%$. I hope it is correct.",
            ("28 \\%", "answer_phrase"),
        ),
        ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope", ("120", "answer_phrase")),
        ("the answer is: \n 9", ("9", "answer_phrase")),
        ("so $x = 5$ and the total is 72.", ("72", "last_number")),
        ("Thus $\\frac{10}{9}$.", ("\\frac{10}{9}", "last_number")),
        ("\\frac{10}{9}", ("\\frac{10}{9}", "last_number")),
        ("$E$", ("E", "last_number")),  # a bare formula is the answer
        ("AZYUK2A", None),  # a digit glued to letters is not a number (Math-Verify test_all)
        ("no digits", None),
    ],
)
def test_extraction(text: str, expected: tuple[str, str] | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text,value,percent",
    [
        ("7,425,000", Fraction(7425000), False),
        ("-\\tfrac{3}{4}", Fraction(-3, 4), False),
        ("\\frac13", Fraction(1, 3), False),
        ("15\\mbox{ cm}^2", Fraction(15), False),
        ("1,000.99€", Fraction("1000.99"), False),
        ("28 percent", Fraction(28), True),
        (".4", Fraction(2, 5), False),
    ],
)
def test_parse_number(text: str, value: Fraction, percent: bool) -> None:
    got = parse_number(text)
    assert got is not None and got.value == value and got.percent == percent


@pytest.mark.parametrize(
    "text", ["5xy", "2 pi", "5 and 8", "0,111", "1,22", "x^2", "\\sqrt{2}", "1/0", "5 x"]
)
def test_parse_number_rejects_non_numbers(text: str) -> None:
    # Algebra must never be read as a number with a unit; ambiguous commas go to math-verify.
    assert parse_number(text) is None


# --------------------------------------------------------------------------- hack resistance


@pytest.mark.parametrize(
    "reference,completion,why",
    [
        ("72", "\\boxed{1} \\boxed{2} \\boxed{72} \\boxed{73}", "only the last box counts"),
        ("72", "\\boxed{72} hmm, no: \\boxed{73}", "a later box overrides an earlier one"),
        ("72", "1 2 3 4 ... 70 71 72 73 74", "a list of numbers: the last one"),
        ("72", "\\boxed{1, 2, 72}", "a box of candidates is a set, not 72"),
        ("72", "\\boxed{72 \\text{ or } 73}", "hedging is not an answer"),
        ("72", "The answer is not 72. It is 73", "a negated phrase is not read as its number"),
        ("72", "<answer>1 2 72</answer>", "a tag of candidates"),
        ("72", "\\boxed{1}, \\boxed{2}, \\boxed{72}", "a run of boxes against one value is a list"),
        ("72", "\\boxed{71} and \\boxed{72}", "a run of boxes against one value is a list"),
        ("x^2", "\\boxed{x^2}, \\boxed{y}", "one expression: a run of boxes is a list"),
        ("72", "First \\boxed{72}. Checking again: \\boxed{73}", "boxes apart: the last counts"),
        ("72", "\\boxed{72}, hmm, no: \\boxed{73}", "prose between boxes: the last counts"),
        ("1, 2", "\\boxed{1} so the rest is \\boxed{1}, \\boxed{3}", "only the final run"),
    ],
)
def test_listing_many_answers_is_not_rewarded(
    verifier: MathAnswerVerifier, reference: str, completion: str, why: str
) -> None:
    sb = verifier.score([Sample(completion=completion, reference=reference)])
    assert sb.status[0] == "ok" and sb.scores[0] == 0.0, why


# --------------------------------------------------------------------------- multi-box answers

MULTI_BOX = [
    # (reference, completion, expected) -- the final run of boxes joined by commas / "and"
    ("{1,2,3}", "\\boxed{1}, \\boxed{2}, \\boxed{3}", 1.0),
    ("1, 2, 3", "\\boxed{1} and \\boxed{2} and \\boxed{3}", 1.0),
    ("1, 2, 3", "\\boxed{1}, \\boxed{2}, \\boxed{4}", 0.0),
    ("(2, 2), (6, 2)", "$\\boxed{(2, 2)}$ \\quad \\text{and} \\quad $\\boxed{(6, 2)}$", 1.0),
    # a reasoning trace that boxes the answer twice, then once more as two boxes after </think>
    (
        "n = \\boxed{1,-2}",
        "**Final Answer** The integers are \\boxed{-2} and \\boxed{1}. </think> Thus the integers "
        "are: \\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]",
        1.0,
    ),
    # a reference written as several boxes
    ("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", "\\boxed{-2,1}", 1.0),
    ("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", "\\boxed{-2,3}", 0.0),
]


def test_multi_box_answers(verifier: MathAnswerVerifier) -> None:
    sb = verifier.score(rows([(r, c) for r, c, _ in MULTI_BOX]))
    assert list(sb.status) == ["ok"] * len(MULTI_BOX)
    assert list(sb.scores) == [e for _, _, e in MULTI_BOX]


def test_multi_box_against_single_value_never_reaches_math_verify() -> None:
    v = build_verifier({"type": "math_answer"})
    assert isinstance(v, MathAnswerVerifier)
    sb = v.score([Sample(completion="\\boxed{3}, \\boxed{x+1}", reference="x+1")])
    assert sb.scores[0] == 0.0 and v.pool is None
    assert sb.details[0]["answer_parts"] == 2
    assert "several boxed answers" in sb.details[0]["reason"]


def test_combine_boxes_off_judges_the_last_box(verifier: MathAnswerVerifier) -> None:
    v = build_verifier({"type": "math_answer", "combine_boxes": False})
    pairs = [("1, 2, 3", "\\boxed{1}, \\boxed{2}, \\boxed{3}"), ("72", "\\boxed{1}, \\boxed{72}")]
    assert list(v.score(rows(pairs)).scores) == [0.0, 1.0]
    v.close()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("\\boxed{1},\\boxed{2},\\boxed{3}", ["1", "2", "3"]),
        ("\\boxed{1} and \\boxed{2}", ["1", "2"]),
        ("$\\boxed{1}\\boxed{2}$", ["1", "2"]),  # touching boxes
        ("$$\\boxed{20}$$ \\boxed{143}", ["143"]),  # spacing only: a correction, not a list
        ("\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}", ["(1, 1)"]),
        ("\\boxed{1}. Then \\boxed{2}", ["2"]),
        ("no box", None),
    ],
)
def test_last_boxed_run(text: str, expected: list[str] | None) -> None:
    assert last_boxed_run(text) == expected


# --------------------------------------------------------------------------- comparison options


@pytest.mark.parametrize(
    "options,reference,completion,default,with_options",
    [
        # Math-Verify test_all.py test_precision: 1/3 equals 0.3333 at 4 places, not at 6
        ({"float_rounding": 4}, "\\frac{1}{3}", "\\boxed{0.3333}", 0.0, 1.0),
        ({"float_rounding": 2}, "(\\frac{3}{5},\\frac{8}{3}]", "\\boxed{(0.6,2.6667]}", 0.0, 1.0),
        # test_strict.py: variable names matter only in strict mode
        ({"strict": False}, "f(x)", "\\boxed{f(y)}", 0.0, 1.0),
        # test_set_rel_assymetry: a set in the reference may equal a relation only when allowed
        ({"allow_set_relation": True}, "x \\in [-2,7]", "$-2 \\le x \\le 7$", 0.0, 1.0),
        # test_latex_notation: LaTeX only, and inline math may not span lines
        ({"extraction": "latex"}, "9", "Answer $ \n 9 \n $", 1.0, 0.0),
        ({"extraction": "latex"}, "9", "Answer $$ \n 9 \n $$", 1.0, 1.0),
    ],
)
def test_comparison_options(
    verifier: MathAnswerVerifier,
    options: dict[str, Any],
    reference: str,
    completion: str,
    default: float,
    with_options: float,
) -> None:
    row = [Sample(completion=completion, reference=reference)]
    assert verifier.score(row).scores[0] == default
    v = build_verifier({"type": "math_answer", **options})
    assert v.score(row).scores[0] == with_options
    v.close()


def test_expression_only_extraction_does_not_read_latex() -> None:
    v = build_verifier({"type": "math_answer", "extraction": "expr"})
    sb = v.score(
        [
            Sample(completion="\\boxed{\\sqrt{1/4}}", reference="\\frac{1}{2}"),
            Sample(completion="so 1000.99 in all", reference="1000.99"),
        ]
    )
    assert sb.status[0] == "abstain" and "could not be parsed" in sb.details[0]["reason"]
    assert sb.status[1] == "ok" and sb.scores[1] == 1.0
    v.close()


def test_symbolic_equivalence(verifier: MathAnswerVerifier) -> None:
    pairs = [
        ("x^2+7x+10", "\\boxed{(x+2)(x+5)}", 1.0),
        ("x^2+7x+10", "\\boxed{(x+2)(x+6)}", 0.0),
        ("\\frac{\\sqrt{3}}{2}", "\\boxed{0.866025}", 1.0),
        ("\\text{(C)}", "\\boxed{C}", 1.0),
        ("$x^2$", "\\boxed{x \\cdot x}", 1.0),
    ]
    sb = verifier.score(rows([(r, c) for r, c, _ in pairs]))
    assert list(sb.scores) == [e for _, _, e in pairs]
    assert all(d["method"] == "symbolic" for d in sb.details)


# --------------------------------------------------------------------------- real data rows


def test_gsm8k_gold_solutions_score_one_and_perturbed_zero() -> None:
    v = build_verifier({"type": "math_answer", "symbolic": False})
    data = read_shared("gsm8k_train.jsonl.gz", limit=300)
    gold = v.score([Sample(completion=r["solution"], reference=r["answer"]) for r in data])
    assert list(gold.scores) == [1.0] * len(data)
    # The reference may also be the full solution with its "#### n" line.
    full = v.score(
        [Sample(completion=f"\\boxed{{{r['answer']}}}", reference=r["solution"]) for r in data]
    )
    assert list(full.scores) == [1.0] * len(data)
    wrong = [
        Sample(
            completion=re.sub(r"#### .*$", f"#### {int(r['answer']) + 1}", r["solution"]),
            reference=r["answer"],
        )
        for r in data
    ]
    assert list(v.score(wrong).scores) == [0.0] * len(data)


def test_math_gold_solutions_score_one_and_wrong_answers_zero(verifier: MathAnswerVerifier) -> None:
    data = [r for r in read_shared("math_train.jsonl.gz", limit=80) if r["answer"]]
    gold = verifier.score([Sample(completion=r["solution"], reference=r["answer"]) for r in data])
    assert list(gold.status) == ["ok"] * len(data) and list(gold.scores) == [1.0] * len(data)
    numeric = [r for r in data if parse_number(r["answer"]) is not None]
    symbolic = [r for r in data if parse_number(r["answer"]) is None]
    assert len(numeric) >= 30 and len(symbolic) >= 8
    # Numeric answers: box the answer plus one. Others: box another problem's (different) answer.
    wrong = [
        Sample(
            completion=f"... so \\boxed{{{parse_number(r['answer']).value + 1}}}",  # type: ignore[union-attr]
            reference=r["answer"],
        )
        for r in numeric
    ]
    others = [r["answer"] for r in symbolic]
    wrong += [
        Sample(
            completion=f"\\boxed{{{next(o for o in others if o != r['answer'])}}}",
            reference=r["answer"],
        )
        for r in symbolic
    ]
    sb = verifier.score(wrong)
    assert list(sb.status) == ["ok"] * len(wrong) and list(sb.scores) == [0.0] * len(wrong)
    # The MATH rows with an empty \boxed{} (number_theory 7115 / 7117) cannot be scored.
    empty = verifier.score(
        [Sample(completion="\\boxed{5}", reference="The answer is $\\boxed{}$.")]
    )
    assert empty.status[0] == "abstain" and math.isnan(empty.scores[0])


# --------------------------------------------------------------------------- abstain / timeout / errors


@pytest.mark.parametrize(
    "reference,reason",
    [
        (None, "missing reference"),
        ("", "has no answer"),
        ([], "empty reference list"),
        ({"answer": 5}, "got dict"),
        (True, "got bool"),
        (float("nan"), "not a finite number"),
        ("\\boxed{}", "has no answer"),
    ],
)
def test_unusable_reference_abstains(
    verifier: MathAnswerVerifier, reference: Any, reason: str
) -> None:
    sb = verifier.score([Sample(completion="\\boxed{5}", reference=reference)])
    assert sb.status[0] == "abstain" and math.isnan(sb.scores[0])
    assert reason in sb.details[0]["reason"]


def test_unparseable_reference_abstains_even_without_an_answer(
    verifier: MathAnswerVerifier,
) -> None:
    # "\\frac{1}{" parses to nothing but its own text: the row cannot be judged, never 0.0.
    sb = verifier.score(rows([("\\frac{1}{", "\\boxed{5}"), ("\\frac{1}{", "no answer here")]))
    assert list(sb.status) == ["abstain", "abstain"] and all(math.isnan(s) for s in sb.scores)
    assert sb.details[0]["reason"] == "reference could not be parsed"


def test_pathological_answer_times_out_then_recovers_and_closes_cleanly() -> None:
    # sympy expands (x+1)^3000 term by term: minutes (measured: >15 s), the limit is 1 s. (A
    # numeric tower such as 9^(9^9) never reaches a worker: see test_math_answer_budget.py.)
    # workers=1 gives this verifier a pool of its own, so the kill and the restart are observable.
    v = build_verifier({"type": "math_answer", "timeout_s": 1.0, "workers": 1})
    assert isinstance(v, MathAnswerVerifier)
    hostile = Sample(completion="\\boxed{(x+1)^{3000}}", reference="5")
    sb = v.score([hostile, Sample(completion="\\boxed{72}", reference="72")])
    assert sb.status[0] == "timeout" and math.isnan(sb.scores[0])
    assert "timeout_s=1 s" in sb.details[0]["reason"]
    assert sb.status[1] == "ok" and sb.scores[1] == 1.0
    assert v.stats["timeout"] == 1
    pool = v.pool
    assert pool is not None and pool.timeouts == 1
    # The killed worker is replaced; symbolic rows are scored again.
    after = v.score(rows([("x^2+7x+10", "\\boxed{(x+2)(x+5)}"), ("\\sqrt{2}", "\\boxed{2^{1/2}}")]))
    assert list(after.status) == ["ok", "ok"] and list(after.scores) == [1.0, 1.0]
    assert pool.processes_started == 3  # the worker, its warm spare, the spare's replacement
    # A repeated pathological row is answered from the cache, without another 1 s stall.
    assert v.score([hostile]).status[0] == "timeout" and v.stats["symbolic_cached"] >= 1
    # close() releases the pool; no worker process is left behind (killed ones were reaped too).
    pids = pool.worker_pids()
    v.close()
    assert pool.closed and v.pool is None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    v.close()  # idempotent


def test_worker_failure_follows_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Swap the worker function for a builtin that raises TypeError on the task tuple.
    monkeypatch.setattr(ma, "symbolic_check", math.sqrt)
    row = Sample(completion="\\boxed{1+x}", reference="x+1")  # not the same text, not a number
    strict = build_verifier({"type": "math_answer", "cache_size": 0})
    with pytest.raises(
        VerifierError, match="row 0: RuntimeError: symbolic check failed: TypeError"
    ):
        strict.score([row])
    tolerant = build_verifier({"type": "math_answer", "on_error": "abstain", "cache_size": 0})
    sb = tolerant.score([row, Sample(completion="#### 3", reference="3")])
    assert list(sb.status) == ["error", "ok"] and "TypeError" in sb.details[0]["reason"]
    strict.close()
    tolerant.close()


# --------------------------------------------------------------------------- think / symbolic off


def test_after_think() -> None:
    v = build_verifier({"type": "math_answer", "after_think": True, "symbolic": False})
    sb = v.score(
        rows(
            [
                ("72", "<think>it is 72</think> The answer is 73"),  # reasoning is not the answer
                ("72", "<think>it is 72</think> The answer is 72"),
                ("72", "<think>it is 72, I am still thinking"),  # unfinished: no final answer
                ("72", "no think tags: \\boxed{72}"),
            ]
        )
    )
    assert list(sb.scores) == [0.0, 1.0, 0.0, 1.0]
    assert "unfinished" in sb.details[2]["reason"]


def test_symbolic_off() -> None:
    v = build_verifier({"type": "math_answer", "symbolic": False})
    assert isinstance(v, MathAnswerVerifier)
    sb = v.score(
        rows(
            [
                ("5", "\\boxed{\\sqrt{25}}"),
                ("\\sqrt{2}", "\\boxed{1.414}"),
                ("\\sqrt{2}", "\\boxed{\\sqrt{2}}"),
            ]
        )
    )
    assert sb.scores[0] == 0.0 and sb.status[1] == "abstain" and sb.scores[2] == 1.0  # exact text
    assert v.pool is None


# --------------------------------------------------------------------------- threads


def test_works_from_other_threads(verifier: MathAnswerVerifier) -> None:
    batch = rows(
        [("x^2+7x+10", "\\boxed{(x+5)(x+2)}"), ("72", "#### 72"), ("3", "\\boxed{\\sqrt{10}}")]
    )
    expected = [1.0, 1.0, 0.0]
    results: dict[int, Any] = {}

    def work(k: int) -> None:
        try:
            results[k] = list(verifier.score(batch).scores)
        except BaseException as exc:  # surfaced below
            results[k] = exc

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: expected for k in range(3)}


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "config,match",
    [
        ({"timeout": 5}, "timeout"),  # typo of timeout_s
        ({"extractors": []}, "extractors"),
        ({"extractors": ["last_number", "boxed"]}, "must come last"),
        ({"extractors": ["boxed", "boxed"]}, "more than once"),
        ({"extractors": ["boxes"]}, "extractors"),
        ({"workers": 0}, "workers"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"mp_context": "fork"}, "mp_context"),  # removed: workers are fresh interpreters
        ({"rel_tol": -1}, "rel_tol"),
    ],
)
def test_config_validation(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_verifier({"type": "math_answer", **config})


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sample_strategy, min_size=1, max_size=4))
def test_fast_path_properties(samples: list[Sample]) -> None:
    v = build_verifier({"type": "math_answer", "symbolic": False})
    sb = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, sb)
    assert set(sb.status) <= {"ok", "abstain"}


@pytest.fixture(scope="module")
def uncached() -> Iterator[MathAnswerVerifier]:
    v = build_verifier({"type": "math_answer", "cache_size": 0})
    assert isinstance(v, MathAnswerVerifier)
    yield v
    v.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(sample_strategy, min_size=1, max_size=3))
def test_symbolic_path_properties(uncached: MathAnswerVerifier, samples: list[Sample]) -> None:
    sb = assert_batch_equals_rows(uncached, samples)
    assert_in_range_or_nan(uncached, sb)


@settings(max_examples=150, deadline=None)
@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_integers_score_by_equality(a: int, b: int) -> None:
    v = build_verifier({"type": "math_answer", "symbolic": False})
    sb = v.score([Sample(completion=f"So the total is \\boxed{{{b:,}}}.", reference=str(a))])
    assert sb.scores[0] == float(a == b)


@settings(max_examples=150, deadline=None)
@given(st.fractions(min_value=-1000, max_value=1000, max_denominator=50))
def test_fraction_equals_its_decimal(x: Fraction) -> None:
    v = build_verifier({"type": "math_answer", "symbolic": False})
    sign = "-" if x < 0 else ""
    frac = f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"
    decimal = f"{float(x):.9f}"  # exact when it terminates, else within rel_tol
    sb = v.score([Sample(completion=f"\\boxed{{{decimal}}}", reference=frac)])
    assert sb.scores[0] == 1.0, (frac, decimal)
