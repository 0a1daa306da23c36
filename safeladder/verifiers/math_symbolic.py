"""The symbolic stage of ``math_answer``: math-verify in worker processes, and the shared pools.

``symbolic_check`` is what a worker runs for one row (math-verify's ``parse`` / ``verify``,
its signal-based timeouts off: the ``TimeoutPool`` enforces the limit by killing the worker).
``warm_up`` is the workers' initializer. ``acquire_pool`` / ``release_pool`` share one pool
between the ``math_answer`` verifiers that ask for the same pool shape, counting users so the
last one to release it closes it.

Importing this module imports neither sympy nor math-verify; ``symbolic_check`` does, in the
worker.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from safeladder.timeout_pool import TimeoutPool

__all__ = [
    "Comparison",
    "PoolKey",
    "SymbolicTask",
    "acquire_pool",
    "release_pool",
    "symbolic_check",
    "warm_up",
]


# --------------------------------------------------------------------------- worker side


def _as_latex(answer: str) -> str:
    # math-verify reads LaTeX only inside math delimiters, and inline math may not span lines.
    flat = " ".join(answer.split()).rstrip("\\")
    return flat if "$" in flat else f"${flat}$"


class Comparison(NamedTuple):
    """How math-verify parses and compares one row (see the fields of ``MathAnswerConfig``)."""

    float_rounding: int = 6
    strict: bool = True
    allow_set_relation: bool = False
    extraction: str = "latex_and_expr"


# (reference answers, answer or None, Comparison -- or only its float_rounding)
SymbolicTask = tuple[tuple[str, ...], str | None, "int | Comparison"]


def _extraction_config(extraction: str) -> list[Any] | None:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    if extraction == "latex":
        return [LatexExtractionConfig()]
    if extraction == "expr":
        return [ExprExtractionConfig()]
    return None  # parse()'s default: LaTeX, then expressions


def _has_expression(parsed: list[Any]) -> bool:
    return any(not isinstance(x, str) for x in parsed)


def symbolic_check(task: SymbolicTask) -> str:
    """Run in a worker: ``equal | different | no_gold | no_pred | gold_ok`` for one row.

    ``task`` is ``(reference answers, answer or None, Comparison or float_rounding)``. Sympy
    objects are never turned into strings here: printing a pathological expression can itself
    hang.
    """
    golds, pred, how = task
    cmp = how if isinstance(how, Comparison) else Comparison(float_rounding=how)
    from math_verify import parse, verify

    config = _extraction_config(cmp.extraction)
    kwargs: dict[str, Any] = {"parsing_timeout": None}
    if config is not None:
        kwargs["extraction_config"] = config
    # Expressions are read as written; LaTeX only inside math delimiters.
    wrap = (lambda a: " ".join(a.split())) if cmp.extraction == "expr" else _as_latex
    # parse() falls back to the raw string when it cannot build an expression; a reference that
    # yields nothing but that string cannot be compared, so the row abstains.
    parsed = [p for p in (parse(wrap(g), **kwargs) for g in golds) if _has_expression(p)]
    if not parsed:
        return "no_gold"
    if pred is None:
        return "gold_ok"
    target = parse(wrap(pred), **kwargs)
    if not target:
        return "no_pred"
    for gold in parsed:
        if verify(
            gold,
            target,
            float_rounding=cmp.float_rounding,
            strict=cmp.strict,
            allow_set_relation_comp=cmp.allow_set_relation,
            timeout_seconds=None,
        ):
            return "equal"
    return "different"


def warm_up() -> None:
    """Worker initializer: import math-verify and its LaTeX grammar once, quiet its warnings."""
    import logging

    # With timeouts disabled math-verify warns once per process that the caller must enforce
    # them; the pool does.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # One check of each common kind: sympy builds its simplification machinery on first use
    # (~0.5 s for the first polynomial), which must not count against the first row's deadline.
    for task in _WARM_UP_TASKS:
        symbolic_check(task)


_WARM_UP_TASKS: tuple[SymbolicTask, ...] = (
    (("\\frac{2}{2}",), "1", 6),
    (("x^2+7x+10",), "(x+2)(x+5)", 6),
    (("\\frac{\\sqrt{3}}{2}",), "0.866", 6),
    (("(1,2)",), "[1, 2)", 6),
    (("x > 1",), "x < 1", 6),
)


# --------------------------------------------------------------------------- shared pools

PoolKey = tuple[int, int, int | None]  # (workers, spare_workers, worker_memory_mb)
_POOLS_LOCK = threading.Lock()
_POOLS: dict[PoolKey, list[Any]] = {}  # key -> [pool, users]


def acquire_pool(key: PoolKey) -> TimeoutPool:
    """The shared pool of this shape (started on first use); pair with ``release_pool``."""
    with _POOLS_LOCK:
        entry = _POOLS.get(key)
        if entry is None or entry[0].closed:
            workers, spares, memory_mb = key
            pool = TimeoutPool(
                workers, spares=spares, memory_limit_mb=memory_mb, initializer=warm_up
            )
            _POOLS[key] = [pool, 1]
            return pool
        entry[1] += 1
        return entry[0]


def release_pool(key: PoolKey, pool: TimeoutPool) -> None:
    """Give back one share of ``pool``; the last share closes it."""
    with _POOLS_LOCK:
        entry = _POOLS.get(key)
        if entry is None or entry[0] is not pool:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _POOLS[key]
    pool.close()
