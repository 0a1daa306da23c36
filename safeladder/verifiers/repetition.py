"""``repetition``: an n-gram repetition penalty, in [-1, 0] (0 = no repeated n-gram).

    score = −(1 − unique_ngrams / total_ngrams)

over the completion's n-grams (``ngram_size``, default 3): a text whose n-grams are all distinct
scores 0; "the cat the cat the cat" (n = 3: 4 n-grams, 2 distinct) scores −0.5; a text that loops
on one n-gram approaches −1 (it reaches −(1 − 1/k) for k copies). The scale lives in the reward
weight, not here.

The formula is that of TRL's ``get_repetition_penalty_reward`` (``trl/rewards/other_rewards.py``,
huggingface/trl @ 01f8dc59), after Appendix C.2 of "Demystifying Long Chain-of-Thought Reasoning"
(Yeo et al. 2025, arXiv 2502.03373). Differences: TRL counts n-grams of *token ids* and takes a
``max_penalty`` factor; this verifier reads the text (no tokenizer needed) and leaves the factor
to the reward weight.

Tokens (``unit``):

- ``words`` (default): lowercased; a token is a run of non-space characters, except that every
  Han character, hiragana and katakana is a token of its own — Chinese and Japanese have no
  spaces, and whitespace tokens would make a whole Chinese paragraph one "word" (so "我不能我不能
  我不能" is as repetitive as "I can't I can't I can't"). Punctuation stays attached to its word.
- ``chars``: every character, spaces included, as in character n-gram language ID; choose a
  larger ``ngram_size`` (e.g. 10–20) for it.

A completion with fewer than ``ngram_size`` tokens (the empty one included) scores 0.0: it has
no n-gram, so none repeats — a real score, not an abstention. This verifier never abstains;
short or empty answers are the business of a length or format term.

Inputs: ``completion``.
Score range: [-1, 0] (0 = no repeated n-gram). Never NaN.

Example::

    {"type": "repetition", "ngram_size": 3}
    # "the cat the cat the cat" → −0.5
"""

from __future__ import annotations

from typing import ClassVar, Literal

import regex
from pydantic import Field

from safeladder.types import Sample
from safeladder.verifiers.base import RowResult, RuleVerifier, Verifier, VerifierConfig, ok

# One CJK character, or a run of anything that is neither space nor CJK.
_WORD_TOKEN = regex.compile(
    r"[\p{Han}\p{Hiragana}\p{Katakana}]|[^\s\p{Han}\p{Hiragana}\p{Katakana}]+"
)
# str.split() separators that the pattern's \s does not match (ASCII file/group/record/unit).
_SPLIT_ONLY = ("\x1c", "\x1d", "\x1e", "\x1f")


class RepetitionConfig(VerifierConfig):
    """Config of the n-gram repetition penalty."""

    type: Literal["repetition"] = "repetition"
    ngram_size: int = Field(
        default=3, ge=1, le=64, description="n of the n-grams whose repetition is penalised."
    )
    unit: Literal["words", "chars"] = Field(
        default="words",
        description=(
            "'words': lowercased whitespace tokens, each CJK character its own token; 'chars': "
            "characters (use a larger ngram_size)."
        ),
    )

    def build(self) -> Verifier:
        return RepetitionVerifier(self)


def repetition_tokens(text: str, unit: str = "words") -> list[str]:
    """The tokens n-grams are built from.

    >>> repetition_tokens("The cat, THE cat 我不能")
    ['the', 'cat,', 'the', 'cat', '我', '不', '能']
    """
    if unit == "chars":
        return list(text)
    low = text.lower()
    if low.isascii() and not any(c in low for c in _SPLIT_ONLY):
        # The same tokens as the pattern, 5-10x faster: for ASCII the pattern's runs of
        # non-space are str.split()'s, except that split() also breaks on \x1c-\x1f.
        return low.split()
    return _WORD_TOKEN.findall(low)


def repetition_penalty(tokens: list[str], n: int) -> float:
    """−(1 − distinct / total) over the n-grams of ``tokens``; 0.0 when there are fewer than n.

    >>> repetition_penalty("the cat the cat the cat".split(), 3)
    -0.5
    """
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    distinct = len(set(zip(*(tokens[i:] for i in range(n)), strict=False)))
    return 0.0 - (1.0 - distinct / total)


class RepetitionVerifier(RuleVerifier):
    """n-gram repetition penalty; see the module docstring."""

    score_range: ClassVar[tuple[float, float]] = (-1.0, 0.0)

    def __init__(self, config: RepetitionConfig):
        super().__init__(config)
        self.cfg = config

    def score_row(self, sample: Sample) -> RowResult:
        tokens = repetition_tokens(sample.completion, self.cfg.unit)
        n = self.cfg.ngram_size
        return ok(repetition_penalty(tokens, n), ngrams=max(0, len(tokens) - n + 1))
