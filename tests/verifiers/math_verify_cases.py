"""Golden cases from Math-Verify's public test-suite, as data: ``(gold, prediction, expected)``.

Each case is copied verbatim from a parametrize table of huggingface/Math-Verify (the file is named
per case; the test function is named in the group comments below). Math-Verify's tests call
``verify(parse(gold), parse(pred))`` with per-test options (match_types, precision, strict,
allow_set_relation_comp); each case here carries them as ``options`` (math_answer config fields:
``extraction``, ``float_rounding``, ``strict``, ``allow_set_relation``) and runs with them.
``math_answer`` uses its own extraction (last box run / tag / marker / number, see the module
docstring), so where that choice intentionally differs the case carries ``skip`` with the reason.
Left out (not transcribed, too long to keep readable): the multi-kilobyte predictions of
test_all.py (the stock-loss 28 %, 14916 x2, 12-and-13, polar (3, pi/2), 3/56, the long 90 degree,
pi r/(h+r), 189, (7,6), [-3,2], 16386.20, 5 sqrt42/27, 20 percent, [-2,7] precedence, 100 %,
(-6,10), 1112112_3 and the <think> 1,-2 cases; an abridged copy of the last is in
test_math_answer.py's multi-box tests), and test_open_thoughts.py's long 143 <think> case.
test_string_extraction.py tests parse() alone (no gold), so it has no rows here. Three slow
cases (sums of Fibonacci-like terms, an ellipse equation: ~1 s of sympy each) were left out to
keep the test file fast.

Sources (files read through the code-search index):
- ``ALL``: huggingface/Math-Verify@cf14bc47e798017458fa7f60138da640065351ce tests/test_all.py
  (test_number_extraction, test_simple_fraction_notation, test_sets_handling,
  test_latex_notation, test_percent_notation, test_latex_notation_math, test_relations_math,
  test_matrix_extraction, test_complex_math_expressions, test_math_extraction_edge_cases,
  test_math_extraction_additional_cases, test_float_precision, test_sqrt_precision,
  test_symbols, test_trailing_punctuation; some long predictions there were kept whole,
  a few very long ones were left out);
- ``YUJIANLL``: huggingface/Math-Verify@056ad6253a41b01e49072623b7e2c88ded7d82af
  tests/test_yujianll.py;
- ``MIXED``: huggingface/Math-Verify@05aa3a67e1e5aa4a0dbecea17550a17cc2d5ed2d
  tests/test_mixed_number_extraction.py (function-style tests rewritten as rows);
- ``NUMINA``: huggingface/Math-Verify tests/test_numina_cases.py, read from the fork
  wantbook-book/Math-Verify@4551b084a1d017b9725e3810abe3a99a106652a4;
- ``OPEN_THOUGHTS``: huggingface/Math-Verify tests/test_open_thoughts.py, read from the fork
  wantbook-book/Math-Verify@3e4fce29748b66158427e70e6c706c86db0910d8.
"""

from __future__ import annotations

from typing import Any, NamedTuple

_REPO = "huggingface/Math-Verify"
ALL = f"{_REPO}@cf14bc4 tests/test_all.py"
YUJIANLL = f"{_REPO}@056ad62 tests/test_yujianll.py"
MIXED = f"{_REPO}@05aa3a6 tests/test_mixed_number_extraction.py"
NUMINA = f"{_REPO} tests/test_numina_cases.py (fork wantbook-book/Math-Verify@4551b08)"
OPEN_THOUGHTS = f"{_REPO} tests/test_open_thoughts.py (fork wantbook-book/Math-Verify@3e4fce2)"
STRICT = f"{_REPO} tests/test_strict.py (fork wantbook-book/Math-Verify@4551b08)"

# Why a case is skipped: every reason is a deliberate difference, or a math-verify version gap.
SPACE_THOUSANDS = (
    "a space is not a thousands separator when we look for the last number: '1 000' ends in '000'"
)
DECIMAL_COMMA = "decimal comma: we read ',' only as a thousands separator, so '1,22' is not 1.22"
BOXES_APART = (
    "hack resistance: boxes with prose between them ('for part (a) and') are not one answer; "
    "we judge the last box, Math-Verify joins all boxes"
)
NO_EXPECTED = "the upstream row has no expected value (a 2-tuple in the table), so it cannot run"
UNCLOSED_BOX = "the reference's \\boxed{ is never closed; we do not guess where the answer ends"
MATH_VERIFY_0_9 = "the installed math-verify 0.9 itself gives the other result (the case was added upstream later)"
ANY_CANDIDATE = (
    "Math-Verify accepts any of several parsed candidates; we judge the single last number (5/6)"
)


# The options a Math-Verify test passes (compare_strings' match_types / precision / strict /
# allow_set_relation_comp), as math_answer config fields.
LATEX = {"extraction": "latex"}  # match_types=["latex"]
EXPR = {"extraction": "expr"}  # match_types=["expr"]
ROUND_5 = {"float_rounding": 5}  # precision=5


class MVCase(NamedTuple):
    gold: str
    pred: str
    expected: int
    source: str
    skip: str | None = None
    # math_answer config fields this case runs with (never mutated: the shared default is safe)
    options: dict[str, Any] = {}  # noqa: RUF012


