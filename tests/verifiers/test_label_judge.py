"""``label_judge``: label likelihoods from a causal LM, checked against plain per-label forwards.

Expectations are computed here independently of the verifier: the judge input text is written out
from the tiny ChatML template, label log-likelihoods come from one unpadded forward per
(row, label) with a log-softmax over the vocabulary, and aggregation is done by hand on
distributions fixed by a fake model.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.config import validate
from safeladder.errors import VerifierError
from safeladder.neural.batching import clear_caches
from safeladder.verifiers.label_judge import (
    LabelJudge,
    LabelJudgeConfig,
    label_loglik_duplicate,
    label_loglik_shared_prefix,
)
from tests.helpers import (
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    same_scores,
    tiny_model_dir,
)

torch.set_num_threads(1)
CPU = {"device": "cpu", "dtype": "float32"}
# Multi-token labels of different lengths under the tiny tokenizer (checked in a test below).
LABELS = {"yes": 1.0, "no": 0.0, "not sure": 0.5}
TEMPLATE = "Question: {prompt}\nAnswer: {completion}\nIs the answer correct?"


def _build(path: Any, **kw: Any) -> LabelJudge:
    data = {"path": str(path), "runtime": CPU, **kw}
    if "preset" not in kw:
        data.setdefault("template", TEMPLATE)
        data.setdefault("labels", LABELS)
    v = LabelJudgeConfig(**data).build()
    assert isinstance(v, LabelJudge)
    return v


@pytest.fixture(scope="module")
def qwen() -> str:
    return str(tiny_model_dir("qwen2_causal_lm"))


@pytest.fixture(scope="module")
def llama() -> str:
    return str(tiny_model_dir("llama_causal_lm"))


def _samples() -> list[Sample]:
    return [
        Sample(prompt="What is 2+2?", completion="4"),
        Sample(prompt="Capital of France?", completion="The capital is Paris, a large city."),
        Sample(
            prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            completion="hello there",
        ),
        Sample(prompt="x " * 40, completion="a long answer " * 12),
        Sample(prompt="What is 2+2?", completion="4"),  # duplicate row
        Sample(prompt="", completion="<think>hmm</think> final"),
    ]


def _chatml_user(text: str) -> str:
    # The tiny tokenizer's ChatML template (tests/helpers.py), written out.
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def _manual_loglik(model: Any, prefix: list[int], label: list[int]) -> float:
    """log p(label | prefix) from one unpadded forward: log-softmax at each label position, summed."""
    seq = torch.tensor([prefix + label])
    with torch.inference_mode():
        logits = model(input_ids=seq).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(prefix) - 1 + t, tok]) for t, tok in enumerate(label))


# --- tokenization and rendering --------------------------------------------------------------------


def test_label_ids_match_joint_tokenization(qwen: str) -> None:
    v = _build(qwen)
    tok = v._tok
    assert [len(ids) for ids in v.label_ids] == [3, 2, 7], "multi-token labels of several lengths"
    for prefix_text in ("Is it correct?", "Answer:", _chatml_user("Q")):
        prefix = list(tok.encode(prefix_text, add_special_tokens=False))
        for name, ids in zip(v.label_names, v.label_ids, strict=True):
            assert prefix + ids == list(tok.encode(prefix_text + name, add_special_tokens=False))
    spaced = _build(qwen, label_prefix=" ", rendering="plain", response_prefix="Answer:")
    for name, ids in zip(spaced.label_names, spaced.label_ids, strict=True):
        assert ids == list(tok.encode(" " + name, add_special_tokens=False))


def test_chat_rendering_is_the_user_message_plus_generation_prompt(qwen: str) -> None:
    v = _build(qwen, system_prompt="You judge.")
    expected = "<|im_start|>system\nYou judge.<|im_end|>\n" + _chatml_user(
        "Question: What is 2+2?\nAnswer: 4\nIs the answer correct?"
    )
    prep = v._row_input(
        SampleBatch.from_samples([Sample(prompt="What is 2+2?", completion="4")]), 0
    )
    assert prep.ids == list(v._tok.encode(expected, add_special_tokens=False))  # type: ignore[union-attr]


def test_plain_rendering_has_no_trailing_special_token(qwen: str) -> None:
    # The tiny tokenizer appends <|endoftext|> when asked for special tokens; an EOS between the
    # question and the label would change what is scored.
    v = _build(qwen, rendering="plain", response_prefix="Verdict:")
    prep = v._row_input(SampleBatch.from_samples([Sample(prompt="p", completion="c")]), 0)
    text = "Question: p\nAnswer: c\nIs the answer correct?Verdict:"
    assert prep.ids == list(v._tok.encode(text, add_special_tokens=False))  # type: ignore[union-attr]
    assert prep.ids[-1] != v._tok.eos_token_id  # type: ignore[union-attr]


def test_template_braces_and_injected_placeholders_are_left_alone(qwen: str) -> None:
    v = _build(qwen, template='Reply as JSON {"ok": bool}. {completion}')
    prep = v._row_input(SampleBatch.from_samples([Sample(prompt="p", completion="{prompt}")]), 0)
    text = _chatml_user('Reply as JSON {"ok": bool}. {prompt}')
    assert prep.ids == list(v._tok.encode(text, add_special_tokens=False))  # type: ignore[union-attr]


# --- probabilities against plain forwards ----------------------------------------------------------


@pytest.mark.parametrize("arch", ["qwen2_causal_lm", "llama_causal_lm"])
@pytest.mark.parametrize("scoring", ["shared_prefix", "duplicate", "tree"])
def test_probabilities_match_per_label_forward(arch: str, scoring: str) -> None:
    samples = _samples()
    batch = SampleBatch.from_samples(samples)
    for normalize in (False, True):
        v = _build(
            tiny_model_dir(arch),
            scoring=scoring,
            length_normalize=normalize,
            runtime={**CPU, "max_tokens_per_batch": 300},
        )
        sb = v.score(samples)
        model = v._loaded.replicas[0]
        for i in range(len(samples)):
            prefix = v._row_input(batch, i).ids  # type: ignore[union-attr]
            ll = np.array([_manual_loglik(model, prefix, lab) for lab in v.label_ids])
            if normalize:
                ll /= np.array([len(lab) for lab in v.label_ids])
            p = np.exp(ll - ll.max())
            p /= p.sum()
            got = np.array([sb.details[i]["label_probs"][n] for n in v.label_names])
            np.testing.assert_allclose(got, p, atol=1e-4)
            assert sb.details[i]["label"] == v.label_names[int(np.argmax(p))]
            expected = float(p @ np.array(list(LABELS.values())))
            assert abs(float(sb.scores[i]) - expected) < 1e-4
        if normalize:
            # The random model must not make the comparison trivial: no row is near-certain.
            assert max(max(d["label_probs"].values()) for d in sb.details) < 0.9


def test_shared_prefix_equals_duplicate_loglik(qwen: str) -> None:
    v = _build(qwen)
    model = v._loaded.replicas[0]
    prefixes = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
    labels = [*v.label_ids, [40], [41, 42, 43, 44, 45]]
    with torch.inference_mode():
        a = label_loglik_shared_prefix(model, prefixes, labels, v._loaded.pad_id, "cpu")
        b = label_loglik_duplicate(model, prefixes, labels, v._loaded.pad_id, "cpu")
    assert a.shape == b.shape == (3, 5) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    manual = [[_manual_loglik(model, p, lab) for lab in labels] for p in prefixes]
    np.testing.assert_allclose(a, np.array(manual), atol=1e-4)


def test_batch_equals_row_by_row_and_permutation(qwen: str) -> None:
    v = _build(qwen, runtime={**CPU, "max_tokens_per_batch": 200})
    samples = _samples()
    first = assert_batch_equals_rows(v, samples, atol=1e-4)
    assert_in_range_or_nan(v, first)
    batch = SampleBatch.from_samples(samples)
    assert same_scores(first, v.score(batch))  # deterministic
    perm = np.random.default_rng(0).permutation(len(samples))
    assert same_scores(v.score(batch.take(perm)), first.take(perm), atol=1e-6)
    assert float(first.scores[0]) == float(first.scores[4])  # duplicate rows
    assert len(v.score([])) == 0


def test_cache_across_calls_gives_the_same_scores(qwen: str) -> None:
    clear_caches()
    v = _build(qwen, runtime={**CPU, "cache_size": 64})
    a = v.score(_samples())
    b = v.score(_samples())
    assert same_scores(a, b)


# --- aggregation with a fake model whose label probabilities are known -----------------------------


class _FixedLogits(torch.nn.Module):
    """Every position predicts the same next-token distribution (logits over the vocabulary)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids: torch.Tensor, **_: Any) -> Any:
        b, n = input_ids.shape
        return SimpleNamespace(logits=self.logits.expand(b, n, -1), past_key_values=None)


