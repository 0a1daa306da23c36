"""repetition: −(1 − distinct/total) over word (CJK: character) or character n-grams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.errors import ConfigError
from safeladder.types import Sample
from safeladder.verifiers import build_verifier
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    read_shared,
    sample_strategy,
    text_strategy,
)


def score_one(config: dict, completion: str) -> float:
    res = build_verifier({"type": "repetition", **config}).score([Sample(completion=completion)])
    assert res.status[0] == "ok"
    return float(res.scores[0])


# (config, completion, expected); n-gram counts written out in the comments.
GOLDEN = [
    # 6 words, 4 distinct trigrams → 0.
    ({}, "the cat sat on the mat", 0.0),
    # the cat the | cat the cat | the cat the | cat the cat: 4 trigrams, 2 distinct → −1/2.
    ({}, "the cat the cat the cat", -0.5),
    # 3 trigrams, 1 distinct → −(1 − 1/3).
    ({}, "a a a a a", -2 / 3),
    # Fewer tokens than n: no n-gram at all, so none repeats → 0 (a real score).
    ({}, "", 0.0),
    ({}, "hello", 0.0),
    ({}, "a b", 0.0),
    ({}, "a b c", 0.0),  # exactly one trigram
    # Case-insensitive: the cat | cat the | the cat → 3 bigrams, 2 distinct → −1/3.
    ({"ngram_size": 2}, "The cat THE cat", -1 / 3),
    # TRL's get_repetition_penalty_reward docstring example with words instead of ids:
    # [5,5,5,5,5], n = 2 → 4 bigrams, 1 distinct → −0.75; [1,2,3,4] → 0.
    ({"ngram_size": 2}, "5 5 5 5 5", -0.75),
    ({"ngram_size": 2}, "1 2 3 4", 0.0),
    # CJK: one token per character. 我不能×3 = 9 tokens, 7 trigrams, distinct {我不能, 不能我,
    # 能我不} → −(1 − 3/7) = −4/7.
    ({}, "我不能我不能我不能", -4 / 7),
    # Punctuation stays on the word: "cat," "cat," "cat" → 3 unigrams, 2 distinct → −1/3.
    ({"ngram_size": 1}, "cat, cat, cat", -1 / 3),
    # chars: abababab → 7 bigrams (ab ba ab ba ab ba ab), 2 distinct → −5/7.
    ({"unit": "chars", "ngram_size": 2}, "abababab", -5 / 7),
    ({"unit": "chars", "ngram_size": 3}, "abcdef", 0.0),
    # Degenerate looping, the failure mode the penalty targets (Yeo et al. 2025, App. C.2):
    # "the answer is 5." ×20 = 80 tokens, 78 trigrams, 4 distinct → −(1 − 4/78).
    ({}, "The answer is 5. " * 20, -(1 - 4 / 78)),
]


@pytest.mark.parametrize(("config", "completion", "expected"), GOLDEN)
def test_golden(config: dict, completion: str, expected: float) -> None:
    assert score_one(config, completion) == pytest.approx(expected, abs=1e-6)


def test_no_negative_zero_and_detail() -> None:
    res = build_verifier({"type": "repetition"}).score([Sample(completion="one two three four")])
    assert str(res.scores[0]) == "0.0"  # not -0.0, which prints oddly in logs
    assert res.details[0]["ngrams"] == 2


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"ngram_size": 0}, "ngram_size"),
        ({"ngram_size": 100}, "ngram_size"),
        ({"unit": "tokens"}, "unit"),
        ({"ngram": 3}, "ngram"),
        ({"max_penalty": -2}, "max_penalty"),  # the scale belongs to the reward weight
    ],
)
def test_config_errors_name_the_field(config: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_verifier({"type": "repetition", **config})


@pytest.mark.parametrize("config", [{}, {"ngram_size": 1}, {"unit": "chars", "ngram_size": 4}])
@settings(max_examples=120, deadline=None)
@given(samples=st.lists(sample_strategy, min_size=1, max_size=6))
def test_properties(config: dict, samples: list[Sample]) -> None:
    v = build_verifier({"type": "repetition", **config})
    result = assert_batch_equals_rows(v, samples)
    assert_in_range_or_nan(v, result)
    assert list(result.status) == ["ok"] * len(samples)  # never abstains


@settings(max_examples=100, deadline=None)
@given(text=text_strategy, k=st.integers(2, 4))
def test_repeating_a_text_never_lowers_the_penalty(text: str, k: int) -> None:
    v = build_verifier({"type": "repetition", "ngram_size": 2})
    once, looped = v.score(
        [Sample(completion=text), Sample(completion=" ".join([text] * k))]
    ).scores
    assert looped <= once + 1e-6


def test_gsm8k_solutions_vs_looped_copies() -> None:
    # Real reasoning text repeats a little ("$3 per hour ... $3 per hour"); the same text looped
    # three times is about −(1 − 1/3) ≈ −0.67. Measured on these 200 rows: natural min −0.26,
    # mean −0.05; looped max −0.64. Bounds keep a margin.
    rows = read_shared("gsm8k_train.jsonl.gz", limit=200)
    v = build_verifier({"type": "repetition"})
    natural = v.score([Sample(completion=r["solution"]) for r in rows]).scores
    looped = v.score([Sample(completion=" ".join([r["solution"]] * 3)) for r in rows]).scores
    assert float(natural.min()) > -0.4 and float(natural.mean()) > -0.1
    assert float(looped.max()) < -0.5


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"ab AB\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f.,'", "猫", "é"])))
def test_ascii_split_shortcut_gives_the_pattern_tokens(text: str) -> None:
    # repetition_tokens takes str.split() for ASCII text; it must equal the pattern's tokens.
    from safeladder.verifiers.repetition import _WORD_TOKEN, repetition_penalty, repetition_tokens

    assert repetition_tokens(text) == _WORD_TOKEN.findall(text.lower())
    tokens = repetition_tokens(text)
    for n in (1, 2, 3):
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        expected = -(1 - len(set(grams)) / len(grams)) if grams else 0.0
        assert repetition_penalty(tokens, n) == pytest.approx(expected)
