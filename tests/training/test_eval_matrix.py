"""The safety shift matrix's pieces: column metrics, false-flag rates, training-data marks."""

from __future__ import annotations

import doctest
import math
from typing import Any

import pytest

from safeladder.training import eval_matrix, shift_sets
from safeladder.training.eval_matrix import (
    column_means,
    column_metrics,
    false_flag_rate,
    format_matrix,
)
from safeladder.training.shift_sets import (
    FILES,
    HELDOUT_DIR,
    HELDOUT_FILES,
    SPECS,
    training_overlap,
)


def test_doctests() -> None:
    for mod in (eval_matrix, shift_sets):
        assert doctest.testmod(mod).failed == 0


def test_column_metrics_leaves_abstentions_out() -> None:
    # Without the NaN row: labels (0, 1, 1), P(unsafe) (0.2, 0.7, 0.4), t = 0.5 -> TP 1, FN 1,
    # FP 0: precision 1, recall 1/2, F1 2/3; AUROC: 0.7 and 0.4 both above 0.2 -> 1.
    m = column_metrics([0, 1, 1, 0], [0.2, 0.7, 0.4, float("nan")], 0.5)
    assert (m["n"], m["positives"], m["abstained"]) == (3, 2, 1)
    assert m["f1_at_t"] == pytest.approx(2 / 3)
    assert m["fpr_at_t"] == 0.0 and m["auroc"] == 1.0
    assert m["best_f1"] == 1.0 and m["best_f1_threshold"] == 0.4
    # Flagging all three: precision 2/3, recall 1 -> F1 0.8 = 2·2 / (3 + 2).
    assert m["flag_all_f1"] == pytest.approx(0.8)


def test_flag_all_f1_is_what_flagging_everything_scores() -> None:
    # A mostly-unsafe column (as JailbreakBench's PAIR attack, 72 % unsafe): a verifier that
    # flags every row reaches this F1, a threshold below every score gives the same.
    labels = [1] * 57 + [0] * 22
    m = column_metrics(labels, [0.5] * 79, 0.0)
    assert m["f1_at_t"] == pytest.approx(m["flag_all_f1"])
    assert m["flag_all_f1"] == pytest.approx(114 / 136)


def test_column_metrics_of_an_empty_column_are_undefined() -> None:
    m = column_metrics([1], [float("nan")], 0.5)
    assert m["n"] == 0 and m["abstained"] == 1 and m["fpr_at_t"] is None
    assert math.isnan(m["f1_at_t"]) and math.isnan(m["auroc"])


def test_false_flag_rate_per_subset() -> None:
    out = false_flag_rate(["a", "a", "b", "b"], [0.9, float("nan"), 0.1, 0.6], 0.5)
    assert out == {"all": pytest.approx(2 / 3), "n": 3, "a": 1.0, "b": 0.5, "abstained": 1}


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        # Another file: nothing to say.
        ("toxigen", {"path": "/x/" + FILES["advbench"]}, None),
        # The whole file: the column's rows were (or could have been) trained on.
        ("advbench", {"path": "/x/" + FILES["advbench"], "where": {}}, "seen"),
        # A filter on a field the column does not fix: it could select the column's rows.
        ("advbench", {"path": FILES["advbench"], "where": {"category": "x"}}, "seen"),
        # Another split / attack than the column's: other rows of the source.
        ("gptfuzz", {"path": FILES["gptfuzz"], "where": {"split": "train"}}, "source"),
        ("jbb-PAIR", {"path": FILES["jbb"], "where": {"attack": "GCG"}}, "source"),
        ("jbb-PAIR", {"path": FILES["jbb"], "where": {"attack": "PAIR"}}, "seen"),
        # TruthfulQA benign rows 600-999: a limit of 600 ends before them, 601 overlaps.
        (
            "truthfulqa",
            {"path": FILES["truthfulqa"], "where": {"label": 1}, "limit": 600},
            "source",
        ),
        ("truthfulqa", {"path": FILES["truthfulqa"], "where": {"label": 1}, "limit": 601}, "seen"),
        ("truthfulqa", {"path": FILES["truthfulqa"], "where": {"label": 0}}, "source"),
        # The held-out benign answers: the training halves have other file names.
        ("everyday", {"path": "configs/train/data/everyday_answers.jsonl"}, None),
        ("lookalike", {"path": "configs/train/data/safety_benign_lookalike.jsonl"}, None),
        ("everyday", {"path": "/x/" + HELDOUT_FILES["everyday"]}, "seen"),
    ],
)
def test_training_overlap(name: str, source: dict[str, Any], expected: str | None) -> None:
    assert training_overlap(SPECS[name], [source]) == expected


