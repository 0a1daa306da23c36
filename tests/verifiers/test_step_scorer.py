"""The ``step_scorer`` verifier: splitting, one inner call per batch, aggregation, policies.

The inner verifier is a fixture that reads the score written on each prefix's last line
(``p=0.9``), so every per-step score and aggregate below is computed by hand from the text.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder import ConfigError, Sample, VerifierError
from safeladder.config import validate
from safeladder.verifiers.step_scorer import StepScorerConfig, cap_steps, split_steps
from tests.helpers import assert_batch_equals_rows, assert_in_range_or_nan
from tests.verifiers import step_fixtures

FX = "tests.verifiers.step_fixtures"
P_ROW = {"type": "custom", "target": f"{FX}:last_p", "score_range": [0, 1]}


def p_batch(tag: str) -> dict:
    """The fixture in batch mode, recording calls and prefixes under ``tag``."""
    return {
        "type": "custom",
        "target": f"{FX}:last_p_batch",
        "mode": "batch",
        "kwargs": {"tag": tag},
        "score_range": [0, 1],
    }


def build(**kw):  # type: ignore[no-untyped-def]
    return StepScorerConfig(**{"verifier": P_ROW, **kw}).build()


THREE = "p=0.9\n\np=0.5\n\np=0.8"


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("min", 0.5),
        ("mean", (0.9 + 0.5 + 0.8) / 3),
        ("last", 0.8),
        ("product", 0.9 * 0.5 * 0.8),
    ],
)
def test_aggregates_match_hand_computation(aggregate: str, expected: float) -> None:
    sb = build(aggregate=aggregate).score([Sample(prompt="q", completion=THREE)])
    assert sb.status[0] == "ok"
    assert sb.scores[0] == pytest.approx(expected, abs=1e-6)
    d = sb.details[0]
    assert d["aggregate"] == aggregate and d["n_steps"] == 3 and d["n_scored"] == 3
    assert [(s["start"], s["end"]) for s in d["steps"]] == [(0, 5), (7, 12), (14, 19)]
    assert [s["score"] for s in d["steps"]] == pytest.approx([0.9, 0.5, 0.8], abs=1e-6)
    assert [s["status"] for s in d["steps"]] == ["ok"] * 3


def test_all_prefixes_of_all_rows_go_to_one_inner_call() -> None:
    tag = "one_call"
    v = build(verifier=p_batch(tag))
    rows = [
        Sample(prompt="a", completion=THREE),
        Sample(prompt="b", completion="p=0.1\n\np=0.2"),
        Sample(prompt="c", completion="p=0.3"),
    ]
    sb = v.score(rows)
    assert step_fixtures.CALLS[tag] == 1
    assert step_fixtures.SEEN[tag] == [
        "p=0.9",
        "p=0.9\n\np=0.5",
        THREE,
        "p=0.1",
        "p=0.1\n\np=0.2",
        "p=0.3",
    ]
    assert sb.scores == pytest.approx([0.5, 0.1, 0.3], abs=1e-6)


def test_identical_prefixes_are_scored_once() -> None:
    tag = "dedup"
    v = build(verifier=p_batch(tag))
    same = Sample(prompt="q", completion="p=0.4\n\np=0.6")
    other_prompt = Sample(prompt="different", completion="p=0.4\n\np=0.6")
    sb = v.score([same, same, other_prompt])
    assert step_fixtures.CALLS[tag] == 1
    # the two identical rows share their 2 prefixes; another prompt is another input
    assert len(step_fixtures.SEEN[tag]) == 4
    assert sb.scores == pytest.approx([0.4, 0.4, 0.4], abs=1e-6)


def test_prefixes_keep_the_separators_exactly_as_written() -> None:
    tag = "regex_sep"
    text = "p=0.1\n \n\np=0.2\n\t\np=0.3\n\n"
    v = build(verifier=p_batch(tag), split={"regex": r"\n\s*\n"}, aggregate="last")
    sb = v.score([Sample(completion=text)])
    assert step_fixtures.SEEN[tag] == [
        "p=0.1",
        "p=0.1\n \n\np=0.2",
        "p=0.1\n \n\np=0.2\n\t\np=0.3",  # the trailing separator belongs to no step
    ]
    assert [(s["start"], s["end"]) for s in sb.details[0]["steps"]] == [(0, 5), (9, 14), (17, 22)]
    assert sb.scores[0] == pytest.approx(0.3, abs=1e-6)


def test_zero_width_regex_splits_before_each_match() -> None:
    tag = "lookahead"
    text = "Step 1: p=0.2 Step 2: p=0.4 Step 3: p=0.6"
    v = build(verifier=p_batch(tag), split={"regex": r"(?=Step \d)"}, aggregate="mean")
    sb = v.score([Sample(completion=text)])
    assert step_fixtures.SEEN[tag] == [
        "Step 1: p=0.2 ",
        "Step 1: p=0.2 Step 2: p=0.4 ",
        text,
    ]
    assert sb.scores[0] == pytest.approx((0.2 + 0.4 + 0.6) / 3, abs=1e-6)


def test_blank_pieces_are_not_steps() -> None:
    tag = "blank"
    text = "\n\np=0.7\n\n\n\n  \n\np=0.3\n\n"
    sb = build(verifier=p_batch(tag)).score([Sample(completion=text)])
    assert step_fixtures.SEEN[tag] == ["\n\np=0.7", "\n\np=0.7\n\n\n\n  \n\np=0.3"]
    assert [(s["start"], s["end"]) for s in sb.details[0]["steps"]] == [(2, 7), (15, 20)]
    assert sb.scores[0] == pytest.approx(0.3, abs=1e-6)


def test_max_steps_keeps_the_last_boundaries_and_merges_the_first() -> None:
    tag = "cap"
    text = "p=0.1\n\np=0.2\n\np=0.3\n\np=0.4\n\np=0.5"
    v = build(verifier=p_batch(tag), max_steps=2)
    sb = v.score([Sample(completion=text)])
    assert step_fixtures.SEEN[tag] == ["p=0.1\n\np=0.2\n\np=0.3\n\np=0.4", text]
    d = sb.details[0]
    assert d["n_steps"] == 2 and d["steps_found"] == 5 and d["merged_into_first"] == 4
    assert [(s["start"], s["end"]) for s in d["steps"]] == [(0, 26), (28, 33)]
    assert sb.scores[0] == pytest.approx(0.4, abs=1e-6)  # min(0.4, 0.5)
    # a row within the cap is untouched and says nothing about capping
    short = v.score([Sample(completion="p=0.9\n\np=0.8")]).details[0]
    assert short["n_steps"] == 2 and "steps_found" not in short
    assert cap_steps([(0, 1), (2, 3)], 1) == ([(0, 3)], 2)


MIXED = "p=0.9\n\nno value here\n\np=0.6"


def test_skip_aggregates_over_the_scored_steps() -> None:
    sb = build(aggregate="mean").score([Sample(completion=MIXED)])
    assert sb.status[0] == "ok" and sb.scores[0] == pytest.approx(0.75, abs=1e-6)
    steps = sb.details[0]["steps"]
    assert [s["status"] for s in steps] == ["ok", "abstain", "ok"]
    assert steps[1]["score"] is None and "returned None" in steps[1]["reason"]
    assert sb.details[0]["n_scored"] == 2


def test_abstain_row_takes_the_first_failing_steps_status() -> None:
    v = build(on_step_abstain="abstain_row")
    sb = v.score([Sample(completion=MIXED), Sample(completion="p=0.9\n\np=timeout")])
    assert list(sb.status) == ["abstain", "timeout"] and np.isnan(sb.scores).all()
    assert sb.details[0]["reason"].startswith("step 1 has status 'abstain'")
    assert "fixture timeout" in sb.details[1]["reason"]
    assert sb.details[0]["steps"][0]["score"] == pytest.approx(0.9, abs=1e-6)


def test_no_scored_step_and_no_step_abstain_with_a_reason() -> None:
    v = build()
    sb = v.score(
        [
            Sample(completion="a\n\nb"),
            Sample(completion="p=timeout"),
            Sample(completion=""),
            Sample(completion=" \n\n \n"),
        ]
    )
    assert list(sb.status) == ["abstain", "timeout", "abstain", "abstain"]
    assert np.isnan(sb.scores).all()
    assert sb.details[0]["reason"].startswith("no step was scored")
    assert "empty" in sb.details[2]["reason"] and "empty" in sb.details[3]["reason"]


def test_regex_timeout_is_a_timeout_status() -> None:
    # (\w|\w\w)*\d backtracks exponentially on a long run of letters with no digit.
    v = build(split={"regex": r"(\w|\w\w)*\d", "timeout_s": 0.05})
    sb = v.score([Sample(completion="a" * 60), Sample(completion="p=0.5")])
    assert list(sb.status) == ["timeout", "ok"]
    assert "split.timeout_s=0.05" in sb.details[0]["reason"]


def test_inner_rule_verifier_per_step_scores() -> None:
    # length budget in chars, T = 10: score = -min(1, |n - 10| / 10)
    inner = {"type": "length", "mode": "budget", "unit": "chars", "target_length": 10}
    v = StepScorerConfig(verifier=inner, aggregate="mean").build()
    assert v.score_range == (-1.0, 0.0)
    sb = v.score([Sample(completion="abcde\n\nabcdefghij")])  # prefixes of 5 and 17 chars
    assert [s["score"] for s in sb.details[0]["steps"]] == pytest.approx([-0.5, -0.7], abs=1e-6)
    assert sb.scores[0] == pytest.approx(-0.6, abs=1e-6)


def test_batch_equals_row_by_row_and_in_range() -> None:
    rows = [
        Sample(prompt="q", completion=THREE),
        Sample(completion=MIXED),
        Sample(completion=""),
        Sample(completion="p=0.9\n\np=timeout"),
        Sample(prompt=[{"role": "user", "content": "hi"}], completion="p=0.25"),
        Sample(completion="Step 1: p=0.2\n\nStep 2: p=1.0", meta={"k": 1}),
    ]
    for kw in ({}, {"aggregate": "product"}, {"on_step_abstain": "abstain_row", "max_steps": 1}):
        v = build(**kw)
        sb = assert_batch_equals_rows(v, rows)
        assert_in_range_or_nan(v, sb)


def test_score_steps_returns_per_row_arrays() -> None:
    v = build()
    out = v.score_steps([Sample(completion=THREE), Sample(completion=MIXED), Sample(completion="")])
    assert [a.dtype for a in out] == [np.float32] * 3
    np.testing.assert_allclose(out[0], [0.9, 0.5, 0.8], atol=1e-6)
    assert out[1][0] == pytest.approx(0.9) and math.isnan(out[1][1])
    assert out[2].shape == (0,)


def test_empty_batch_makes_no_inner_call() -> None:
    tag = "empty"
    assert len(build(verifier=p_batch(tag)).score([])) == 0
    assert step_fixtures.CALLS[tag] == 0


def test_inner_failure_raises_or_marks_rows_per_on_error() -> None:
    rows = [Sample(completion="p=0.5\n\np=boom"), Sample(completion="p=0.4")]
    with pytest.raises(VerifierError, match="fixture failure"):
        build().score(rows)
    # the inner verifier tolerates its failure: the step is 'error', skipped by the aggregate
    sb = build(verifier={**P_ROW, "on_error": "abstain"}).score(rows)
    assert list(sb.status) == ["ok", "ok"] and sb.scores == pytest.approx([0.5, 0.4])
    assert sb.details[0]["steps"][1]["status"] == "error"
    # the step scorer tolerates an inner batch that raised: every row is an error with the reason
    batch_inner = {**p_batch("boom"), "on_error": "raise"}
    sb = build(verifier=batch_inner, on_error="abstain").score(rows)
    assert list(sb.status) == ["error", "error"]
    assert "fixture failure" in sb.details[0]["steps"][0]["reason"]


def test_product_needs_an_inner_range_inside_unit_interval() -> None:
    with pytest.raises(ConfigError, match=r"aggregate: 'product'.*\[-1.0, 0.0\]"):
        StepScorerConfig(
            verifier={"type": "length", "mode": "budget", "target_length": 5}, aggregate="product"
        ).build()
    with pytest.raises(ConfigError, match=r"\[-inf, inf\]"):
        build(verifier={**P_ROW, "score_range": None}, aggregate="product")
    assert build(aggregate="product").score_range == (0.0, 1.0)
    unbounded = build(verifier={**P_ROW, "score_range": [-3, 2]}, aggregate="min")
    assert unbounded.score_range == (-3.0, 2.0)


def test_inner_config_errors_fail_at_config_time_naming_the_key() -> None:
    with pytest.raises(
        ConfigError,
        match="verifier: the inner verifier config is invalid: .*bogus_key: unknown key",
    ):
        validate(StepScorerConfig, {"type": "step_scorer", "verifier": {**P_ROW, "bogus_key": 1}})
    with pytest.raises(ConfigError, match="verifier: .*unknown verifier type 'nope'"):
        validate(StepScorerConfig, {"verifier": {"type": "nope"}})
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        validate(StepScorerConfig, {"verifier": P_ROW, "bogus": 1})


@pytest.mark.parametrize(
    ("split", "match"),
    [
        ({"separator": "\n", "regex": "x"}, "split: set one of separator and regex"),
        ({"separator": ""}, "split: separator is empty"),
        ({"regex": "(unclosed"}, "split: regex '\\(unclosed' is not a valid pattern"),
        ({"regex": r"\s*"}, "matches the empty string inside plain text"),
    ],
)
def test_bad_split_configs(split: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(StepScorerConfig, {"verifier": P_ROW, "split": split})


def test_inner_that_reads_context_is_refused() -> None:
    inner = {
        "type": "custom",
        "target": "tests.rewards.fixture_verifiers:CopyTimesTwo",
        "kwargs": {"needs": "acc"},
    }
    with pytest.raises(ConfigError, match="reads other reward terms \\['acc'\\]"):
        StepScorerConfig(verifier=inner).build()


def test_fingerprint_follows_the_inner_config() -> None:
    a, b = build(), build()
    c = build(verifier={**P_ROW, "score_range": [0, 2]})
    assert a.fingerprint == b.fingerprint != c.fingerprint


_TEXT = st.lists(
    st.sampled_from(["a", "b c", "p=0.5", "\n", "\n\n", " ", "\t", "Step 1:"]), max_size=30
).map("".join)


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_split_agrees_with_str_split_and_re_split(text: str) -> None:
    spans = split_steps(text, "\n\n")
    assert [text[a:b] for a, b in spans] == [p for p in text.split("\n\n") if p.strip()]
    spans_re = split_steps(text, None, r"\n[ \t]*\n", timeout_s=1.0)
    assert [text[a:b] for a, b in spans_re] == [
        p for p in re.split(r"\n[ \t]*\n", text) if p.strip()
    ]
    for (a, b), (c, _) in itertools.pairwise(spans):
        assert a < b <= c