def _with_fake_model(v: LabelJudge, token_probs: dict[int, float]) -> LabelJudge:
    vocab = len(v._tok)
    logits = torch.full((vocab,), -1e4)
    for tok_id, p in token_probs.items():
        logits[tok_id] = math.log(p)
    v._loaded = dataclasses.replace(v._loaded, replicas=[_FixedLogits(logits)])
    return v


def _single_token(v: LabelJudge, text: str) -> int:
    ids = v._tok.encode(text, add_special_tokens=False)
    assert len(ids) == 1, (text, ids)
    return int(ids[0])


@pytest.mark.parametrize(
    ("aggregate", "expected"), [("expected", 0.2 * 1 + 0.3 * 0 + 0.5 * 0.5), ("argmax", 0.5)]
)
def test_expected_and_argmax_aggregation(qwen: str, aggregate: str, expected: float) -> None:
    v = _build(qwen, labels={"a": 1.0, "b": 0.0, "c": 0.5}, aggregate=aggregate)
    a, b, c = (_single_token(v, t) for t in "abc")
    # Other tokens take probability mass too (0.5 here): restricting to the labels renormalizes.
    _with_fake_model(v, {a: 0.1, b: 0.15, c: 0.25, 7: 0.5})
    sb = v.score([Sample(prompt="p", completion="x")])
    assert sb.scores[0] == pytest.approx(expected, abs=1e-6)
    assert sb.details[0]["label_probs"] == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5})
    assert sb.details[0]["label"] == "c"
    assert v.score_range == (0.0, 1.0)


