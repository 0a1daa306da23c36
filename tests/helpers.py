"""Helpers shared by the tests (import from here; never import one test module from another)."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


def make_tiny_tokenizer(
    dirpath: str | Path, vocab_size: int = 300, *, style: str = "byte_level"
) -> Path:
    """Train a byte-level BPE tokenizer (vocab ``vocab_size``), save it as a HF tokenizer dir.

    Loadable with ``transformers.AutoTokenizer.from_pretrained(dirpath)``; returns ``dirpath``.
    Deterministic: the same corpus and settings give the same vocabulary and merges.

    ``style="qwen2"`` saves it the way a real Qwen2 checkpoint's tokenizer is saved: with
    Qwen2's NFC normalizer and pre-tokenizer. Next to a ``model_type: qwen2`` config,
    ``AutoTokenizer`` (what trainers and safeladder use) always rebuilds the tokenizer with
    those, whatever ``tokenizer_class`` says; a plain byte-level ``tokenizer.json`` there
    would be read with other ids than it was saved with.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
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
    if style == "qwen2":
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    elif style != "byte_level":
        raise ValueError(f"style must be byte_level or qwen2, got {style!r}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos)
    out = Path(dirpath)
    fast.save_pretrained(str(out))
    return out


def double(x: float) -> float:
    """A picklable function defined outside the package, for worker-process tests."""
    return 2 * x


# --- Tiny random-init models for the neural verifiers (no downloads; < 1 s each) -------------

#: ChatML-style template given to the tiny decoder tokenizers (Qwen2's format, simplified).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_config(arch: str, vocab_size: int, pad_id: int, **extra: Any) -> Any:
    """A 2-layer, hidden-32 config of ``arch`` (bert | qwen2 | llama)."""
    from transformers import BertConfig, LlamaConfig, Qwen2Config

    common = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 1024,
        "pad_token_id": pad_id,
        # Larger than the default 0.02 so random heads give well-spread outputs (a test that
        # compares scores near one constant would pass for the wrong reasons).
        "initializer_range": 0.2,
        **extra,
    }
    if arch == "bert":
        return BertConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(num_key_value_heads=2, tie_word_embeddings=False, **common)
    if arch == "llama":
        return LlamaConfig(num_key_value_heads=2, tie_word_embeddings=False, **common)
    raise ValueError(f"arch must be bert, qwen2 or llama, got {arch!r}")


def _tiny_tokenizer_for(dirpath: Path, chat: bool, arch: str = "bert") -> Any:
    from transformers import PreTrainedTokenizerFast

    make_tiny_tokenizer(dirpath, style="qwen2" if arch == "qwen2" else "byte_level")
    tok = PreTrainedTokenizerFast.from_pretrained(str(dirpath))
    if chat:
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tok.chat_template = TINY_CHAT_TEMPLATE
        tok.save_pretrained(str(dirpath))
    return tok