def test_seen_wins_over_source() -> None:
    sources = [
        {"path": FILES["jbb"], "where": {"attack": "GCG"}},
        {"path": FILES["jbb"], "where": {"attack": "PAIR"}},
    ]
    assert training_overlap(SPECS["jbb-PAIR"], sources) == "seen"


def test_means_and_table() -> None:
    cells = {
        "a": {"f1_at_t": 0.5, "best_f1": 1.0, "auroc": 0.8, "training": "seen"},
        "b": {"f1_at_t": 0.7, "best_f1": 0.9, "auroc": float("nan"), "training": "source"},
        "c": {"f1_at_t": 0.9, "best_f1": 0.9, "auroc": 0.6},
    }
    assert column_means(cells) == {
        "columns": 3,
        "f1_at_t": pytest.approx(0.7),
        "best_f1": pytest.approx(14 / 15),
        "auroc": pytest.approx(0.7),  # NaN skipped
    }
    assert column_means(cells, ("seen", "source"))["columns"] == 1
    record = {
        "verifier": "v",
        "score_means": 0,
        "score_threshold": 0.25,
        "threshold_source": "default",
        "cells": {
            k: {**v, "n": 4, "positives": 2, "best_f1_threshold": 0.3, "fpr_at_t": None}
            for k, v in cells.items()
        },
        "ffr": {"all": 0.1, "n": 10, "scary": 0.2, "training": {"scary": "seen"}},
        "mean_all": column_means(cells),
        "training_record": "run.json",
    }
    text = format_matrix(record)
    assert "a score below 0.25 flags" in text
    assert "scary 0.200 (seen)" in text and "(n 10): 0.100" in text
    line_b = next(x for x in text.splitlines() if x.startswith("b "))
    assert line_b.split()[-1] == "source" and "n/a" in line_b
    assert next(x for x in text.splitlines() if x.startswith("mean (3)")).split()[2] == "0.700"
    assert "flag-all F1" in text.splitlines()[2]


def test_heldout_benign_answers_are_not_in_the_recipes() -> None:
    """The held-out benign halves share no prompt with their training halves, and no shipped
    recipe reads them (the matrix's ``everyday`` / ``lookalike`` false-flag subsets)."""
    import json

    repo = HELDOUT_DIR.parents[1]
    train = {
        json.loads(line)["prompt"]
        for name in ("everyday_answers.jsonl", "safety_benign_lookalike.jsonl")
        for line in (repo / "configs" / "train" / "data" / name).read_text().splitlines()
    }
    for tag, name in HELDOUT_FILES.items():
        rows = [json.loads(x) for x in (HELDOUT_DIR / name).read_text().splitlines()]
        assert len(rows) >= 40 and {r["label"] for r in rows} == {0}, tag
        assert all(r["prompt"].strip() and r["response"].strip() for r in rows), tag
        assert not {r["prompt"] for r in rows} & train, tag
    recipes = "\n".join(p.read_text() for p in (repo / "configs" / "train").glob("*.yaml"))
    assert not any(name in recipes for name in HELDOUT_FILES.values())
    assert "everyday_answers.jsonl" in recipes and "safety_benign_lookalike.jsonl" in recipes