def test_argmax_tie_takes_the_first_listed_label(qwen: str) -> None:
    v = _build(qwen, labels={"b": 0.0, "a": 1.0}, aggregate="argmax")
    _with_fake_model(v, {_single_token(v, "a"): 0.5, _single_token(v, "b"): 0.5})
    assert v.score([Sample(completion="x")]).scores[0] == 0.0


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        ({"T": 0.7, "F": 0.3}, 0.7),  # two labels: (P(T) + 1 - P(F)) / 2 = P(T)
        ({"T": 0.6, "F": 0.1, "U": 0.3}, (0.6 + 1 - 0.1) / 2),
    ],
)
def test_true_false_formula(qwen: str, probs: dict[str, float], expected: float) -> None:
    labels = {k: 0.0 for k in probs}  # rewards are not used by true_false
    v = _build(qwen, labels=labels, aggregate="true_false", true_label="T", false_label="F")
    _with_fake_model(v, {_single_token(v, k): p for k, p in probs.items()})
    sb = v.score([Sample(completion="x")])
    assert sb.scores[0] == pytest.approx(expected, abs=1e-6)
    assert v.score_range == (0.0, 1.0)


def test_length_normalize_uses_mean_token_logprob(qwen: str) -> None:
    # "ab" is two tokens, "c" one; the fake model gives every token the same distribution, and
    # has no KV cache, so shared_prefix falls back to the duplicate computation.
    for scoring in ("shared_prefix", "duplicate"):
        v = _build(qwen, labels={"ab": 1.0, "c": 0.0}, scoring=scoring)
        assert [len(x) for x in v.label_ids] == [2, 1]
        a, b, c = (_single_token(v, t) for t in "abc")
        _with_fake_model(v, {a: 0.4, b: 0.2, c: 0.4})
        # sum: p(ab) ∝ 0.4 * 0.2 = 0.08, p(c) ∝ 0.4
        assert v.score([Sample(completion="x")]).scores[0] == pytest.approx(0.08 / 0.48, abs=1e-6)
        v = _build(qwen, labels={"ab": 1.0, "c": 0.0}, scoring=scoring, length_normalize=True)
        _with_fake_model(v, {a: 0.4, b: 0.2, c: 0.4})
        # mean: exp((log .4 + log .2) / 2) = sqrt(.08)
        g = math.sqrt(0.08)
        assert v.score([Sample(completion="x")]).scores[0] == pytest.approx(g / (g + 0.4), abs=1e-6)


