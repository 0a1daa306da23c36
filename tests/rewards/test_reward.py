"""Reward composition rules, each with hand-computed expectations.

Every verifier here is ``fixture_verifiers.meta_score``: the score of a row is whatever the test
writes into ``meta``, so the expected totals below follow from the rules alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder import ConfigError, InputError, Sample, load_reward
from safeladder.rewards import Reward, RewardConfig, parse_reward_config
from tests.rewards import fixture_verifiers as fx

NAN = float("nan")
FX = "tests.rewards.fixture_verifiers"


def term(name: str, key: str | None = None, weight: float = 1.0, tag: str = "", **extra):  # type: ignore[no-untyped-def]
    kwargs = {"key": key or name}
    if tag:
        kwargs["tag"] = tag
    return {
        "name": name,
        "verifier": {"type": "custom", "target": f"{FX}:meta_score", "kwargs": kwargs},
        "weight": weight,
        **extra,
    }


def rows(**columns):  # type: ignore[no-untyped-def]
    """rows(a=[1, 2], task=["x", "y"]) → two Samples whose meta holds those values (None = absent)."""
    n = len(next(iter(columns.values())))
    out = []
    for i in range(n):
        meta = {k: v[i] for k, v in columns.items() if v[i] is not None}
        out.append(Sample(prompt=f"p{i}", completion=f"c{i}", meta=meta))
    return out


def assert_close(actual, expected):  # type: ignore[no-untyped-def]
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if math.isnan(e):
            assert math.isnan(a), (i, a)
        else:
            assert a == pytest.approx(e, abs=1e-5), (i, a, e)


def test_weighted_sum_skips_abstentions_and_metric_terms() -> None:
    # total = 1·a + 0.5·b ; c has weight 0 (logged only); NaN terms are left out of the sum;
    # a row where no objective term scored is NaN (unscorable), never 0.
    reward = load_reward({"terms": [term("a"), term("b", weight=0.5), term("c", weight=0.0)]})
    res = reward.score(
        rows(a=[1.0, 0.0, None, None], b=[2.0, None, 4.0, None], c=[5.0, 5.0, 5.0, 5.0])
    )
    assert_close(res.total, [1 + 0.5 * 2, 0.0, 0.5 * 4, NAN])
    assert res.total.dtype == np.float32
    assert list(res.terms["a"].status) == ["ok", "ok", "abstain", "abstain"]
    assert_close(res.terms["c"].scores, [5, 5, 5, 5])
    assert res.weights == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert not res.gated.any()


def test_negative_weights_penalise() -> None:
    reward = load_reward({"terms": [term("good"), term("refused", weight=-0.5)]})
    res = reward.score(rows(good=[1.0, 1.0], refused=[0.0, 1.0]))
    assert_close(res.total, [1.0, 0.5])


def test_gate_vetoes_below_threshold_and_on_abstain() -> None:
    # safe < 0.5 → total := -1 ; safe abstains → veto (default on_abstain) ; otherwise Σ w·s.
    cfg = {
        "terms": [
            term("ans"),
            term("safe", weight=0.0, gate={"below": 0.5, "value": -1.0}),
        ]
    }
    res = load_reward(cfg).score(rows(ans=[1.0, 1.0, 1.0, 0.0], safe=[0.9, 0.1, None, 0.5]))
    assert_close(res.total, [1.0, -1.0, -1.0, 0.0])  # 0.5 is not below 0.5
    assert res.gated.tolist() == [False, True, True, False]
    assert res.gate_by == [None, "safe", "safe", None]

    cfg["terms"][1]["gate"]["on_abstain"] = "pass"
    res = load_reward(cfg).score(rows(ans=[1.0, 1.0, 1.0, 0.0], safe=[0.9, 0.1, None, 0.5]))
    assert_close(res.total, [1.0, -1.0, 1.0, 0.0])
    assert res.gated.tolist() == [False, True, False, False]


def test_gate_applies_even_when_no_objective_term_scored() -> None:
    res = load_reward(
        {"terms": [term("ans"), term("safe", weight=0, gate={"below": 0.5, "value": -2})]}
    ).score(rows(ans=[None, None], safe=[0.0, 1.0]))
    assert_close(res.total, [-2.0, NAN])


def test_first_gate_in_term_order_wins() -> None:
    cfg = {
        "terms": [
            term("ans"),
            term("g1", weight=0, gate={"below": 0.5, "value": -1.0}),
            term("g2", weight=0, gate={"below": 0.5, "value": -3.0}),
        ]
    }
    res = load_reward(cfg).score(rows(ans=[1.0, 1.0, 1.0], g1=[0.0, 1.0, 0.0], g2=[0.0, 0.0, 1.0]))
    assert_close(res.total, [-1.0, -3.0, -1.0])
    assert res.gate_by == ["g1", "g2", "g1"]


def test_routes_run_each_verifier_once_on_its_rows_only() -> None:
    fx.ROWS_SEEN.clear()
    cfg = {
        "terms": [
            term("math", tag="math"),
            term("safety", tag="safety", weight=2.0),
            term("fmt", tag="fmt", weight=0.5),
        ],
        "routes": {"key": "task", "recipes": {"math": ["math", "fmt"], "safety": ["safety"]}},
    }
    res = load_reward(cfg).score(
        rows(
            task=["math", "safety", "math", "safety", "math"],
            math=[1.0, 1.0, 0.0, 1.0, 1.0],
            safety=[0.0, 0.5, 0.0, 1.0, 0.0],
            fmt=[1.0, 1.0, 0.0, 1.0, 1.0],
        )
    )
    # math rows: 1·math + 0.5·fmt ; safety rows: 2·safety ; other terms are skipped there.
    assert_close(res.total, [1.5, 1.0, 0.0, 2.0, 1.5])
    assert res.route == ["math", "safety", "math", "safety", "math"]
    assert list(res.terms["math"].status) == ["ok", "skipped", "ok", "skipped", "ok"]
    assert math.isnan(res.terms["safety"].scores[0])
    assert fx.ROWS_SEEN == {"math": 3, "fmt": 3, "safety": 2}
    records = res.to_records()
    assert records[1] == {
        "reward": 1.0,
        "reward/math": None,
        "reward/safety": 0.5,
        "reward/fmt": None,
        "status/math": "skipped",
        "status/safety": "ok",
        "status/fmt": "skipped",
        "gated": False,
        "route": "safety",
    }


def test_route_default_and_unknown_route_error() -> None:
    cfg = {
        "terms": [term("a"), term("b")],
        "routes": {"key": "task", "recipes": {"x": ["a"], "y": ["b"]}, "default": "y"},
    }
    res = load_reward(cfg).score(
        rows(task=["x", "zzz", None], a=[1.0, 1.0, 1.0], b=[3.0, 3.0, 3.0])
    )
    assert_close(res.total, [1.0, 3.0, 3.0])
    assert res.route == ["x", "y", "y"]
    del cfg["routes"]["default"]  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"row 1: meta\['task'\] = 'zzz' names no recipe"):
        load_reward(cfg).score(rows(task=["x", "zzz"], a=[1.0, 1.0], b=[3.0, 3.0]))


def test_identical_verifier_configs_share_one_run() -> None:
    fx.CALLS.clear()
    batch_verifier = {
        "type": "custom",
        "target": f"{FX}:meta_batch",
        "mode": "batch",
        "kwargs": {"key": "s", "tag": "shared"},
    }
    cfg = {
        "terms": [
            {"name": "raw", "verifier": batch_verifier, "weight": 1.0},
            {
                "name": "ranked",
                "verifier": {**batch_verifier, "name": "other display name"},
                "weight": 0.0,
                "normalize": "rank",
            },
        ]
    }
    reward = load_reward(cfg)
    res = reward.score(rows(s=[3.0, 1.0, 2.0]))
    assert fx.CALLS["shared"] == 1
    assert reward.verifier("raw") is reward.verifier("ranked")
    assert_close(res.terms["raw"].scores, [3, 1, 2])
    assert_close(res.terms["ranked"].scores, [1.0, 0.0, 0.5])


def test_term_reads_another_terms_raw_score_even_off_its_route() -> None:
    # 'calib' needs 'correct'; 'correct' is in no recipe with calib's rows, yet must be computed
    # there (as a dependency) while staying 'skipped' in the output and out of the total.
    fx.ROWS_SEEN.clear()
    cfg = {
        "terms": [
            term("correct", tag="correct"),
            {
                "name": "calib",
                "verifier": {
                    "type": "custom",
                    "target": f"{FX}:CopyTimesTwo",
                    "kwargs": {"needs": "correct"},
                },
            },
        ],
        "routes": {"key": "task", "recipes": {"a": ["correct"], "b": ["calib"]}},
    }
    res = load_reward(cfg).score(rows(task=["a", "b", "b"], correct=[1.0, 0.25, None]))
    assert_close(res.terms["calib"].scores, [NAN, 0.5, NAN])
    assert list(res.terms["calib"].status) == ["skipped", "ok", "abstain"]
    assert list(res.terms["correct"].status) == ["ok", "skipped", "skipped"]
    assert_close(res.total, [1.0, 0.5, NAN])
    assert fx.ROWS_SEEN["correct"] == 3


def test_dependency_errors_name_the_term() -> None:
    bad = {
        "terms": [
            {
                "name": "calib",
                "verifier": {
                    "type": "custom",
                    "target": f"{FX}:CopyTimesTwo",
                    "kwargs": {"needs": "nope"},
                },
            }
        ]
    }
    with pytest.raises(ConfigError, match="term 'calib'.*'nope'"):
        load_reward(bad)
    cycle = {
        "terms": [
            {
                "name": "x",
                "verifier": {
                    "type": "custom",
                    "target": f"{FX}:CopyTimesTwo",
                    "kwargs": {"needs": "y"},
                },
            },
            {
                "name": "y",
                "verifier": {
                    "type": "custom",
                    "target": f"{FX}:CopyTimesTwo",
                    "kwargs": {"needs": "x"},
                },
            },
        ]
    }
    with pytest.raises(ConfigError, match="cycle: x -> y -> x"):
        load_reward(cycle)


def test_batch_zscore_and_clip() -> None:
    # scores 1, 2, 3 (NaN left out): mean 2, population std sqrt(2/3) = 0.8165 → ±1.2247; clip to ±1.
    cfg = {
        "terms": [
            term("a", normalize="batch_zscore"),
            term("b", weight=0.0, normalize="batch_zscore", clip=[-1, 1]),
        ]
    }
    res = load_reward(cfg).score(rows(a=[1.0, 2.0, 3.0, None], b=[1.0, 2.0, 3.0, None]))
    assert_close(res.terms["a"].scores, [-1.224745, 0.0, 1.224745, NAN])
    assert_close(res.terms["b"].scores, [-1.0, 0.0, 1.0, NAN])
    assert_close(res.total, [-1.224745, 0.0, 1.224745, NAN])
    # raw keeps the verifier's own scores
    assert_close(res.raw["a"].scores, [1.0, 2.0, 3.0, NAN])


def test_group_zscore_per_group_and_constant_group_is_zero() -> None:
    # group p1: 0, 1 → mean .5, std .5 → -1, +1 ; group p2: 1, 1 → constant → 0, 0 ; p3 alone → 0.
    cfg = {"terms": [term("a", normalize="group_zscore", group_key="pid")]}
    res = load_reward(cfg).score(
        rows(a=[0.0, 1.0, 1.0, 1.0, 0.7], pid=["p1", "p1", "p2", "p2", "p3"])
    )
    assert_close(res.total, [-1.0, 1.0, 0.0, 0.0, 0.0])
    strict = {
        "terms": [term("a", normalize="group_zscore", group_key="pid", group_fallback="error")]
    }
    with pytest.raises(
        InputError,
        match=r"row 1: term 'a' normalizes by group but the row has no 'pid' field; add it, "
        r"or --set terms.0.group_fallback=prompt .* or --set terms.0.normalize=none",
    ):
        load_reward(strict).score(rows(a=[0.0, 1.0], pid=["p1", None]))


def test_rank_normalization_with_ties() -> None:
    # values 10, 30, 20, 20 → ranks 0, 3, 1.5, 1.5 → /3
    res = load_reward({"terms": [term("a", normalize="rank")]}).score(
        rows(a=[10.0, 30.0, 20.0, 20.0])
    )
    assert_close(res.total, [0.0, 1.0, 0.5, 0.5])


def test_normalization_only_over_routed_rows() -> None:
    cfg = {
        "terms": [term("a", normalize="batch_zscore"), term("b")],
        "routes": {"key": "task", "recipes": {"x": ["a"], "y": ["b"]}},
    }
    # a applies to rows 0 and 2 only: 0 and 4 → -1, +1 (row 1's 100 must not shift the mean).
    res = load_reward(cfg).score(rows(task=["x", "y", "x"], a=[0.0, 100.0, 4.0], b=[0.0, 7.0, 0.0]))
    assert_close(res.total, [-1.0, 7.0, 1.0])


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"terms": [term("a"), term("a")]}, "duplicate term names"),
        ({"terms": [term("a", weight=0.0)]}, "at least one objective term"),
        (
            {"terms": [term("a", normalize="group_zscore")]},
            "terms.0: normalize: group_zscore needs group_key",
        ),
        ({"terms": [term("a", clip=[1, 0])]}, "terms.0: clip must be"),
        ({"terms": [term("a", wieght=2)]}, "terms.0.wieght: unknown key"),
        (
            {"terms": [term("a")], "routes": {"key": "t", "recipes": {"r": ["a", "zz"]}}},
            "unknown terms",
        ),
        (
            {"terms": [term("a"), term("b")], "routes": {"key": "t", "recipes": {"r": ["a"]}}},
            r"\['b'\] are in no recipe",
        ),
        (
            {"terms": [term("a")], "routes": {"key": "t", "recipes": {"r": ["a"]}, "default": "q"}},
            "routes.default",
        ),
        ({"terms": [{"name": "a", "verifier": {"type": "nope"}}]}, "terms.0.verifier"),
        ({"terms": [term("a", gate={"below": 0.5})]}, "terms.0.gate.value: Field required"),
        ({"terms": [term("bad/name")]}, "without '/'"),
        ({"terms": []}, "terms"),
    ],
)
def test_config_errors_name_the_key(cfg, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        parse_reward_config(cfg)


def test_load_from_yaml_with_overrides(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "r.yaml"
    path.write_text(
        "terms:\n"
        "  - name: a\n"
        f"    verifier: {{type: custom, target: '{FX}:meta_score', kwargs: {{key: a}}}}\n"
        "    weight: 1.0\n"
    )
    reward = load_reward(str(path), overrides=["terms.0.weight=3"])
    assert_close(reward.score(rows(a=[2.0])).total, [6.0])
    path.write_text(
        "terms:\n  - name: a\n    verifier: {type: custom, target: 'x:y'}\n    wieght: 1\n"
    )
    with pytest.raises(ConfigError, match=r"r\.yaml: terms\.0\.wieght: unknown key"):
        load_reward(path)


def test_reward_result_logs_and_records() -> None:
    res = load_reward({"terms": [term("a"), term("b", weight=0.0)]}).score(
        rows(a=[1.0, 3.0, None], b=[None, 1.0, 1.0])
    )
    logs = res.log_dict()
    assert logs["reward/mean"] == pytest.approx(2.0)
    assert logs["reward/unscorable_rate"] == pytest.approx(1 / 3)
    assert logs["reward/a/abstain_rate"] == pytest.approx(1 / 3)
    assert logs["reward/b/mean"] == pytest.approx(1.0)
    rec = res.to_records()[2]
    assert rec["reward"] is None and rec["reward/a"] is None and rec["status/a"] == "abstain"


def test_fingerprints_ignore_display_names_but_not_settings() -> None:
    base = {"type": "custom", "target": f"{FX}:meta_score", "kwargs": {"key": "a"}}
    r1 = Reward(RewardConfig(terms=[{"name": "a", "verifier": base}]))
    r2 = Reward(RewardConfig(terms=[{"name": "a", "verifier": {**base, "name": "shown"}}]))
    r3 = Reward(RewardConfig(terms=[{"name": "a", "verifier": {**base, "kwargs": {"key": "b"}}}]))
    assert r1.fingerprints["a"] == r2.fingerprints["a"] != r3.fingerprints["a"]


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), min_size=1, max_size=3).filter(
        lambda ws: any(w != 0 for w in ws)
    ),
    data=st.data(),
)
def test_total_is_the_nan_aware_weighted_sum(weights: list[float], data: st.DataObject) -> None:
    # Property: for any scores (NaN = abstain), total = Σ w·s over non-NaN objective terms, NaN if
    # none scored; and scoring row by row gives the same totals as one batch.
    n = data.draw(st.integers(1, 6))
    cell = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 3)))
    cols = {f"t{j}": data.draw(st.lists(cell, min_size=n, max_size=n)) for j in range(len(weights))}
    reward = load_reward({"terms": [term(f"t{j}", weight=w) for j, w in enumerate(weights)]})
    samples = rows(**cols)
    res = reward.score(samples)
    expected = []
    for i in range(n):
        parts = [
            w * cols[f"t{j}"][i]
            for j, w in enumerate(weights)
            if w != 0 and cols[f"t{j}"][i] is not None
        ]
        expected.append(sum(parts) if parts else NAN)
    assert_close(res.total, expected)
    for i, s in enumerate(samples):
        assert_close(reward.score([s]).total, [res.total[i]])
