"""Helpers shared by the tests (import from here; never import one test module from another)."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from safeladder.types import Sample, SampleBatch, ScoreBatch
from safeladder.verifiers.base import Verifier

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def read_shared(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of ``../shared/data/<name>`` (``.jsonl`` or ``.jsonl.gz``), the first ``limit`` of them."""
    path = SHARED_DATA / name
    opener = gzip.open if name.endswith(".gz") else open
    rows: list[dict[str, Any]] = []
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for line in fh:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def iter_shared(name: str) -> Iterator[dict[str, Any]]:
    path = SHARED_DATA / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for line in fh:
            yield json.loads(line)


def same_scores(a: ScoreBatch, b: ScoreBatch, atol: float = 0.0) -> bool:
    """Equal scores (NaN == NaN) and equal statuses."""
    return bool(
        np.allclose(a.scores, b.scores, atol=atol, rtol=0.0, equal_nan=True)
        and list(a.status) == list(b.status)
    )


def assert_batch_equals_rows(
    verifier: Verifier, samples: Sequence[Sample], atol: float = 0.0
) -> ScoreBatch:
    """Score as one batch and row by row; both must agree (scores and statuses). Returns the batch result."""
    batch = verifier.score(SampleBatch.from_samples(samples))
    assert len(batch) == len(samples)
    assert batch.scores.dtype == np.float32
    for i, s in enumerate(samples):
        one = verifier.score([s])
        a, b = float(batch.scores[i]), float(one.scores[0])
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= atol, (i, a, b)
        assert batch.status[i] == one.status[0], (i, batch.status[i], one.status[0])
    return batch


def assert_in_range_or_nan(verifier: Verifier, result: ScoreBatch) -> None:
    lo, hi = verifier.score_range
    for i, (s, status) in enumerate(zip(result.scores, result.status, strict=True)):
        if status == "ok":
            assert lo <= s <= hi, (i, s, verifier.score_range)
        else:
            assert math.isnan(s), (i, s, status)


# Hostile-ish text for property tests: tags, braces, digits, unicode, long runs.
_ALPHABET = st.sampled_from(
    [
        *list("abcxyz ABC0123456789.,;:!?-+*/=^_$\\{}()[]<>\n\t#%"),
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "\\boxed{",
        "####",
        "The answer is ",
        "我不能",
        "knight",
        "knave",
    ]
)
text_strategy = st.lists(_ALPHABET, max_size=60).map("".join)
sample_strategy = st.builds(
    Sample,
    prompt=text_strategy,
    completion=text_strategy,
    reference=st.one_of(st.none(), text_strategy, st.lists(text_strategy, max_size=3)),
)


# A tiny byte-level BPE tokenizer trained in memory (no hub access). The corpus has no digits, so
# no merge involves one: a string of n ASCII digits encodes to exactly n tokens. The
# post-processor appends "<|endoftext|>", so counts with and without special tokens differ by one.
_TINY_TOKENIZER_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sorry, but I can't help with that request.",
    "Here is how to solve the problem: first, read the question carefully.",
    "<think>Let me think step by step.</think><answer>Paris</answer>",
    "我不能提供这方面的帮助。抱歉，我无法回答。",
]


def make_tiny_tokenizer(dirpath: str | Path, vocab_size: int = 300) -> Path:
    """Train a byte-level BPE tokenizer (vocab ``vocab_size``), save it as a HF tokenizer dir.

    Loadable with ``transformers.AutoTokenizer.from_pretrained(dirpath)``; returns ``dirpath``.
    Deterministic: the same corpus and settings give the same vocabulary and merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_TOKENIZER_CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, tok.token_to_id(eos))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos)
    out = Path(dirpath)
    fast.save_pretrained(str(out))
    return out


def double(x: float) -> float:
    """A picklable function defined outside the package, for worker-process tests."""
    return 2 * x