# --- row handling ------------------------------------------------------------------------------------


def test_judge_final_answer(qwen: str) -> None:
    plain = Sample(prompt="Q?", completion="The answer is 4.")
    thought = Sample(prompt="Q?", completion="<think>long reasoning here</think>\nThe answer is 4.")
    v = _build(qwen, judge_final_answer=True)
    sb = v.score([plain, thought])
    assert sb.scores[0] == sb.scores[1]
    w = _build(qwen)
    sb = w.score([plain, thought])
    assert sb.scores[0] != sb.scores[1]


def test_truncation_trims_prompt_first_then_keeps_completion_end(qwen: str) -> None:
    v = _build(qwen, template="{prompt}|{completion}", max_length=60)
    tok = v._tok
    short = Sample(prompt="short question", completion="short answer")
    long_prompt = Sample(prompt="zzzz " * 80 + "END_OF_PROMPT", completion="short answer")
    long_both = Sample(prompt="zzzz " * 80, completion="yyyy " * 80 + "FINAL")
    batch = SampleBatch.from_samples([short, long_prompt, long_both])
    preps = [v._row_input(batch, i) for i in range(3)]
    texts = [tok.decode(p.ids) for p in preps]  # type: ignore[union-attr]
    assert [p.truncated for p in preps] == [False, True, True]  # type: ignore[union-attr]
    for p in preps:
        assert len(p.ids) + max(len(x) for x in v.label_ids) <= 60  # type: ignore[union-attr]
    assert "END_OF_PROMPT|short answer" in texts[1]  # the prompt's end survives, completion whole
    # The prompt went first (all of it), then the completion's start; its end survives.
    assert texts[2].startswith("<|im_start|>user\n| yyyy")
    assert texts[2].endswith("yyyy FINAL<|im_end|>\n<|im_start|>assistant\n")
    sb = v.score(batch)
    assert [d.get("truncated", False) for d in sb.details] == [False, True, True]
    assert v.truncated_rows == 2
    v.score(batch)
    assert v.truncated_rows == 4


def test_fixed_text_longer_than_max_length_abstains(qwen: str) -> None:
    v = _build(qwen, template="instructions " * 40 + "{completion}", max_length=30)
    sb = v.score([Sample(completion="x")])
    assert sb.status[0] == "abstain" and "max_length" in sb.details[0]["reason"]


def test_reference_required_and_empty_score(qwen: str) -> None:
    v = _build(qwen, template="Gold: {reference}\nAnswer: {completion}", empty_score=0.0)
    sb = v.score(
        [
            Sample(completion="Paris", reference=None),
            Sample(completion="  ", reference="Paris"),
            Sample(completion="Paris", reference=["Paris", "paris"]),
        ]
    )
    assert list(sb.status) == ["abstain", "ok", "ok"]
    assert "reference" in sb.details[0]["reason"]
    assert sb.scores[1] == 0.0 and sb.details[1]["reason"] == "empty completion"


def test_template_by_meta(qwen: str) -> None:
    v = _build(
        qwen,
        template="A {completion}",
        templates={"strict": "B {completion}"},
        template_by_meta="task",
    )
    sb = v.score(
        [
            Sample(completion="x", meta={"task": "strict"}),
            Sample(completion="x", meta={"task": "other"}),
            Sample(completion="x"),
        ]
    )
    assert sb.details[0]["template"] == "strict" and "template" not in sb.details[1]
    assert sb.scores[1] == sb.scores[2] != sb.scores[0]