CASES: list[MVCase] = [
    # --- test_all.py
    MVCase("-5", "-5", 1, ALL, options=EXPR),
    MVCase("7425000", "7,425,000", 1, ALL, options=EXPR),
    MVCase("1000", "1 000", 1, ALL, skip=SPACE_THOUSANDS),
    MVCase("1000", "1000.0", 1, ALL, options=EXPR),
    MVCase("1000.0", "1,000.0", 1, ALL, options=EXPR),
    MVCase("1000.99", "1000,99", 1, ALL, skip=DECIMAL_COMMA),
    MVCase("1,22", "1.22", 1, ALL, skip=DECIMAL_COMMA),
    MVCase("2.74", "Soucis : 2,74 $ a..", 1, ALL, skip=DECIMAL_COMMA),
    MVCase("0.4", ".4", 1, ALL, options=EXPR),
    MVCase("1000.99", "1,000.99", 1, ALL, options=EXPR),
    MVCase("1000.99", "$1,000.99", 1, ALL, options=EXPR),
    MVCase("1000.99", "1,000.99$", 1, ALL, options=EXPR),
    MVCase("1000.99", "the number is not 10 which is 1,000.99€", 1, ALL, options=EXPR),
    MVCase("1000.99", "so the number is 10 which is 1,000.99m²", 1, ALL, options=EXPR),
    MVCase("1000.99", "not it's not 10 it's 1,000.99m²", 1, ALL, options=EXPR),
    MVCase("0,111", "0.111", 1, ALL, options=EXPR),
    MVCase("2", "AZYUK2A", 0, ALL, options=EXPR),
    MVCase("10/9", "\\frac{10}{9}", 1, ALL),
    MVCase("-10/9", "-\\frac{10}{9}", 1, ALL),
    MVCase("$[0,1)$", "$[0,1)$", 1, ALL),
    MVCase("$[0,9)$", "$[0,1)$", 0, ALL),
    MVCase("$(0,9)$", "$[0,9)$", 0, ALL),
    MVCase("$1$", "$-[0,1)$", 0, ALL),
    MVCase("$9$", "Answer \\[ 9 \\]", 1, ALL, options=LATEX),
    MVCase("$9$", "Answer $ 9 $", 1, ALL, options=LATEX),
    MVCase("$9$", "Answer $$ 9 $$", 1, ALL, options=LATEX),
    MVCase("$9$", "Answer \\( 9 \\)", 1, ALL, options=LATEX),
    MVCase("$10$", "Answer \\( (9+1) \\)", 1, ALL, options=LATEX),
    MVCase("$9$", "Answer $ \n 9 \n $", 0, ALL, options=LATEX),
    MVCase("$9$", "Answer \\( \n 9 \n \\)", 0, ALL, options=LATEX),
    MVCase("$9$", "Answer \\[ \n 9 \n \\]", 1, ALL, options=LATEX),
    MVCase("$9$", "Answer $$ \n 9 \n $$", 1, ALL, options=LATEX),
    MVCase("$10/9$", "Answer $ \\frac{1}{2} \\$ = \\frac{10}{9} $", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\frac13 $", 1, ALL, options=LATEX),
    MVCase("$1$", "$\\frac3{3} $", 1, ALL, options=LATEX),
    MVCase("$\\sqrt{3}$", "$\\sqrt3 $", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\cfrac{1}{3} $", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\dfrac{1}{3} $", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\tfrac{1}{3} $", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$ 1/3 $", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\left( \\frac{1}{3} \\right)$", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\boxed{\\frac{1}{3}}$", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\frac{1}{3} \\text{meters}$", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$\\frac{1}{3} \\textbf{meters}$", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$k = \\frac{1}{3}$", 1, ALL, options=LATEX),
    MVCase("$28\\%$", "28 percent", 1, ALL),
    MVCase("$28\\%$", "28 pct", 1, ALL),
    MVCase("$28\\%$", "28 %", 1, ALL),
    MVCase("$28\\%$", "$28$ %", 1, ALL),
    MVCase("$28\\%$", "$28$ percent", 1, ALL),
    MVCase("$28\\%$", "$\\boxed{28}$ pct", 1, ALL),
    MVCase("$28\\%$", "$\\boxed{28 pct}", 1, ALL),
    MVCase("$28\\%$", "$\\boxed{28 percent}", 1, ALL),
    MVCase("$28\\%$", "$\\boxed{28 percentage}", 1, ALL),
    MVCase("$28\\%$", "28", 1, ALL),
    MVCase("$0.28$", "28", 0, ALL),
    MVCase("$28/100$", "28", 0, ALL),
    MVCase("$28$", "28/100", 0, ALL),
    MVCase("$\\frac{28}{100}$", "28", 0, ALL),
    MVCase("$28*\\frac{1}{100}$", "28", 0, ALL),
    MVCase(
        "$2-2p$",
        "Since $x<2$, it follows that $|x-2|=2-x$. If $2-x=p$, then $x=2-p$. Thus $x-p=\\boxed{2-2p}$.",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "\\boxed{\n\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}\n}.\n\\end{align*}",
        "\\boxed{\n\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}\n}.\n\\end{align*}",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\frac{14}{3}$",
        "$f(-2)+f(-1)+f(0)=\\frac{3(-2)-2}{-2-2}+\\frac{3(-1)-2}{-1-2}+\\frac{3(0)-2}{0-2}=\\frac{-8}{-4}+\\frac{-5}{-3}+\\frac{-2}{-2}=2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\text{Evelyn}$",
        "Evelyn covered more distance in less time than Briana, Debra and Angela, so her average speed is greater than any of their average speeds. Evelyn went almost as far as Carla in less than half the time that it took Carla, so Evelyn's average speed is also greater than Carla's. Therefore, $\\boxed{\\text{Evelyn}}$ is our answer.",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$3\\sqrt{13}$",
        "We use the distance formula:  \\begin{align*} \\sqrt{(2 - (-4))^2 + ((-6) - 3)^2} &= \\sqrt{6^2 + (-9)^2}\\\\ & = \\sqrt{36 + 81}\\\\ & = \\sqrt{117} = \\boxed{3\\sqrt{13}}. \\end{align*}",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$2$",
        "Of the two-digit perfect squares, only $4^2=16$ and $6^2=36$ end in $6$. Thus, there are $\\boxed{2}$ distinct possible values for $B$.",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$15\\mbox{ cm}^2$",
        "Therefore, the area of the triangle is $$\\frac{1}{2}\\times 3 \\times 10 = \\boxed{15\\mbox{ cm}^2}.$$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$-2,1$",
        "Checking, we find that the only integer roots are $\\boxed{-2,1}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase("$9$", "Then, $129^{34}+96^{38} \\equiv \\boxed{9} \\pmod{11}.$", 1, ALL, options=LATEX),
    MVCase(
        "$90^\\circ$",
        "Therefore, \\begin{align*} \\angle BAC &= \\angle BAD + \\angle DAC \\\\ &= 50^\\circ+40^\\circ \\\\ &= \\boxed{90^\\circ}. \\end{align*}",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$0$",
        "Hence, the degree of $p(x)$ (which is the constant polynomial 1) is $\\boxed{0}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$204_5$",
        "for a quotient of $\\boxed{204_5}$. Note that in the above calculation we have used that $13_5$ divided by $2_5$ is $4_5$, which follows from $4_5\\times2_5=8_{10}=13_5$.",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$(6,31,-1)$",
        "Then solving the system of equations, we find $(p,q,r) = \\boxed{(6,31,-1)}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$1 \\pm \\sqrt{19}$",
        "By the quadratic formula, $x = \\boxed{1 \\pm \\sqrt{19}}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$3 \\pm 2 \\sqrt{2}$",
        "By the quadratic formula, the roots are $x = \\boxed{3 \\pm 2 \\sqrt{2}}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\{1\\pm\\sqrt{5},-2\\}$",
        "The roots of $P(x)$ are $-2$ and $1 \\pm \\sqrt{5}$, so the answer is $\\boxed{\\{1\\pm\\sqrt{5},-2\\}}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase("$f(2) < f(1) < f(4)$", "Hence, $\\boxed{f(2) < f(1) < f(4)}.$", 1, ALL, options=LATEX),
    MVCase(
        "$2 \\sin b \\cos a$",
        "By sum-to-product,\n\\[\\sin (a + b) - \\sin (a - b) = \\boxed{2 \\sin b \\cos a}.\\]",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$125$ miles", "The distance is $\\boxed{125\\textnormal{ miles}}.$", 1, ALL, options=LATEX
    ),
    MVCase(
        "$[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)$",
        "The solution set is $\\boxed{[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, \\infty)}.$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\sqrt{2}+\\sqrt{5}$", "The answer is $\\boxed{\\sqrt 2+\\sqrt 5}$", 1, ALL, options=LATEX
    ),
    MVCase("$\\frac{9}{4}\\pi$", "Therefore $\\boxed{\\frac94\\pi}$.", 1, ALL, options=LATEX),
    MVCase(
        "x \\in \\boxed{\\{-1\\} \\cup [0,7)}.$", "x \\in \\boxed{\\{-1\\} \\cup [0,7)}.$", 1, ALL
    ),
    MVCase("$x >= 5$", "Therefore $x \\geq 5$ is the solution.", 1, ALL, options=LATEX),
    MVCase("$x < 3$", "We find that $x \\lt 3$.", 1, ALL, options=LATEX),
    MVCase("$x \\leq 2$", "Thus $x <= 2$ is our answer.", 1, ALL, options=LATEX),
    MVCase("$x > 5$", "Therefore $x \\gt 5$ is the solution.", 1, ALL, options=LATEX),
    MVCase("$x != 3$", "We find that $x \\neq 3$.", 1, ALL, options=LATEX),
    MVCase("$x > 5$", "Therefore $x < 5$ is the solution.", 0, ALL, options=LATEX),
    MVCase("$x \\geq 5$", "The solution is $x \\leq 5$", 0, ALL, options=LATEX),
    MVCase("$x \\neq 5$", "The solution is $x != 5$", 1, ALL, options=LATEX),
    MVCase("$x \\leq 5$", "$5 \\geq x$", 1, ALL, options=LATEX),
    MVCase("$x \\geq 5$", "$5 \\leq x$", 1, ALL, options=LATEX),
    MVCase("$x = 11$", "$x = 5+5+1 = 7 =11$", 1, ALL, options=LATEX),
    MVCase("$7 = 11a+c$", "$11a+c$", 0, ALL, options=LATEX),
    MVCase("$x = 1/3$", "$x = 5+5+1 = 1/3 \\approx 11$", 1, ALL, options=LATEX),
    MVCase("$11$", "$x=11$", 1, ALL, options=LATEX),
    MVCase("$11$", "$x\\approx11$", 1, ALL, options=LATEX),
    MVCase("$1/3$", "$x=1/3\\approx1.3$", 1, ALL, options=LATEX),
    MVCase("$x < 1$", "$-x > -1$", 1, ALL, options=LATEX),
    MVCase("$x < 1$", "$x > -1$", 0, ALL, options=LATEX),
    MVCase("$x <= 1$", "$-x >= -1$", 1, ALL, options=LATEX),
    MVCase("$a +3z = 0$", "$0$", 0, ALL, options=LATEX),
    MVCase("$1 = \\zzz = x = 0$", "$0$", 1, ALL, options=LATEX),
    MVCase("$2x + z = 1$", "$1$", 0, ALL, options=LATEX),
    MVCase("$a^2 + b = 0$", "$0$", 0, ALL, options=LATEX),
    MVCase("$k=1$", "$1$", 1, ALL, options=LATEX),
    MVCase("$1$", "$k=1$", 1, ALL, options=LATEX),
    MVCase("$z = 1 + 1 = 2$", "$z = 3+3 = 2$", 1, ALL, options=LATEX),
    MVCase("$2x+4y-3=0$", "$y=-\\frac{1}{2}x+\\frac{3}{4}$", 1, ALL, options=LATEX),
    MVCase(
        "$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$",
        "The identity matrix is $ \\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} $.",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}$",
        "Here is a zero matrix: $ \\begin{pmatrix}0 & 0 \\\\0 & 0\\end{pmatrix} $",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\begin{pmatrix}1 & 2 \\\\3 & 4\\end{pmatrix}$",
        "Special matrix: $ \\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right] $",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}$",
        "The sum is $\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}$",
        "The matrix is $\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}$",
        0,
        ALL,
    ),
    MVCase(
        "$\\begin{pmatrix}\\frac{1}{2} & \\frac{3}{4} \\\\ \\frac{5}{6} & \\frac{7}{8}\\end{pmatrix}$",
        "Matrix with fractions: $ \\begin{pmatrix}\\frac{1}{2} & \\frac{3}{4} \\\\ \\frac{5}{6} & \\frac{7}{8}\\end{pmatrix} $",
        1,
        ALL,
        options=LATEX,
    ),
    MVCase(
        "$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$",
        "When multiplying by identity: $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} \\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$",
        1,
        ALL,
        options=LATEX,
    ),
    # --- test_all.py test_precision (the compare_strings line), test_set_rel_assymetry
    MVCase("$\\frac{1}{3}$", "0.3333$", 1, ALL, options={"float_rounding": 4}),
    MVCase(
        "$-2 \\\\le x \\\\le 7$",
        "$x \\in [-2,7]$",
        1,
        ALL,
        options={"extraction": "latex", "allow_set_relation": True},
    ),
    MVCase("$-2 \\\\le x \\\\le 7$", "$x \\in [-2,7]$", 1, ALL, options=LATEX),
    MVCase(
        "$x \\in [-2,7]$",
        "$-2 \\\\le x \\\\le 7$",
        1,
        ALL,
        options={"extraction": "latex", "allow_set_relation": True},
    ),
    MVCase("$x \\in [-2,7]$", "$-2 \\\\le x \\\\le 7$", 0, ALL, options=LATEX),
    # --- test_all.py test_complex_math_expressions (precision column)
    MVCase(
        "$\\begin{pmatrix}-\\\frac{7}{4}&-2\\\\4&\\frac{1}{4}\\\\\\end{pmatrix}$",
        "$\\begin{pmatrix}-\\\frac{7}{4}&-2\\\\4&\\frac{1}{4}\\\\\\end{pmatrix}$",
        1,
        ALL,
    ),
    MVCase(
        "$\\begin{pmatrix}\\frac{1}{3\\sqrt[3]{x}^2}&0&0\\\\0&1&0\\\\-\\sin(x)&0&0\\\\\\end{pmatrix}$",
        "$\\begin{pmatrix}\\frac{1}{3x^{2/3}}&0&0\\\\0&1&0\\\\-\\sin(x)&0&0\\end{pmatrix}$",
        1,
        ALL,
    ),
    MVCase(
        "$(\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix})$",
        "$\\begin{pmatrix}0.33\\\\0.2 \\end{pmatrix}$",
        1,
        ALL,
        options={"float_rounding": 2},
    ),
    MVCase(
        "$(\\frac{3}{5},\\frac{8}{3}]$", "$(0.6,2.6667]$", 1, ALL, options={"float_rounding": 2}
    ),
    MVCase("$\\frac{1}{12}$", "$0.0833333333333333$", 1, ALL),
    MVCase("$(1,\\frac{9}{2})$", "$(1,4.5)$", 1, ALL),
    MVCase("$\\frac{x+2}{7}$", "$\\frac{x}{7}+\\frac{2}{7}$", 1, ALL),
    MVCase("$\\tan^2(y)+1$", "$\\sec^2(y)$", 1, ALL),
    MVCase("$34x+45y-20z+100=0$", "$-34x-45y+20z-100=0$", 1, ALL),
    MVCase(
        "$\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}$",
        "$\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}$",
        1,
        ALL,
    ),
    MVCase("$(a+5)(b+2)$", "$(+5)(b+2)$", 0, ALL),
    MVCase("$2$", "$\\frac{1+\\sqrt{5}}{2}$", 0, ALL),
    MVCase("$4$", "$\\frac{34}{16}+\\frac{\\sqrt{1358}}{16}$", 0, ALL),
    MVCase("$1\\sqrt{19}$", "$1$", 0, ALL),
    MVCase("$x+2n+1$", "$x+1$", 0, ALL),
    MVCase(
        "$2/3$",
        "So, we can rewrite the equation as: P(A) = 1/2 + (1/2) * (1/2) * P(A) Now, we can solve for P(A): P(A) - (1/4) * P(A) = 1/2 (3/4) * P(A) = 1/2 P(A) = (1/2) / (3/4) P(A) = (1/2) * (4/3) P(A) = 2/3 Therefore, the probability that Alice wins the game is 2/3. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$12$",
        "For each divisor $n$, there corresponds a unique common difference $d = \\frac{90}{n}$ that generates an arithmetic sequence with the given conditions. Therefore, there are 12 distinct arithmetic sequences that meet the three given conditions. I hope it is correct. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$[0,1)$",
        "Combining these conditions, we find that the domain of $q(x)$ is the interval $(0, 1)$, since $x$ must be greater than or equal to 0 and less than 1, but not equal to 1. Final Answer: The final answer is $(0, 1)$. I hope it is correct. <|im_start|>user",
        0,
        ALL,
    ),
    MVCase(
        "$120$",
        "The length is 5, the width is 6, and the height is 4. Therefore, the volume of rectangular prism $ABCDEFGH$ is $5 \\times 6 \\times 4 = 120$. Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "12000023",
        "Therefore, we remove this integer from the list and sum the remaining integers: $85 + (-67) + 12,\\!000,\\!003 + (-3) = 12,\\!000,\\!023$. Final Answer: The final answer is 12,000,023. I hope it is correct. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$14916$",
        "Therefore, the smallest possible value for $N$ is $14{,}922$. Final Answer: The smallest possible value of $N$ is $\\boxed{14{,}916}$. I hope it is correct. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$\\\\left(\\\\frac{4}{5},\\\\frac{1}{5}\\\\right)$",
        "Thus, $(t,u) = \\boxed{\\left( \\frac{4}{5}, \\frac{1}{5} \\right)}.$ Final Answer: The final answer is $\\left( \\frac{4}{5}, \\frac{1}{5} \\right)$. I hope it is correct. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$16386.17$",
        "Calculating this gives: \\[A \\approx 10000(1.025)^{20} \\approx 16386.169.\\] Rounded to the nearest cent, Paula's investment is worth $\\boxed{\\$16386.17}$ after 5 years. I hope it is correct. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$3$",
        "So, Jane started growing Sphere 3 hours ago. Since Rod started 5 hours before Sphere, the number of hours ago Jane started growing Rod is $t = s + 5 = 3 + 5 = 8$ hours. Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$19$",
        "So, the total number of points in the domain is $1 + 2 \\times 9 = 1 + 18 = 19$ points. Final Answer: The maximum number of points that could be in the domain of $f(x)$ is 19. <|im_start|>user",
        1,
        ALL,
    ),
    MVCase(
        "$(\\tfrac{27}{8},\\tfrac{15}{8})$",
        "Therefore, the point where the line intersects $\\overline{CD}$ is $\\boxed{(0, 0)}$. Final Answer: The final answer is $(0, 0)$. I hope it is correct. <|im_start|>user",
        0,
        ALL,
    ),
    MVCase("$34$", "Final Answer: The largest $n$ is 34.", 1, ALL),
    MVCase(
        "$\\\\left( \\\\frac{4}{3}, -\\\\frac{1}{3} \\\\right)$",
        "Isolating $\\overrightarrow{P},$ we find \\[\\overrightarrow{P} = \\frac{4}{3} \\overrightarrow{A} - \\frac{1}{3} \\overrightarrow{B}.\\]Thus, $(t,u) = \\boxed{\\left( \\frac{4}{3}, -\\frac{1}{3} \\right)}.$",
        1,
        ALL,
    ),
    MVCase("$(3,1)$", "${1,3}$", 0, ALL),
    MVCase("$(1,3)$", "${1,3}$", 1, ALL),
    MVCase(
        "$16386.16$",
        "\\[ A \\approx 16386.16 \\] So, Paula's investment is worth approximately $\\boxed{16386.16}$ dollars at the end of the 5 years. Final Answer: The final answer is 16386.16.",
        1,
        ALL,
    ),
    MVCase(
        "$5866608$",
        "\\[ \\text{Total sum} = 5866608 \\] So, the sum of the integers on Camy's list is $\\boxed{5866608}$. Final Answer: The final answer is 5866608. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "$14400$",
        "So, the total number of distinguishable ways is $1 \\times 5! \\times 5! = 120 \\times 120 = \\boxed{14400}$. Final Answer: The final answer is 14400. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "$20\\%$",
        "The percentage of children in Mathopolis is: $$\\frac{|C|}{|A| + |C|} \\times 100\\% = \\frac{x/2}{5x/2} \\times 100\\% = \\frac{1}{5} \\times 100\\% = \\boxed{20\\%}$$ Final Answer: The final answer is $20\\%$. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "$7.78$",
        "Now, we need to round this value to the nearest cent. $\\frac{70}{9} \\approx 7.78$ So, Anna pays approximately $7.78 for her fudge. Final Answer: The final answer is 7.78.",
        1,
        ALL,
    ),
    MVCase(
        "$100$",
        "Thus, the new error in the measurement of the position is at least $100\\%$ of the original error in the measurement of the position. Final Answer: The final answer is $100$. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "$x-2y+z-1=0$",
        "The equation of the plane containing $L$ and the point $(1,1,1)$ is then $$-1(x-1)+2(y-1)+1(z-1)=0\\Rightarrow\\boxed{x-2y+z-1=0}.$$ Final Answer: The final answer is $x-2y+z-1=0$. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "$10455$",
        "So, after six months in the second CD, Dr. Zaius has $10,200 + $255 = $10,455. Final Answer: The final answer is $10,455$. I hope it is correct.",
        1,
        ALL,
    ),
    MVCase(
        "$[-4,0]$",
        "Thus, the values of \\( k \\) for which the quadratic has real roots are: \\[ \\boxed{[-4, 0]} \\]",
        1,
        ALL,
    ),
    MVCase("\\(\\boxed{\\text{C}}\\).", "$\\boxed{\\text{(C)}}.$", 1, ALL),
    MVCase(
        " So the answer is: \\[ \\boxed{11111111100} \\]",
        "is $\\boxed{11,\\! 111,\\! 111,\\! 100}$",
        1,
        ALL,
    ),
    MVCase(" So the answer is: \\[ \\boxed{32349} \\]", "is $\\boxed{32,\\! 349}$", 1, ALL),
    MVCase(" So the answer is: \\[ \\boxed{32349} \\]", "is $\\boxed{32, 349}$", 0, ALL),
    MVCase(
        "Thus, the domain of the function \\( f(x) \\) is: \\[ \\boxed{(2, 12) \\cup (12, 102)} \\]",
        "Thus, the answer is $x \\in \\boxed{(2,12) \\cup (12,102)}$",
        1,
        ALL,
    ),
    MVCase("$\\text{E}$", "$E$", 1, ALL),
    MVCase("$\\boxed{1}\\boxed{2}$", "$\\boxed{1,2}$", 1, ALL),
    MVCase("4.123105625617661", "$\\sqrt{17}$", 1, ALL, options=ROUND_5),
    MVCase("$4$", "$4\\sqrt{2}$", 0, ALL, options=ROUND_5),
    MVCase("$\text{13}$", "$13$", 0, ALL, options=ROUND_5),
    MVCase("$\\frac{1}{3}$", "$\\frac{1}{3}.$", 1, ALL),
    MVCase("$\\frac{1}{3}$", "The answer is $\\frac{1}{3}.$", 1, ALL),
    MVCase("$\\frac{1}{3}$", "$$\\frac{1}{3}.$$", 1, ALL),
    MVCase("$\\frac{1}{3}$", "\\[\\frac{1}{3}.\\]", 1, ALL),
    MVCase("$\\frac{1}{3}$", "$\\frac{1}{3},$", 1, ALL),
    MVCase("$\\frac{1}{3}$", "$\\frac{1}{3} .$", 1, ALL),
    MVCase("$\\sqrt{2}$", "$\\sqrt{2}.$", 1, ALL),
    MVCase("$(1,2)$", "$(1,2).$", 1, ALL),
    MVCase("$5$", "$5 \\text{ cm}.$", 1, ALL, options=LATEX),
    MVCase("$42$", "$42.$", 1, ALL, options=LATEX),
    MVCase("$2$", "$2^{10}.$", 0, ALL),
    MVCase("$1$", "The answer is $1/3.$", 0, ALL),
    MVCase("$1, 2, 3$", "$1, 2, 3, ...$", 0, ALL),
    # --- test_yujianll.py
    MVCase("$n=1, 2, 3$", "$n=1, 2, 3$", 1, YUJIANLL),
    MVCase("$n=2, 3, 4$", "$n=1, 2, 3$", 0, YUJIANLL),
    MVCase("$D = (0, 1)$", "$D = (0, 1)$", 1, YUJIANLL),
    MVCase("$D = (0, 1)$", "$D = (0, 1.5)$", 0, YUJIANLL),
    MVCase("$19, 46, and 82$", "$19, 46, \\text{ and } 82$", 1, YUJIANLL),
    MVCase("$19, 46, and 82$", "$21, 36, and 82$", 0, YUJIANLL),
    MVCase("$1 - \\frac{1}{\\mathrm{e}}$", "$1 - \\frac{1}{\\mathrm{e}}$", 1, YUJIANLL),
    MVCase(
        "$1 - \\frac{1}{\\mathrm{e}}$",
        "$1 + \\frac{1}{\\mathrm{e}}$",
        0,
        YUJIANLL,
        skip=MATH_VERIFY_0_9,
    ),
    MVCase("$\\pm 2021$", "$2021$", 0, YUJIANLL),
    MVCase("$\\pm 2021$", "${-2021, 2021}$", 1, YUJIANLL),
    MVCase("$12:00$", "$1:00$", 0, YUJIANLL),
    MVCase("$12:00$", "$12:00$", 1, YUJIANLL),
    # --- test_numina_cases.py
    MVCase(
        "$(37,3,3,13),(17,3,3,7),(3,37,3,13),(3,17,3,7),(3,3,2,3)$",
        "$\\boxed{(3, 37, 3, 13), (3, 17, 3, 7), (3, 3, 2, 3), (3,17,3,7), (17,3,3,7), (37,3,3,13)}$",
        1,
        NUMINA,
    ),
    MVCase("$(p,q)=(3,2)$", "$(3,2)$", 1, NUMINA),
    MVCase(
        "$(0;0;0),(0;-2;0),(0;0;6),(0;-2;6),(4;0;0),(4;-2;0),(4;0;6),(4;-2;6)$",
        "\\boxed{(4, 0, 6), (4, -2, 6), (0, 0, 6), (0, -2, 6), (4, 0, 0), (4, -2, 0), (0, 0, 0), (0, -2, 0)}",
        1,
        NUMINA,
    ),
    MVCase(
        "$1\\leq|z|\\leq \\frac{3}{2}$",
        "$z \\in \\left[-\\frac{3}{2}, -1\\right] \\cup \\left[1, \\frac{3}{2}\\right]$",
        1,
        NUMINA,
    ),
    MVCase("$-12;-11;-10;-8;-7;-6$", "$\\boxed{\\{-12, -11, -10, -8, -7, -6\\}}$", 1, NUMINA),
    MVCase("$AB=4,CD=5$", "$\\boxed{4, 5}$", 1, NUMINA),
    MVCase("$(11,7)or(7,11)$", "$\\boxed{(7,11),\\ (11,7)}$", 1, NUMINA),
    MVCase("$S_{MBCN}:S=7:32$", "$\\boxed{7:32}$", 1, NUMINA),
    MVCase("$\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}$", "$\\frac{1}{\\sqrt{6}}$", 1, NUMINA),
    MVCase("$p=5,q=2;p=7,q=2$", "$(5,2),(7,2)$", 1, NUMINA),
    MVCase("$(p,q,r)=(3,2,7)$", "$(3,2,7)$", 1, NUMINA),
    MVCase("$P(x) = 1$", "$p(x) = 1$", 1, NUMINA, skip=MATH_VERIFY_0_9),
    MVCase("$V_{1}:V_{2}=11:21$", "$11:21$", 1, NUMINA),
    MVCase(
        "$(2,1),(1,2),(-1,-20),(-20,-1)$",
        # upstream writes it as a raw string: a literal "\\n" and doubled backslashes, kept here
        "solutions are:\\n\\n\\\\[\\n\\\\boxed{(1, 2)}, \\\\boxed{(2, 1)}, \\\\boxed{(-1, -20)}, \\\\boxed{(-20, -1)}\\n\\\\]",
        1,
        NUMINA,
    ),
    MVCase(
        "\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).",
        "$\\boxed{-2,1}$.",
        1,
        NUMINA,
    ),
    MVCase("$\\text{odd}$", "$odd$", 1, NUMINA),
    MVCase("$\\text{e}$", "$e$", 1, NUMINA),
    MVCase("$d$", "$\\text{E}$", 0, NUMINA),
    MVCase("$1$ and $2$ and $3$", "$\\boxed{1,2,3}$", 1, NUMINA),
    MVCase(
        "$(37,3,3),(17,3,3,7),(3,37,3,13),(3,17,3,7),(3,3,2,3)$",
        "$\\boxed{(3, 37, 3, 13), (3, 17, 3, 7), (3, 3, 2, 3), (3,17,3,7), (17,3,3,7), (37,3,3,13)}$",
        0,
        NUMINA,
    ),
    MVCase("$(p,q)=(3,2)$", "$\\boxed{(3, 2)}$", 1, NUMINA),
    MVCase("\\boxed{x = -5,\\ p = \\frac{14}{3}} ", "$\\boxed{-5, \\frac{14}{3}}$", 1, NUMINA),
    MVCase("\\boxed{a=4,\\,-8,\\,-10}", "$\\boxed{-10,-8,4}$", 1, NUMINA),
    MVCase("$21,16$ or $11$", "$21,16,11$", 1, NUMINA),
    MVCase(
        "\\boxed{ p = 5, q = 2 \\quad \\text{and} \\quad p = 7, q = 2}",
        "$p=5,q=2;p=7,q=2$",
        1,
        NUMINA,
        skip=MATH_VERIFY_0_9,
    ),
    MVCase(
        "\\n\\n\\[ \\boxed{p = -1 \\text{ and } p = \\dfrac{15}{8}} \\]",
        "$p=-1,p=\\frac{15}{8}$",
        1,
        NUMINA,
    ),
    MVCase("$0<f(x)<1$", "$(0,1)$", 1, NUMINA),
    MVCase("\\(\\boxed{6 \\text{ and } 8}\\)", "$\\boxed{6,8}$", 1, NUMINA),
    MVCase(
        "\\\\boxed{W(n) = 1 \\\\text{ and } W(n) = -1",
        "W(x)=1orW(x)=-1",
        1,
        NUMINA,
        skip=UNCLOSED_BOX,
    ),
    MVCase("$\\text{Even}$", "$Even$", 1, NUMINA, skip=NO_EXPECTED),
    # --- test_strict.py
    MVCase("$f(x)$", "$f(y)$", 0, STRICT),
    MVCase("$f(x)$", "$f(y)$", 1, STRICT, options={"strict": False}),
    # --- test_open_thoughts.py
    MVCase(
        "$$\\boxed{2}, \\boxed{3}, \\boxed{5}, \\boxed{7}, \\boxed{13}$$",
        "$${2, 3, 5, 7, 13}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase("$$f(y) = y$$", "$$f(y) = y$$", 1, OPEN_THOUGHTS),
    MVCase("$$-793 < a < 10$$", "$$(-793, 10)$$", 1, OPEN_THOUGHTS),
    MVCase(
        "$$\\text{The midpoints form a regular hexagon}$$",
        "$$\\text{The midpoints form a regular hexagon}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase(
        "$$a_3 = 2, a_{37} = 19$$", "$$\\boxed{a_{37} = 19, \\quad a_3 = 2}$$", 1, OPEN_THOUGHTS
    ),
    MVCase("$$(2, 2), (1, 3), (3, 3)$$", "$$\\boxed{(2, 2), (1, 3), (3, 3)}$$", 1, OPEN_THOUGHTS),
    MVCase("$$(1, +\\infty)$$", "$$(1, +\\infty)$$", 1, OPEN_THOUGHTS),
    MVCase(
        "$$x = \\frac{1}{2}, x = \\frac{-1 \\pm \\sqrt{13}}{4}$$",
        "$$\\boxed{x = \\frac{1}{2}, x = \\frac{-1 \\pm \\sqrt{13}}{4}}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase("$$0.06 \\text{ yuan}$$", "$$\\boxed{0.06 \\text{ yuan}}$$", 1, OPEN_THOUGHTS),
    MVCase(
        "$$(5, 8), (8, 5)$$",
        "$$\\boxed{(x, y) = (5, 8) \\quad \\text{and} \\quad (8, 5)}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase("$$667$$", "$$\\boxed{667}$$", 1, OPEN_THOUGHTS),
    MVCase("$$6 \\text{ and } 8$$", "$$\\boxed{6 \\text{ and } 8}$$", 1, OPEN_THOUGHTS),
    MVCase(
        "$$(2, 2), (6, 2)$$",
        "$$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase(
        "$$(98, 2), (99, 503)$$",
        "$$\\boxed{(98, 2)} \\quad \\text{and} \\quad \\boxed{(99, 503)}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase(
        "$$(3, 3), (1, 1)$$",
        "$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$",
        1,
        OPEN_THOUGHTS,
        skip=BOXES_APART,
    ),
    MVCase("$$k \\ge 2$$", "$$\\boxed{k \\ge 2}$$", 1, OPEN_THOUGHTS),
    MVCase(
        "$$k = 45, n = 2$$",
        "$$\\boxed{k = 45} \\quad \\text{and} \\quad \\boxed{n = 2}$$",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase("$$143$$", "$$\\boxed{20}$$ \\boxed{143}", 1, OPEN_THOUGHTS),
    MVCase(
        "$${1,2,3}$$",
        "\\boxed{1} and \\boxed{2} and \\boxed{3}",
        1,
        OPEN_THOUGHTS,
    ),
    MVCase("$${1,2,3}$$", "\\boxed{1},\\boxed{2},\\boxed{3}", 1, OPEN_THOUGHTS),
    # --- test_mixed_number_extraction.py
    MVCase("40/9", "The answer is 4 4/9.", 1, MIXED, skip=MATH_VERIFY_0_9),
    MVCase("4", "The answer is 4 4/9.", 0, MIXED),
    MVCase("103/9", "11.0 4/9", 0, MIXED),
    MVCase("71/6", "11\n5/6", 0, MIXED),
    MVCase("5", "11\n5/6", 1, MIXED, skip=ANY_CANDIDATE),
]
