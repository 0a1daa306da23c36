"""The summary of a scored file, computed by streaming over it (constant memory).

It reads the columns ``safeladder score`` writes (``reward``, ``reward/<term>``,
``status/<term>``, ``gated``) from the output file, so after a resumed run it still describes
the whole file, not just the last run. Means and standard deviations are over ``ok`` rows
(population std, ddof=0, as numpy's default); rates are over the rows a term was routed to
(status not ``skipped``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunningStats:
    """Mean and population std in one pass (Welford's algorithm: stable for long runs).

    >>> s = RunningStats()
    >>> for x in (1.0, 2.0, 3.0, 4.0):
    ...     s.add(x)
    >>> s.count, s.mean, round(s.std, 6)
    (4, 2.5, 1.118034)
    """

    count: int = 0
    mean: float = 0.0
    _m2: float = 0.0

    def add(self, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / self.count) if self.count else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean if self.count else None,
            "std": self.std if self.count else None,
        }


@dataclass
class _TermTally:
    stats: RunningStats = field(default_factory=RunningStats)
    statuses: dict[str, int] = field(default_factory=dict)


def _rate(n: int, d: int) -> float | None:
    return n / d if d else None


def summarize_output(
    output: Path,
    errors: Path,
    term_names: Sequence[str],
    weights: dict[str, float],
    *,
    prefix: str = "reward",
) -> dict[str, Any]:
    """Statistics of the scored rows in ``output`` and the bad rows in ``errors``.

    Returns:
        ``{"rows_scored", "bad_rows", "first_errors" (up to 3 ``{line, error}``),
        "gated_rows", "unscorable_rows", "reference_unread_rows", "images_unread_rows", "total": {count, mean, std},
        "terms": {name: {weight, count, mean, std, routed_rows, abstain_rate, timeout_rate,
        error_rate, skipped_rows}}}``; a mean / std / rate with nothing to average over is None.
    """
    total = RunningStats()
    tallies = {t: _TermTally() for t in term_names}
    rows = gated = unscorable = unread = images_unread = 0
    if output.exists():
        with open(output, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                rows += 1
                value = rec.get(prefix)
                if value is None:
                    unscorable += 1
                else:
                    total.add(float(value))
                if rec.get("gated"):
                    gated += 1
                if rec.get("reference_unread"):
                    unread += 1
                if rec.get("images_unread"):
                    images_unread += 1
                for t, tally in tallies.items():
                    status = str(rec.get(f"status/{t}", "missing"))
                    tally.statuses[status] = tally.statuses.get(status, 0) + 1
                    score = rec.get(f"{prefix}/{t}")
                    if status == "ok" and score is not None:
                        tally.stats.add(float(score))
    bad = 0
    first_errors: list[dict[str, Any]] = []
    if errors.exists():
        with open(errors, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                bad += 1
                if len(first_errors) < 3:
                    err = json.loads(line)
                    first_errors.append({"line": err.get("line"), "error": err.get("error")})

    terms: dict[str, Any] = {}
    for t, tally in tallies.items():
        routed = rows - tally.statuses.get("skipped", 0)
        terms[t] = {
            "weight": weights.get(t),
            **tally.stats.as_dict(),
            "routed_rows": routed,
            "abstain_rate": _rate(tally.statuses.get("abstain", 0), routed),
            "timeout_rate": _rate(tally.statuses.get("timeout", 0), routed),
            "error_rate": _rate(tally.statuses.get("error", 0), routed),
            "skipped_rows": tally.statuses.get("skipped", 0),
        }
    return {
        "rows_scored": rows,
        "bad_rows": bad,
        "first_errors": first_errors,
        "gated_rows": gated,
        "unscorable_rows": unscorable,
        "reference_unread_rows": unread,
        "images_unread_rows": images_unread,
        "total": total.as_dict(),
        "terms": terms,
    }


def _num(x: Any, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table: one line per term (``rows``: rows routed to it; mean
    and std over its ``ok`` rows), the total reward (``rows``: rows with a total), then counts."""
    head = ("term", "weight", "rows", "mean", "std", "abstain", "timeout", "error")
    table: list[tuple[str, ...]] = [head]
    for name, t in summary["terms"].items():
        weight = t.get("weight")
        table.append(
            (
                name,
                "-" if weight is None else f"{weight:g}",
                str(t["routed_rows"]),
                _num(t["mean"]),
                _num(t["std"]),
                _pct(t["abstain_rate"]),
                _pct(t["timeout_rate"]),
                _pct(t["error_rate"]),
            )
        )
    tot = summary["total"]
    table.append(
        ("(total)", "", str(tot["count"]), _num(tot["mean"]), _num(tot["std"]), "", "", "")
    )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    rate = summary.get("throughput_rows_per_s")
    lines.append(
        f"rows scored: {summary['rows_scored']}  bad rows: {summary['bad_rows']}  "
        f"gated rows: {summary['gated_rows']}  unscorable rows: {summary['unscorable_rows']}  "
        f"throughput: {_num(rate, '.1f')} rows/s  wall time: {_num(summary.get('wall_time_s'), '.2f')} s"
    )
    if summary.get("reference_unread_rows"):
        lines.append(
            f"warning: {summary['reference_unread_rows']} scored rows carry a reference that no "
            "term read (reference_unread in the output): check the reward's routes"
        )
    if summary.get("images_unread_rows"):
        lines.append(
            f"warning: {summary['images_unread_rows']} scored rows carry images that no term "
            "looked at (images_unread in the output): add a term that reads images "
            "(routes.with_images)"
        )
    if summary.get("output"):
        lines.append(f"output: {summary['output']}")
    if summary.get("bad_rows") and summary.get("errors_file"):
        lines.append(f"bad rows: {summary['errors_file']} (line, error, raw)")
    return "\n".join(lines)


__all__ = ["RunningStats", "format_summary", "summarize_output"]