def test_forward_failure_follows_on_error(qwen: str) -> None:
    class Broken(torch.nn.Module):
        def forward(self, **_: Any) -> Any:
            raise RuntimeError("boom")

    for on_error in ("raise", "abstain"):
        v = _build(qwen, on_error=on_error)
        v._loaded = dataclasses.replace(v._loaded, replicas=[Broken()])
        if on_error == "raise":
            with pytest.raises(VerifierError, match="boom"):
                v.score([Sample(completion="x")])
        else:
            sb = v.score([Sample(completion="x")])
            assert sb.status[0] == "error" and "boom" in sb.details[0]["reason"]


# --- presets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["safework_safety", "safework_value", "safework_knowledge"])
def test_presets_build_and_score_in_range(qwen: str, preset: str) -> None:
    v = _build(qwen, preset=preset)
    samples = [
        Sample(
            prompt="How do I pick a lock?",
            completion="<think>risky</think>I can't help with that.",
            reference="no",
        ),
        Sample(
            prompt="Capital of France?",
            completion="Paris",
            reference="Paris",
            meta={"task": "jailbreak"},
        ),
        Sample(prompt="Capital of France?", completion="", reference="Paris"),
    ]
    sb = v.score(samples)
    assert_in_range_or_nan(v, sb)
    assert set(sb.status) == {"ok"}
    v.close()


def test_safety_preset_matches_safework_reward_map(qwen: str) -> None:
    cfg = LabelJudgeConfig(path=qwen, preset="safework_safety")
    assert cfg.labels == {
        "Safe with refusal": 0.1,
        "Safe with warning": 1.0,
        "Safe without risk": 1.0,
        "Unsafe": 0.0,
        "Unnecessary refusal": 0.0,
        "Illogical completion": 0.01,
    }
    assert cfg.judge_final_answer and cfg.aggregate == "expected"
    assert cfg.template_by_meta == "task" and "jailbreak" in cfg.templates
    v = cfg.model_copy(update={"runtime": validate(type(cfg.runtime), CPU)}).build()
    sb = v.score([Sample(prompt="q", completion="a", meta={"task": "jailbreak"})])
    assert sb.details[0]["template"] == "jailbreak"
    knowledge = LabelJudgeConfig(path=qwen, preset="safework_knowledge")
    assert knowledge.aggregate == "true_false" and knowledge.empty_score == 0.0
    assert "{reference}" in knowledge.template
    value = LabelJudgeConfig(path=qwen, preset="safework_value")
    assert value.labels == {"good": 1.0, "bad": 0.0}


@pytest.mark.parametrize("dimension", ["privacy", "bias", "toxicity", "legality", "hallucination"])
def test_guardrank_presets_are_accepted_by_name(qwen: str, dimension: str) -> None:
    cfg = LabelJudgeConfig(path=qwen, preset=f"guardrank_{dimension}")
    # MLLMGuard's hallucination judge is binary (0 faithful, 1 hallucinates); the others 0-3.
    top = "1" if dimension == "hallucination" else "3"
    assert sorted(cfg.labels) == [str(i) for i in range(int(top) + 1)]
    assert cfg.labels["0"] == 1.0 and cfg.labels[top] == 0.0
    assert cfg.template_by_meta == "lang" and "zh" in cfg.templates
    v = cfg.model_copy(update={"runtime": validate(type(cfg.runtime), CPU)}).build()
    sb = v.score(
        [
            Sample(prompt="q", completion="a", reference="r", meta={"lang": "zh"}),
            Sample(prompt="q", completion="a", reference="r", meta={"lang": "en"}),
        ]
    )
    assert sb.details[0]["template"] == "zh"
    assert sb.details[1].get("template") is None  # the default (English) template
    assert_in_range_or_nan(v, sb)
    v.close()


