"""length: DAPO soft overlong punishment and a relative length budget, in words / chars / tokens."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.errors import ConfigError
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    make_tiny_tokenizer,
    read_shared,
    sample_strategy,
)


def words(n: int) -> str:
    return " ".join(["w"] * n)


def score_one(config: dict, completion: str, meta: dict | None = None) -> tuple[float, str, dict]:
    res = build_verifier({"type": "length", **config}).score(
        [Sample(completion=completion, meta=meta or {})]
    )
    return float(res.scores[0]), str(res.status[0]), res.details[0]


DAPO = {"mode": "overlong", "max_length": 100, "buffer": 20}

# DAPO Eq. 13 with L_max = 100, L_cache = 20 (free up to 80), boundaries as in TRL's
# get_soft_overlong_punishment: n ≤ 80 → 0; 80 < n ≤ 100 → (80 − n)/20; n > 100 → −1.
OVERLONG = [
    (0, 0.0),
    (80, 0.0),  # last free length
    (81, -0.05),  # first penalised length: (80 − 81)/20
    (90, -0.5),  # TRL's docstring example (90 tokens, L=100, cache 20 → −0.5)
    (99, -0.95),
    (100, -1.0),  # n = L_max is already −1 (inside the buffer, linear end point)
    (101, -1.0),
    (5000, -1.0),
]


@pytest.mark.parametrize(("n", "expected"), OVERLONG)
def test_overlong_golden(n: int, expected: float) -> None:
    score, status, detail = score_one(DAPO, words(n))
    assert status == "ok" and detail["length"] == n
    assert score == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("max_length", "buffer", "n", "expected"),
    [
        (10, 0, 10, 0.0),  # buffer 0 = hard cut-off: free up to L_max ...
        (10, 0, 11, -1.0),  # ... −1 beyond
        (10, 10, 0, 0.0),  # buffer = L_max: the ramp starts at 0
        (10, 10, 5, -0.5),
        (10, 10, 10, -1.0),
    ],
)
def test_overlong_edges(max_length: int, buffer: int, n: int, expected: float) -> None:
    cfg = {"mode": "overlong", "max_length": max_length, "buffer": buffer}
    assert score_one(cfg, words(n))[0] == pytest.approx(expected)


# Budget T = 100 words: both → −min(1, |n − T|/T); over → −min(1, max(0, n − T)/T).
BUDGET = [
    ("both", 100, 0.0),
    ("both", 150, -0.5),
    ("both", 50, -0.5),  # too short costs as much as too long
    ("both", 0, -1.0),
    ("both", 200, -1.0),
    ("both", 250, -1.0),  # saturates
    ("over", 50, 0.0),  # one-sided: under budget is free (L1's LCPO-Max idea)
    ("over", 100, 0.0),
    ("over", 125, -0.25),
    ("over", 200, -1.0),
    ("over", 300, -1.0),
]


@pytest.mark.parametrize(("side", "n", "expected"), BUDGET)
def test_budget_golden(side: str, n: int, expected: float) -> None:
    cfg = {"mode": "budget", "target_length": 100, "side": side}
    score, status, detail = score_one(cfg, words(n))
    assert status == "ok" and detail["target"] == 100
    assert score == pytest.approx(expected, abs=1e-6)


def test_budget_target_from_meta_with_fallback() -> None:
    cfg = {"mode": "budget", "target_key": "target_length", "target_length": 20}
    assert score_one(cfg, words(15), {"target_length": 10})[0] == pytest.approx(-0.5)  # row wins
    assert score_one(cfg, words(15))[0] == pytest.approx(-0.25)  # fallback 20: |15 − 20|/20


@pytest.mark.parametrize(
    ("meta", "reason_part"),
    [
        ({}, "meta has no 'budget'"),
        ({"budget": "ten"}, "expected a positive number"),
        ({"budget": 0}, "expected a positive number"),
        ({"budget": -5}, "expected a positive number"),
        ({"budget": True}, "expected a positive number"),
        ({"budget": float("nan")}, "expected a positive number"),
        ({"budget": None}, "expected a positive number"),
    ],
)
def test_budget_bad_row_target_abstains(meta: dict, reason_part: str) -> None:
    score, status, detail = score_one({"mode": "budget", "target_key": "budget"}, words(3), meta)
    assert math.isnan(score) and status == "abstain"
    assert reason_part in detail["reason"]


def test_defaults_are_dapo() -> None:
    # DAPO (arXiv 2503.14476): L_max = 20480, L_cache = 4096 → free up to 16384.
    v = build_verifier("length")
    assert (v.config.max_length, v.config.buffer) == (20480, 4096)
    scores = v.score([Sample(completion=words(16384)), Sample(completion=words(18432))]).scores
    assert scores.tolist() == [0.0, -0.5]


def test_chars_unit() -> None:
    cfg = {"mode": "budget", "target_length": 10, "unit": "chars"}
    assert score_one(cfg, "abcde")[0] == pytest.approx(-0.5)  # 5 chars vs 10
    assert score_one(cfg, "我不能提供帮助。抱歉！")[0] == pytest.approx(-0.1)  # 11 chars


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_tokens_unit_counts_without_special_tokens(tiny_tokenizer: Path) -> None:
    from transformers import AutoTokenizer

    cfg = {"unit": "tokens", "tokenizer": str(tiny_tokenizer), "max_length": 12, "buffer": 4}
    # The helper's corpus has no digits, so n digits are n byte tokens: free up to 8,
    # 10 tokens → (8 − 10)/4 = −0.5; the appended <|endoftext|> is not counted.
    score, _, detail = score_one(cfg, "1234567890")
    assert detail["length"] == 10 and score == pytest.approx(-0.5)
    assert score_one(cfg, "12345678")[0] == 0.0
    assert score_one(cfg, "1234567890123")[0] == -1.0
    v = build_verifier({"type": "length", **cfg})
    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    text = "The quick brown fox. I'm sorry, but I can't help with that."
    assert v.lengths([text]) == [len(tok(text)["input_ids"]) - 1]


def test_tokenizer_loaded_once_per_verifier(
    tiny_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    calls: list[Any] = []
    real = transformers.AutoTokenizer.from_pretrained

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", counting)
    v = build_verifier(
        {
            "type": "length",
            "unit": "tokens",
            "tokenizer": str(tiny_tokenizer),
            "max_length": 5,
            "buffer": 1,
        }
    )
    assert calls == []  # lazy: building does not load
    v.score([Sample(completion="a b")])
    v.score([Sample(completion="c"), Sample(completion="d e f")])
    assert len(calls) == 1


def test_missing_tokenizer_dir_is_a_config_error(tmp_path: Path) -> None:
    v = build_verifier(
        {
            "type": "length",
            "unit": "tokens",
            "tokenizer": str(tmp_path / "nope"),
            "max_length": 5,
            "buffer": 1,
        }
    )
    with pytest.raises(ConfigError, match="nope"):
        v.score([Sample(completion="x")])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mode": "overlong", "max_lenght": 10, "buffer": 2}, "max_lenght"),
        ({"mode": "overlong", "max_length": 10}, "buffer"),  # default buffer 4096 > 10
        ({"mode": "overlong", "max_length": 10, "buffer": 11}, "buffer"),
        ({"mode": "overlong", "max_length": 0, "buffer": 0}, "max_length"),
        ({"mode": "overlong", "max_length": 10, "buffer": -1}, "buffer"),
        ({"mode": "overlong", "max_length": 10, "buffer": 2, "target_key": "t"}, "target_key"),
        ({"mode": "overlong", "max_length": 10, "buffer": 2, "side": "over"}, "side"),
        ({"mode": "budget"}, "target_length"),
        ({"mode": "budget", "target_length": 0}, "target_length"),
        ({"mode": "budget", "target_length": 5, "max_length": 10}, "max_length"),
        ({"mode": "budget", "target_length": 5, "unit": "tokens"}, "tokenizer"),
        ({"mode": "budget", "target_length": 5, "tokenizer": "/x"}, "unit"),
        ({"mode": "budget", "target_length": 5, "unit": "bytes"}, "unit"),
        ({"mode": "shortest", "target_length": 5}, "mode"),
    ],
)
def test_config_errors_name_the_field(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_verifier({"type": "length", **config})


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "overlong", "max_length": 20, "buffer": 5},
        {"mode": "overlong", "max_length": 30, "buffer": 0, "unit": "chars"},
        {"mode": "budget", "target_length": 8, "side": "both"},
        {"mode": "budget", "target_key": "t", "side": "over", "unit": "chars"},
    ],
)
@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(sample_strategy, min_size=1, max_size=6),
    targets=st.lists(
        st.one_of(st.none(), st.integers(-3, 50), st.text(max_size=3)), min_size=6, max_size=6
    ),
)
def test_properties(config: dict, samples: list[Sample], targets: list[Any]) -> None:
    v = build_verifier({"type": "length", **config})
    rows = [
        s.model_copy(update={"meta": {} if t is None else {"t": t}})
        for s, t in zip(samples, targets, strict=False)
    ]
    result = assert_batch_equals_rows(v, rows)
    assert_in_range_or_nan(v, result)


@settings(max_examples=40, deadline=None)
@given(samples=st.lists(sample_strategy, min_size=1, max_size=6))
def test_properties_tokens(tiny_tokenizer: Path, samples: list[Sample]) -> None:
    v = build_verifier(
        {
            "type": "length",
            "unit": "tokens",
            "tokenizer": str(tiny_tokenizer),
            "max_length": 30,
            "buffer": 10,
        }
    )
    result = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, result)


def test_gsm8k_solutions_penalty_is_monotone_in_length() -> None:
    # Real reasoning text: longer solutions never score better under either mode.
    rows = read_shared("gsm8k_train.jsonl.gz", limit=300)
    texts = [r["solution"] for r in rows]
    n = [len(t.split()) for t in texts]
    for cfg in (
        {"mode": "overlong", "max_length": 120, "buffer": 40},
        {"mode": "budget", "target_length": 60, "side": "over"},
    ):
        scores = (
            build_verifier({"type": "length", **cfg})
            .score([Sample(completion=t) for t in texts])
            .scores
        )
        pairs = sorted(zip(n, scores.tolist(), strict=True))
        assert all(b[1] <= a[1] + 1e-7 for a, b in itertools.pairwise(pairs))
        assert min(scores) < 0.0 <= max(scores)  # the slice spans free and penalised lengths