def make_tiny_classifier(
    dirpath: str | Path,
    num_labels: int,
    id2label: dict[int, str] | None = None,
    arch: str = "bert",
    *,
    seed: int = 0,
    multi_label: bool = False,
) -> Path:
    """Save a seeded random-init ``<arch>ForSequenceClassification`` + the tiny tokenizer.

    Decoder archs (qwen2, llama) get a ChatML chat template on the tokenizer; ``config.pad_token_id``
    is the tokenizer's pad (= eos) id. ``multi_label`` sets ``problem_type:
    multi_label_classification``. Returns ``dirpath``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    out = Path(dirpath)
    tok = _tiny_tokenizer_for(out, chat=arch != "bert", arch=arch)
    labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
    extra: dict[str, Any] = {
        "num_labels": num_labels,
        "id2label": {int(k): v for k, v in labels.items()},
        "label2id": {v: int(k) for k, v in labels.items()},
    }
    if multi_label:
        extra["problem_type"] = "multi_label_classification"
    cfg = _tiny_config(arch, len(tok), tok.pad_token_id, **extra)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.save_pretrained(str(out))
    return out


def make_tiny_causal_lm(dirpath: str | Path, arch: str = "qwen2", *, seed: int = 0) -> Path:
    """Save a seeded random-init ``<arch>ForCausalLM`` + the tiny tokenizer with a chat template."""
    import torch
    from transformers import AutoModelForCausalLM

    if arch == "bert":
        raise ValueError("make_tiny_causal_lm: arch must be qwen2 or llama")
    out = Path(dirpath)
    tok = _tiny_tokenizer_for(out, chat=True, arch=arch)
    cfg = _tiny_config(arch, len(tok), tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(str(out))
    return out


#: kind → builder for ``tiny_model_dir``.
_TINY_KINDS: dict[str, Any] = {
    "bert_classifier": lambda d: make_tiny_classifier(d, 2, {0: "unsafe", 1: "safe"}, arch="bert"),
    "qwen2_classifier": lambda d: make_tiny_classifier(
        d, 2, {0: "unsafe", 1: "safe"}, arch="qwen2"
    ),
    "llama_classifier": lambda d: make_tiny_classifier(
        d, 2, {0: "unsafe", 1: "safe"}, arch="llama"
    ),
    "bert_multilabel": lambda d: make_tiny_classifier(
        d, 3, {0: "toxicity", 1: "privacy", 2: "bias"}, arch="bert", multi_label=True
    ),
    "bert_reward": lambda d: make_tiny_classifier(d, 1, arch="bert", seed=1),
    "qwen2_reward": lambda d: make_tiny_classifier(d, 1, arch="qwen2", seed=1),
    "qwen2_causal_lm": lambda d: make_tiny_causal_lm(d, arch="qwen2"),
    "llama_causal_lm": lambda d: make_tiny_causal_lm(d, arch="llama"),
}
_TINY_DIRS: dict[str, Path] = {}
_TINY_ROOT: list[str] = []


def tiny_model_dir(kind: str) -> Path:
    """A tiny model directory of ``kind``, built once per test session (treat it as read-only).

    Kinds: bert_classifier / qwen2_classifier / llama_classifier (labels unsafe, safe),
    bert_multilabel (toxicity, privacy, bias), bert_reward / qwen2_reward (num_labels=1),
    qwen2_causal_lm / llama_causal_lm.
    """
    import atexit
    import shutil
    import tempfile

    if kind not in _TINY_KINDS:
        raise KeyError(f"unknown tiny model kind {kind!r}; known: {sorted(_TINY_KINDS)}")
    if kind not in _TINY_DIRS:
        if not _TINY_ROOT:
            root = tempfile.mkdtemp(prefix="safeladder-tiny-")
            _TINY_ROOT.append(root)
            atexit.register(shutil.rmtree, root, True)
        d = Path(_TINY_ROOT[0]) / kind
        d.mkdir()
        _TINY_KINDS[kind](d)
        _TINY_DIRS[kind] = d
    return _TINY_DIRS[kind]


# ---------------------------------------------------------------------------- serving
# A verifier for server tests: scores len(completion) (so every row's answer is checkable),
# abstains on an empty completion, records the size of every call, and can be slowed down,
# held at a gate, or made to raise on one completion text.
PROBE_GATES: dict[str, Any] = {}  # name -> threading.Event, opened by the test


class ProbeVerifier(Verifier):
    """``custom`` target ``tests.helpers:ProbeVerifier``; kwargs ``delay_s``, ``gate``, ``fail_on``."""

    def __init__(self, config: Any):
        super().__init__(config)
        kwargs = dict(getattr(config, "kwargs", {}) or {})
        self.delay_s = float(kwargs.get("delay_s", 0.0))
        self.gate_name = kwargs.get("gate")
        self.fail_on = kwargs.get("fail_on")
        self.calls: list[int] = []  # rows per score() call, in call order
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def _score_batch(self, batch: SampleBatch, context: Any) -> ScoreBatch:
        import time

        from safeladder.errors import VerifierError

        self.calls.append(len(batch))
        if self.gate_name is not None:
            assert PROBE_GATES[self.gate_name].wait(timeout=30), "probe gate never opened"
        if self.delay_s:
            time.sleep(self.delay_s)
        rows: list[tuple[float, str, dict[str, Any]]] = []
        for c in batch.completions:
            if self.fail_on is not None and c == self.fail_on:
                raise VerifierError(f"probe refuses {c!r}")
            if c:
                rows.append((float(len(c)), "ok", {"chars": len(c)}))
            else:
                rows.append((float("nan"), "abstain", {"reason": "empty completion"}))
        return ScoreBatch.from_rows(self.name, rows)


def probe_reward(**kwargs: Any) -> Any:
    """A ``Reward`` with term ``chars`` (ProbeVerifier, weight 1) and ``fmt`` (think_format,
    metric only); ``kwargs`` go to the probe. ``reward.verifier("chars").calls`` counts calls."""
    from safeladder.rewards import Reward, RewardConfig

    return Reward(
        RewardConfig.model_validate(
            {
                "name": "probe",
                "terms": [
                    {
                        "name": "chars",
                        "verifier": {
                            "type": "custom",
                            "target": "tests.helpers:ProbeVerifier",
                            "kwargs": kwargs,
                        },
                    },
                    {"name": "fmt", "verifier": {"type": "think_format"}, "weight": 0.0},
                ],
            }
        )
    )


@contextmanager
def local_ray_cluster() -> Iterator[Any]:
    """A 2-CPU Ray on loopback in its own temp dir, without usage reporting; stopped on exit."""
    import os
    import shutil
    import tempfile

    import ray

    temp = tempfile.mkdtemp(prefix="sl-ray-test-", dir="/tmp")
    saved = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # offline tests: no usage report
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        _node_ip_address="127.0.0.1",
        logging_level="ERROR",
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = saved


def tiny_train_loop(max_length: int, over: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``train:`` block of a training-kind test: 4 CPU steps, seeded; ``over`` replaces keys
    (``max_length`` included)."""
    return {
        "max_steps": 4,
        "batch_size": 4,
        "eval_batch_size": 8,
        "max_length": max_length,
        "seed": 0,
        "device": "cpu",
        **(over or {}),
    }