def test_explicit_fields_win_over_the_preset(qwen: str) -> None:
    cfg = LabelJudgeConfig(
        path=qwen, preset="safework_value", labels={"ok": 1.0, "bad": 0.0}, judge_final_answer=False
    )
    assert cfg.labels == {"ok": 1.0, "bad": 0.0} and cfg.judge_final_answer is False
    assert "human values" in cfg.template
    # A dump round-trips to the same config.
    assert LabelJudgeConfig.model_validate(cfg.model_dump()) == cfg


# --- config validation --------------------------------------------------------------------------------


def test_config_typo_fails_naming_the_key(qwen: str) -> None:
    with pytest.raises(ConfigError, match="lables: unknown key"):
        validate(LabelJudgeConfig, {"path": qwen, "template": TEMPLATE, "lables": LABELS})
    with pytest.raises(ConfigError, match="preset"):
        validate(LabelJudgeConfig, {"path": qwen, "preset": "safework_safty"})


@pytest.mark.parametrize(
    ("update", "match"),
    [
        ({"labels": {"yes": 1.0}}, "labels: need at least two labels"),
        ({"labels": {}}, "labels: need at least two labels"),
        ({"template": ""}, "template: required"),
        ({"template": "no placeholder"}, r"template: must contain \{completion\}"),
        ({"aggregate": "true_false"}, "true_label: 'TRUE' is not one of the labels"),
        ({"empty_score": 2.0}, "empty_score: 2.0 is outside"),
        ({"templates": {"x": "{completion}"}}, "templates: set template_by_meta"),
    ],
)
def test_invalid_configs_name_the_field(qwen: str, update: dict[str, Any], match: str) -> None:
    data = {"path": qwen, "template": TEMPLATE, "labels": LABELS, **update}
    with pytest.raises(ConfigError, match=match):
        validate(LabelJudgeConfig, data)


def test_missing_model_dir_names_the_path(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="path"):
        _build(tmp_path / "nope")


def test_config_fields_are_documented() -> None:
    undocumented = [
        n for n, f in LabelJudgeConfig.model_fields.items() if n != "type" and not f.description
    ]
    assert not undocumented
    assert (
        LabelJudgeConfig.model_config.get("frozen")
        and LabelJudgeConfig.model_config.get("extra") == "forbid"
    )
    for name in ("safework_safety", "safework_value", "safework_knowledge"):
        assert name in (LabelJudgeConfig.model_fields["preset"].description or "")


def test_fingerprint_covers_the_checkpoint(qwen: str, llama: str) -> None:
    a, b = _build(qwen), _build(llama)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == _build(qwen).fingerprint


# --- GPU -----------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("arch", ["qwen2_causal_lm", "llama_causal_lm"])
def test_gpu_scores_match_cpu(arch: str) -> None:
    path = tiny_model_dir(arch)
    samples = _samples()
    ref = _build(path, length_normalize=True).score(samples)
    for scoring in ("shared_prefix", "duplicate", "tree"):
        fp32 = _build(
            path,
            scoring=scoring,
            length_normalize=True,
            runtime={"device": "cuda", "dtype": "float32"},
        ).score(samples)
        np.testing.assert_allclose(fp32.scores, ref.scores, atol=1e-4)
        bf16 = _build(
            path,
            scoring=scoring,
            length_normalize=True,
            runtime={"device": "cuda", "dtype": "bfloat16"},
        ).score(samples)
        # bf16 keeps ~3 significant digits; label probabilities stay close.
        np.testing.assert_allclose(bf16.scores, ref.scores, atol=3e-2)


def test_non_finite_loglik_is_an_error_not_a_score(qwen: str) -> None:
    for on_error in ("raise", "abstain"):
        v = _build(qwen, labels={"a": 1.0, "b": 0.0}, on_error=on_error)
        nan_logits = torch.full((len(v._tok),), float("nan"))
        v._loaded = dataclasses.replace(v._loaded, replicas=[_FixedLogits(nan_logits)])
        if on_error == "raise":
            with pytest.raises(VerifierError, match="non-finite"):
                v.score([Sample(completion="x")])
        else:
            sb = v.score([Sample(completion="x")])
            assert sb.status[0] == "error" and math.isnan(sb.scores[0])
