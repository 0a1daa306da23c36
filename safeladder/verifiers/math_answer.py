"""``math_answer``: is the completion's final answer equal to the reference answer?

Scores (``score_range = (0, 1)``):
- ``1.0``: the final answer equals the reference (numerically, or symbolically via math-verify);
- ``0.0``: a real wrong answer -- including a completion with no extractable answer, an answer
  that math-verify cannot parse, and (with ``after_think``) an unfinished ``<think>`` block;
- NaN + ``abstain``: the reference is missing, of an unsupported type (a dict, a bool...), or
  cannot be parsed -- a wrong reference type is an abstention with a reason, never an error;
- NaN + ``timeout``: the symbolic check ran past ``timeout_s`` and its worker was killed, the
  call's symbolic budget (``budget_s``) ran out before the row was checked, its worker ran out
  of memory (``worker_memory_mb``), or the answer holds a number too large to check (a power
  tower such as ``9^{9^{9^{9^{5}}}}``, rejected before any worker sees it); the reason says
  which.

How a row is judged:

1. **Extraction.** The completion's answer is taken by the first extractor of ``extractors``
   (in order) that finds one, always the *last* occurrence:
   ``boxed`` (last ``\\boxed{...}`` / ``\\fbox{...}``, brace-matched, or ``\\boxed 5``),
   ``answer_tag`` (last ``<answer>...</answer>``), ``gsm8k`` (last ``#### n``),
   ``answer_phrase`` (after the last "answer is" / "answer:"; a prose value holding exactly one
   number, e.g. "The volume is 120", gives that number) and ``last_number`` (the last number in
   the text; an inline math span holding a digit, e.g. ``$\\frac{3}{4}$``, counts as one
   number). The reference goes through ``boxed``, ``answer_tag``, ``gsm8k``, ``answer_phrase``
   and is otherwise taken whole, so a bare answer (``"72"``, ``"\\frac{1}{2}"``, ``"$x^2$"``),
   a GSM8K solution (``... #### 72``) and a MATH solution (``... \\boxed{72}``) all work. A
   list of references means "any of these".
2. **Fast paths** (pure Python, never import sympy). The same text up to spacing is equal.
   When both sides read as plain numbers -- integers, decimals, ``1,234`` / ``40,\\!320``
   thousands separators, signs, ``3/4``, ``\\frac{3}{4}`` / ``\\dfrac`` / ``\\tfrac``, a currency
   sign (``$5``), a trailing unit word (``72 dollars``, ``5\\text{ cm}``), ``^\\circ``,
   ``x = 5`` -- they are compared as exact rationals; only when one side is a fraction whose decimal expansion does not terminate
   (``1/3`` vs ``0.333333``) is a relative tolerance ``rel_tol`` used. A percent sign is read
   as a unit that may also mean /100: ``50%`` equals both ``50`` and ``0.5`` (math-verify's
   tests expect ``$28\\%$`` to match ``28`` and ``0.28``); ``50%`` vs ``0.5%`` compares 50 to
   0.5. Bare unit words must be separated by a space and be 3+ letters (or a known 2-letter
   unit such as ``cm``), so algebra such as ``5xy`` or ``2 pi`` is never read as a number.
3. **Symbolic path.** Everything else goes to math-verify (``verify(parse(gold), parse(pred))``,
   gold first: verify is not symmetric; each extracted answer is wrapped in ``$...$`` because
   math-verify reads LaTeX only inside math delimiters; a reference that parses to nothing but
   its own text abstains), with its signal-based timeouts disabled and a hard
   per-row limit instead: the rows of a batch are sent at once to a shared
   ``safeladder.timeout_pool.TimeoutPool`` of ``workers`` processes, and a row that runs past
   ``timeout_s`` (e.g. ``\\boxed{(x+1)^{3000}}``) has its worker killed; a warm spare worker
   takes its place at once. Rows are sent cheapest first (``math_cost.symbolic_cost``), and the
   call as a whole has a budget (``budget_s`` + ``budget_per_row_s`` per row): rows still
   queued or running when it runs out are ``timeout``, rows already checked keep their scores.
   Answers holding a numeric power or factorial of more than ``math_cost.MAX_POWER_DIGITS``
   digits never reach a worker. Works from any thread.
   Results (timeouts included) are cached per (reference, answer) pair.

Hack resistance: only the designated answer is judged -- the *last* box / tag / marker, never
"the reference appears somewhere". Boxes apart in the text (``\\boxed{1} ... so \\boxed{72}``,
or with only spacing between them) count as the last one. The final run of boxes joined by commas
or "and" (``\\boxed{1}, \\boxed{2}``, ``combine_boxes``) is one answer of several parts, compared
as a set -- and against a single-value reference it scores 0.0 without asking math-verify, so
listing candidates never pays; a box listing candidates (``\\boxed{1, 2, 72}``, ``72 or 73``) is a
set, not 72. math-verify's own "join all boxes anywhere" behaviour is deliberately not used.

Sources: extraction order follows the conventions of GSM8K (``#### n``, openai/grade-school-math),
MATH (last ``\\boxed``, hendrycks/math) and DeepSeek-R1-style ``<answer>`` tags; the symbolic
check is huggingface/Math-Verify (``parse`` / ``verify``, ``float_rounding=6`` default).

Inputs: ``completion`` (its final answer is extracted) and ``reference`` (the gold answer: a
string, a number or a list of them; a whole GSM8K / MATH solution works).
Score range: [0, 1] -- 1.0 equal, 0.0 not; NaN with status ``abstain`` or ``timeout``.

Example::

    >>> from safeladder.verifiers import build_verifier
    >>> v = build_verifier({"type": "math_answer"})
    >>> v.score([{"completion": "... so she has \\\\boxed{1,234} apples", "reference": "1234"},
    ...          {"completion": "#### 71", "reference": "Natalia sold 72 clips.\\n#### 72"}]).scores
    array([1., 0.], dtype=float32)
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from safeladder.answers import (
    DEFAULT_EXTRACTORS,
    THINK_CLOSE,
    THINK_OPEN,
    Extractor,
    Number,
    clean_answer,
    extract_answer,
    extract_answer_parts,
    join_parts,
    lists_several_values,
    numbers_equal,
    parse_number,
    reference_answer,
    text_after_think,
)
from safeladder.timeout_pool import Outcome, TimeoutPool
from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers.base import (
    RowResult,
    RuleVerifier,
    Verifier,
    VerifierConfig,
    abstain,
    ok,
    timed_out,
)
from safeladder.verifiers.math_cost import (
    MAX_POWER_DIGITS,
    power_digits,
    symbolic_cost,
    too_large_reason,
)
from safeladder.verifiers.math_symbolic import (
    Comparison,
    SymbolicTask,
    acquire_pool,
    release_pool,
    symbolic_check,
    warm_up,
)

# Re-exported: the answer readers live in safeladder.answers and the symbolic stage in
# math_symbolic; callers and tests still import them from here.
__all__ = [
    "DEFAULT_EXTRACTORS",
    "Extractor",
    "MathAnswerConfig",
    "MathAnswerVerifier",
    "Number",
    "clean_answer",
    "extract_answer",
    "numbers_equal",
    "parse_number",
    "reference_answer",
    "symbolic_check",
]

_DETAIL_CHARS = 200
_warm_up = warm_up  # its old name here; benchmarks/bench_hostile_math.py imports it


class MathAnswerConfig(VerifierConfig):
    """Config of the ``math_answer`` verifier (final-answer equality, 1.0 / 0.0 / NaN)."""

    type: Literal["math_answer"] = "math_answer"
    extractors: tuple[Extractor, ...] = Field(
        default=DEFAULT_EXTRACTORS,
        description=(
            "How to find the completion's final answer, tried in this order; the first that finds "
            "one wins and always takes the last occurrence. One or more of: boxed (last "
            "\\boxed{...}), answer_tag (last <answer>...</answer>), gsm8k (last '#### n'), "
            "answer_phrase (after the last 'answer is' / 'answer:'), last_number (the last number "
            "in the text; leave it out to require an explicit answer)."
        ),
    )
    after_think: bool = Field(
        default=False,
        description=(
            "Judge only the text after the last '</think>'; a completion that opens <think> but "
            "never closes it has no final answer (0.0)."
        ),
    )
    rel_tol: float = Field(
        default=1e-6,
        ge=0.0,
        le=0.01,
        description=(
            "Relative tolerance used only when a decimal is compared with a fraction whose decimal "
            "expansion does not terminate (1/3 vs 0.333333); all other numbers compare exactly."
        ),
    )
    symbolic: bool = Field(
        default=True,
        description=(
            "Fall back to math-verify symbolic equivalence (in worker processes) unless both "
            "sides are plain numbers. If false: a non-numeric answer to a numeric reference "
            "scores 0.0 and a non-numeric reference abstains."
        ),
    )
    timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        le=600.0,
        description="Hard wall-clock limit in seconds for one row's symbolic check; past it the "
        "worker is killed and the row gets status 'timeout' (NaN).",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Worker processes for the symbolic check; verifiers with the same number of "
        "workers, spare_workers and worker_memory_mb share one pool.",
    )
    spare_workers: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Idle worker processes kept started (math-verify imported) beside 'workers', "
        "so a row whose worker was killed does not stall the next row for a 2-5 s restart.",
    )
    worker_memory_mb: int | None = Field(
        default=2048,
        ge=512,
        description="Address-space cap of each worker process in MiB (RLIMIT_AS, Linux); a row "
        "that runs out of it gets status 'timeout' with the reason. A warmed-up worker uses "
        "~210 MiB. null: no cap.",
    )
    budget_s: float | None = Field(
        default=5.0,
        gt=0.0,
        le=3600.0,
        description="Wall-clock seconds one score() call may spend in the symbolic stage, plus "
        "budget_per_row_s for each row it sends there; the clock starts when the first row "
        "reaches a worker. Rows still queued or running when it runs out get status 'timeout' "
        "(rows are sent cheapest first; finished rows keep their scores). null: no budget, "
        "only timeout_s per row.",
    )
    budget_per_row_s: float = Field(
        default=0.25,
        ge=0.0,
        le=60.0,
        description="Seconds added to budget_s for each row sent to the symbolic stage, so large "
        "honest batches are not cut: a typical row takes 5-50 ms of one worker, several times "
        "that on a loaded machine.",
    )
    float_rounding: int = Field(
        default=6,
        ge=1,
        le=15,
        description="Decimal places a number written as a decimal is rounded to before it is "
        "compared, on both paths (math-verify's float_rounding): at 4, 1/3 equals 0.3333.",
    )
    strict: bool = Field(
        default=True,
        description="math-verify's strict mode. If false, variable names do not matter (f(x) "
        "equals f(y)) and a set may equal a tuple with the same elements.",
    )
    allow_set_relation: bool = Field(
        default=False,
        description="Let a set in the reference equal a relation in the answer (reference "
        "x \\in [-2,7] vs answer -2 <= x <= 7; math-verify's allow_set_relation_comp). A "
        "relation in the reference always equals a set in the answer.",
    )
    extraction: Literal["latex_and_expr", "latex", "expr"] = Field(
        default="latex_and_expr",
        description="How answers are read, as math-verify's extraction configs: latex_and_expr "
        "(both, the default), latex (LaTeX only: a completion's fallback is the last math span "
        "-- inline math may not span lines -- instead of the last bare number) or expr (plain "
        "expressions only, no LaTeX parsing).",
    )
    combine_boxes: bool = Field(
        default=True,
        description="Read the final run of adjacent boxes joined by commas or 'and' "
        "(\\boxed{1}, \\boxed{2}) as one answer of several parts, compared as a set. Such an "
        "answer to a single-value reference scores 0.0; boxes apart in the text (with prose "
        "between them) still count as the last one only.",
    )
    max_answer_chars: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Longer extracted answers are not parsed: such a completion answer scores "
        "0.0, such a reference abstains.",
    )
    cache_size: int = Field(
        default=4096,
        ge=0,
        description="How many symbolic results (reference, answer) to remember; 0 disables the "
        "cache.",
    )

    @field_validator("extractors")
    @classmethod
    def _check_extractors(cls, value: tuple[Extractor, ...]) -> tuple[Extractor, ...]:
        if not value:
            raise ValueError(
                f"extractors must name at least one of {list(DEFAULT_EXTRACTORS)}; "
                f"the default is {list(DEFAULT_EXTRACTORS)}"
            )
        dupes = sorted({e for e in value if value.count(e) > 1})
        if dupes:
            raise ValueError(f"extractors lists {dupes} more than once; name each extractor once")
        if "last_number" in value and value[-1] != "last_number":
            raise ValueError(
                "extractors: 'last_number' is a catch-all fallback and must come last "
                f"(got {list(value)}); move it to the end"
            )
        return value

    def build(self) -> Verifier:
        return MathAnswerVerifier(self)


# --------------------------------------------------------------------------- verifier


@dataclass(frozen=True)
class _Pending:
    """A row waiting for the symbolic check."""

    task: SymbolicTask
    detail: dict[str, Any]


def _short(s: str | None) -> str | None:
    return None if s is None else s[:_DETAIL_CHARS]


class MathAnswerVerifier(RuleVerifier):
    """Final-answer equality; see the module docstring for extraction and comparison rules.

    Attributes:
        stats: counts of rows by how they were decided (``exact`` text match, ``numeric``,
            ``symbolic`` checks run, ``symbolic_cached``, ``timeout``, ``no_answer``), for logs
            and tests.
    """

    _reads_reference: ClassVar[bool] = True

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: MathAnswerConfig):
        super().__init__(config)
        self.cfg = config
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pool: TimeoutPool | None = None
        self._finalizer: weakref.finalize | None = None
        self._cache: OrderedDict[SymbolicTask, Outcome] = OrderedDict()

    @property
    def pool(self) -> TimeoutPool | None:
        """The worker pool, or None while no row has needed the symbolic check."""
        return self._pool

    def close(self) -> None:
        with self._lock:
            finalizer, self._finalizer, self._pool = self._finalizer, None, None
            self._cache.clear()
        if finalizer is not None:
            finalizer()

    def score_row(self, sample: Sample) -> RowResult:
        return self._score_rows(SampleBatch.from_samples([sample]))[0]

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        return ScoreBatch.from_rows(self.name, self._score_rows(batch))

    # -- phases: plan every row, run the symbolic checks of the batch at once, resolve

    def _score_rows(self, batch: SampleBatch) -> list[RowResult]:
        planned: list[RowResult | _Pending] = [
            self._guard(i, self._plan, s) for i, s in enumerate(batch)
        ]
        tasks = list(dict.fromkeys(p.task for p in planned if isinstance(p, _Pending)))
        outcomes = self._run_symbolic(tasks) if tasks else {}
        return [
            self._guard(i, self._resolve, p, outcomes[p.task]) if isinstance(p, _Pending) else p
            for i, p in enumerate(planned)
        ]

    def _gold_answers(self, reference: Any) -> list[str] | str:
        """The reference's answers, or the reason to abstain."""
        if reference is None:
            return "missing reference"
        items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
        if not items:
            return "empty reference list"
        golds: list[str] = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (str, Real)):
                return f"reference must be a string, a number or a list of them, got {type(item).__name__}"
            if (
                isinstance(item, Real)
                and not isinstance(item, int)
                and not math.isfinite(float(item))
            ):
                return f"reference is not a finite number: {item!r}"
            answer = reference_answer(item) if isinstance(item, str) else str(item)
            if answer and len(answer) <= self.cfg.max_answer_chars:
                golds.append(answer)
        if not golds:
            return "reference has no answer (empty, or longer than max_answer_chars)"
        return golds

    def _completion_answer(self, completion: str) -> tuple[str | None, str | None, str, int]:
        """``(answer, extractor, reason, parts)``; answer is None when there is no usable one.

        ``parts`` is the number of boxes a multi-box answer was joined from (1 otherwise).
        """
        text = completion
        if self.cfg.after_think:
            if THINK_CLOSE in text:
                text = text_after_think(text)
            elif THINK_OPEN in text:
                return None, None, "unfinished <think> block: no final answer", 1
        extractors: tuple[str, ...] = self.cfg.extractors
        if self.cfg.extraction == "latex":  # no bare numbers: the last math span instead
            extractors = tuple("last_math" if e == "last_number" else e for e in extractors)
        found = extract_answer_parts(text, extractors, self.cfg.combine_boxes)
        if found is None:
            return None, None, "no answer found", 1
        parts, extractor = found
        answer = join_parts(parts)
        if not all(parts):
            return None, extractor, "empty answer", len(parts)
        if len(answer) > self.cfg.max_answer_chars:
            return (
                None,
                extractor,
                f"answer longer than max_answer_chars={self.cfg.max_answer_chars}",
                len(parts),
            )
        return answer, extractor, "", len(parts)

    def _comparison(self) -> Comparison:
        return Comparison(
            self.cfg.float_rounding,
            self.cfg.strict,
            self.cfg.allow_set_relation,
            self.cfg.extraction,
        )

    def _plan(self, sample: Sample) -> RowResult | _Pending:
        golds = self._gold_answers(sample.reference)
        if isinstance(golds, str):
            return abstain(golds)
        pred, extractor, why, parts = self._completion_answer(sample.completion)
        detail: dict[str, Any] = {
            "answer": _short(pred),
            "extracted_by": extractor,
            "reference_answer": _short(golds[0]),
        }
        if parts > 1:
            detail["answer_parts"] = parts
        gold_nums = [parse_number(g) for g in golds]
        all_numeric = all(g is not None for g in gold_nums)
        if pred is None:
            if all_numeric:
                self._count("no_answer")
                return ok(0.0, reason=why, **detail)
            if not self.cfg.symbolic:
                return abstain(
                    "reference is not a plain number and symbolic checking is off", **detail
                )
            # Still ask math-verify whether the reference parses: if not, the row abstains.
            return _Pending((tuple(golds), None, self._comparison()), {**detail, "reason": why})
        if parts > 1 and not any(lists_several_values(g) for g in golds):
            # Several boxes against one value is a list of candidates, not an answer: never ask
            # math-verify, which may accept a list that contains the value.
            return ok(0.0, reason="several boxed answers for a single-value reference", **detail)
        squeezed = "".join(pred.split())
        if any("".join(g.split()) == squeezed for g in golds):
            # The same text up to spacing is the same answer, whatever math-verify could parse.
            self._count("exact")
            return ok(1.0, method="exact", **detail)
        pred_num = parse_number(pred)
        if pred_num is not None:
            if any(
                g is not None
                and numbers_equal(pred_num, g, self.cfg.rel_tol, self.cfg.float_rounding)
                for g in gold_nums
            ):
                self._count("numeric")
                return ok(1.0, method="numeric", **detail)
            if all_numeric:
                self._count("numeric")
                return ok(0.0, method="numeric", reason="different number", **detail)
        if not self.cfg.symbolic:
            if all_numeric:
                return ok(
                    0.0, reason="answer is not a plain number (symbolic checking is off)", **detail
                )
            return abstain("reference is not a plain number and symbolic checking is off", **detail)
        return _Pending((tuple(golds), pred, self._comparison()), detail)

    def _resolve(self, pending: _Pending, outcome: Outcome) -> RowResult:
        detail = {k: v for k, v in pending.detail.items() if k != "reason"}
        detail["method"] = "symbolic"
        if outcome.status in ("timeout", "expired", "memory"):
            return timed_out(outcome.message, **detail)  # worded by _run_symbolic
        if outcome.status == "error":
            raise RuntimeError(f"symbolic check failed: {outcome.message}")
        code = outcome.value
        if code == "no_gold":
            return abstain("reference could not be parsed", **detail)
        if code == "gold_ok":  # the reference is fine; the completion had no answer
            return ok(0.0, reason=pending.detail.get("reason", "no answer found"), **detail)
        if code == "no_pred":
            return ok(0.0, reason="answer could not be parsed", **detail)
        if code == "equal":
            return ok(1.0, **detail)
        return ok(0.0, reason="not equivalent", **detail)

    def _run_symbolic(self, tasks: list[SymbolicTask]) -> dict[SymbolicTask, Outcome]:
        results: dict[SymbolicTask, Outcome] = {}
        with self._lock:
            for t in tasks:
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    results[t] = hit
            self.stats["symbolic_cached"] += len(results)
        todo: list[SymbolicTask] = []
        for t in tasks:
            if t in results:
                continue
            digits = max(power_digits(x) for x in (*t[0], t[1] or ""))
            if digits > MAX_POWER_DIGITS:
                # Never sent: sympy would build the number exactly and the worker would only be
                # killed at timeout_s (a power tower has more digits than atoms in the universe).
                results[t] = Outcome("timeout", message=too_large_reason(digits))
                self._count("too_large")
            else:
                todo.append(t)
        if not todo:
            return results
        # Cheap rows first: what the budget cuts, if anything, is the slow tail.
        todo.sort(key=lambda t: symbolic_cost(t[0], t[1]))
        budget = None
        if self.cfg.budget_s is not None:
            budget = self.cfg.budget_s + self.cfg.budget_per_row_s * len(todo)
        outcomes = self._get_pool().map(symbolic_check, todo, self.cfg.timeout_s, budget_s=budget)
        with self._lock:
            self.stats["symbolic"] += len(todo)
            for t, o in zip(todo, outcomes, strict=True):
                if o.status == "timeout":
                    o = Outcome(
                        "timeout",
                        message=f"symbolic check ran past timeout_s={self.cfg.timeout_s:g} s",
                    )
                    self.stats["timeout"] += 1
                elif o.status == "expired":
                    o = Outcome(
                        "expired",
                        message=f"the call's symbolic budget of {budget:g} s (budget_s="
                        f"{self.cfg.budget_s:g} + budget_per_row_s={self.cfg.budget_per_row_s:g}"
                        f" x {len(todo)} rows) ran out before this row was checked",
                    )
                    self.stats["budget_expired"] += 1
                elif o.status == "memory":
                    o = Outcome(
                        "memory",
                        message="symbolic check ran out of memory (worker_memory_mb="
                        f"{self.cfg.worker_memory_mb})",
                    )
                    self.stats["memory"] += 1
                results[t] = o
                # A budget cut says nothing about the row itself: check it again next time.
                if o.status not in ("error", "expired") and self.cfg.cache_size > 0:
                    self._cache[t] = o
            while len(self._cache) > self.cfg.cache_size:
                self._cache.popitem(last=False)
        return results

    def _get_pool(self) -> TimeoutPool:
        with self._lock:
            if self._pool is None or self._pool.closed:
                key = (self.cfg.workers, self.cfg.spare_workers, self.cfg.worker_memory_mb)
                if self._finalizer is not None:
                    self._finalizer()
                self._pool = acquire_pool(key)
                # Release our share of the pool when this verifier is closed or collected.
                self._finalizer = weakref.finalize(self, release_pool, key, self._pool)
            return self._pool

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1
