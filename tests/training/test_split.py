"""The grouped train/dev split: no group on both sides, seeded, independent of row order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.errors import InputError, SafeladderWarning
from safeladder.training.common import PointRecord
from safeladder.training.split import Split, check_classes, given_split, grouped_split


def _rows(groups: list[str], labels: list[int] | None = None) -> list[PointRecord]:
    labels = labels or [i % 2 for i in range(len(groups))]
    return [
        PointRecord(row=i + 1, source="f", prompt=g, response=None, label=y, group=g)
        for i, (g, y) in enumerate(zip(groups, labels, strict=True))
    ]


@settings(max_examples=80, deadline=None)
@given(
    groups=st.lists(st.sampled_from("abcdefghijklmnop"), min_size=2, max_size=60).filter(
        lambda g: len(set(g)) >= 2
    ),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 10_000),
)
def test_no_group_on_both_sides_and_every_row_once(
    groups: list[str], fraction: float, seed: int
) -> None:
    rows = _rows(groups)
    s = grouped_split(rows, fraction, seed)
    train_g, dev_g = {r.group for r in s.train}, {r.group for r in s.dev}
    assert not train_g & dev_g
    assert s.train and s.dev
    assert sorted(r.row for r in s.train + s.dev) == list(range(1, len(rows) + 1))
    n = len(set(groups))
    assert s.dev_groups == min(n - 1, max(1, round(fraction * n)))
    assert s.train_groups + s.dev_groups == n
    # Rows keep their input order within a side.
    assert [r.row for r in s.train] == sorted(r.row for r in s.train)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), shuffle_seed=st.integers(0, 1000))
def test_same_seed_same_split_whatever_the_row_order(seed: int, shuffle_seed: int) -> None:
    rows = _rows([f"g{i % 23}" for i in range(100)])
    a = grouped_split(rows, 0.2, seed)
    shuffled = list(rows)
    random.Random(shuffle_seed).shuffle(shuffled)
    b = grouped_split(shuffled, 0.2, seed)
    assert {r.group for r in a.dev} == {r.group for r in b.dev}
    assert [r.row for r in grouped_split(rows, 0.2, seed).dev] == [r.row for r in a.dev]


def test_different_seeds_give_different_splits() -> None:
    rows = _rows([f"g{i}" for i in range(50)])
    devs = {frozenset(r.group for r in grouped_split(rows, 0.2, s).dev) for s in range(5)}
    assert len(devs) > 1


def test_one_group_cannot_be_split() -> None:
    with pytest.raises(InputError, match="at least 2"):
        grouped_split(_rows(["same", "same", "same"]), 0.5, 0)


def test_missing_dev_class_warns() -> None:
    rows = _rows(["a", "b", "c", "d"], [0, 0, 0, 1])
    s = Split(train=rows, dev=rows[:2], train_groups=4, dev_groups=2)
    with pytest.warns(SafeladderWarning, match=r"class\(es\) \['1'\] have no dev rows"):
        notes = check_classes(s, ["0", "1"])
    assert len(notes) == 1


def test_given_split_warns_on_shared_prompts() -> None:
    rows = _rows(["a", "b", "c"])
    with pytest.warns(SafeladderWarning, match="1 of 2 dev groups"):
        given_split(rows[:2], rows[1:])
