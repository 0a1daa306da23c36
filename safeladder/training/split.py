"""Seeded train/dev split by group: every row of a group lands on the same side.

Rows that share a prompt (several responses to one question, a pair's two replies, augmented
copies) are near-duplicates for a verifier; splitting them across train and dev would leak the
answer into the dev metric. So the unit of the split is the group (``PointRecord.group`` /
``PairRecord.group``: the normalised prompt, or ``fields.group``), not the row.

The split depends only on the set of groups and the seed, never on row order: the distinct
groups are sorted, shuffled with ``random.Random(seed)`` and the first
``round(dev_fraction * n_groups)`` (at least 1, at most n_groups - 1) go to dev. Rows keep their
input order within each side.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safeladder.errors import InputError, SafeladderWarning
from safeladder.training.common import PointRecord, Record


@dataclass
class Split:
    """``train`` and ``dev`` rows, and how many groups each side holds."""

    train: list[Any]
    dev: list[Any]
    train_groups: int
    dev_groups: int

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "dev": len(self.dev),
            "train_groups": self.train_groups,
            "dev_groups": self.dev_groups,
        }


def grouped_split(records: Sequence[Record], dev_fraction: float, seed: int) -> Split:
    """Split ``records`` into train and dev by group.

    Args:
        records: rows with a ``group`` each.
        dev_fraction: share of the groups (not rows) held out, in (0, 1).
        seed: the shuffle seed; the same (groups, fraction, seed) give the same split.

    Raises:
        InputError: fewer than 2 distinct groups (no split keeps both sides non-empty).

    >>> rows = [PointRecord(i, "f", p, None, i % 2, group=p) for i, p in enumerate("aabbcd")]
    >>> s = grouped_split(rows, 0.25, seed=0)
    >>> sorted({r.group for r in s.train} & {r.group for r in s.dev})
    []
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
    groups = sorted({r.group for r in records})
    if len(groups) < 2:
        raise InputError(
            f"the training data has {len(groups)} distinct group(s) (prompts); a grouped "
            "train/dev split needs at least 2 (add data, or give data.dev sources)"
        )
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_dev = min(len(groups) - 1, max(1, round(dev_fraction * len(groups))))
    dev_groups = set(groups[:n_dev])
    train = [r for r in records if r.group not in dev_groups]
    dev = [r for r in records if r.group in dev_groups]
    return Split(train, dev, len(groups) - n_dev, n_dev)


def given_split(train: Sequence[Record], dev: Sequence[Record]) -> Split:
    """Train and dev sources given separately; warns when groups appear on both sides."""
    if not train or not dev:
        raise InputError(f"empty split: {len(train)} train rows, {len(dev)} dev rows")
    tg, dg = {r.group for r in train}, {r.group for r in dev}
    shared = tg & dg
    if shared:
        example = next(iter(sorted(shared)))
        warnings.warn(
            f"{len(shared)} of {len(dg)} dev groups (prompts) also occur in train, e.g. "
            f"{example[:60]!r}; dev metrics may be optimistic",
            SafeladderWarning,
            stacklevel=2,
        )
    return Split(list(train), list(dev), len(tg), len(dg))


def check_classes(split: Split, labels: Sequence[str]) -> list[str]:
    """Warn (and return the messages) when a single-label class is missing from a side."""
    notes: list[str] = []
    for side in ("train", "dev"):
        rows = getattr(split, side)
        if not rows or not isinstance(rows[0], PointRecord) or isinstance(rows[0].label, tuple):
            continue
        present = {r.label for r in rows}
        missing = [name for j, name in enumerate(labels) if j not in present]
        if missing:
            msg = f"class(es) {missing} have no {side} rows; " + (
                "dev metrics for them are undefined (raise data.dev_fraction or change "
                "data.split_seed)"
                if side == "dev"
                else "the model cannot learn them"
            )
            warnings.warn(msg, SafeladderWarning, stacklevel=2)
            notes.append(msg)
    return notes


__all__ = ["Split", "check_classes", "given_split", "grouped_split"]
