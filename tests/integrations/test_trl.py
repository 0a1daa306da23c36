"""TRL adapter: the reward-function contract of ``trl/trainer/grpo_trainer.py`` (TRL 1.16).

Expected values are computed by hand from the verifiers' documented formulas:
qa_match f1 = token F1 after SQuAD normalization; repetition (n=2) = -(1 - unique/total bigrams).
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest

from safeladder import load_reward
from safeladder.errors import ConfigError, InputError
from safeladder.integrations.trl import as_trl, as_trl_terms, trl_batch

REWARD = {
    "name": "sl",
    "terms": [
        {"name": "f1", "verifier": {"type": "qa_match", "mode": "f1"}, "weight": 1.0},
        {"name": "rep", "verifier": {"type": "repetition", "ngram_size": 2}, "weight": 0.5},
        {"name": "fmt", "verifier": {"type": "think_format"}, "weight": 0.0},
    ],
    "routes": {"key": "task", "recipes": {"qa": ["f1", "rep", "fmt"], "chat": ["rep"]}},
}


@pytest.fixture(scope="module")
def reward() -> Any:
    r = load_reward(REWARD)
    yield r
    r.close()


class Hooks:
    """Stand-ins for TRL's ``log_metric`` / ``log_extra`` (grpo_trainer.py::_log_metric / _log_completion_extra)."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list[Any]] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list[Any]) -> None:
        self.extra.setdefault(column, []).extend(values)


def trl_kwargs(hooks: Hooks | None = None, **columns: list[Any]) -> dict[str, Any]:
    """The keyword arguments TRL adds besides the dataset columns."""
    kw: dict[str, Any] = {"completion_ids": [[1]] * len(next(iter(columns.values()))), **columns}
    kw["trainer_state"] = object()
    if hooks is not None:
        kw["log_metric"] = hooks.log_metric
        kw["log_extra"] = hooks.log_extra
    return kw


PROMPTS = ["Capital of France?", "Capital of France?", "Say hi", "Capital of Italy?"]
COMPLETIONS = ["Paris", "the Paris city", "a b a b a b", "Paris"]
# row 0: f1 = 1, rep = 0 (one token)          -> 1
# row 1: f1 = 2/3 ("paris city" vs "paris"), rep = 0 (bigrams "paris city"... all distinct)  -> 2/3
# row 2: chat route: rep = -(1 - 2/5) = -0.6 -> 0.5 * -0.6 = -0.3
# row 3: f1 = 0 vs "Rome"                      -> 0
EXPECTED = [1.0, 2 / 3, -0.3, 0.0]


def test_standard_format_returns_totals(reward: Any) -> None:
    f = as_trl(reward)
    out = f(
        prompts=PROMPTS,
        completions=COMPLETIONS,
        **trl_kwargs(reference=["Paris", "Paris", None, "Rome"], task=["qa", "qa", "chat", "qa"]),
    )
    assert out == pytest.approx(EXPECTED, abs=1e-6)
    assert all(type(x) is float for x in out)
    assert f.__name__ == "sl"


def test_conversational_format_reads_the_assistant_message(reward: Any) -> None:
    f = as_trl(reward)
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    completions: list[Any] = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    # content blocks, and a tool exchange whose last assistant message is the answer
    completions[0] = [{"role": "assistant", "content": [{"type": "text", "text": "Paris"}]}]
    completions[3] = [
        {"role": "assistant", "content": "let me look it up"},
        {"role": "tool", "content": "Rome"},
        {"role": "assistant", "content": "Paris"},
    ]
    out = f(
        prompts=prompts,
        completions=completions,
        **trl_kwargs(reference=["Paris", "Paris", None, "Rome"], task=["qa", "qa", "chat", "qa"]),
    )
    assert out == pytest.approx(EXPECTED, abs=1e-6)


def test_conversational_completion_without_assistant_names_the_row(reward: Any) -> None:
    with pytest.raises(InputError, match="row 1: .*assistant"):
        as_trl(reward)(
            prompts=["a", "b"],
            completions=[
                [{"role": "assistant", "content": "x"}],
                [{"role": "tool", "content": "y"}],
            ],
            **trl_kwargs(task=["chat", "chat"]),
        )


def test_nan_total_is_none(reward: Any) -> None:
    # qa row without a reference: f1 abstains, repetition scores 0 → total 0 (not None);
    # a reward whose only term abstains gives None.
    only_f1 = load_reward({"name": "f1only", "terms": [REWARD["terms"][0]]})
    out = as_trl(only_f1)(
        prompts=["q", "q"], completions=["Paris", "Paris"], reference=[None, "Paris"]
    )
    assert out == [None, 1.0]


def test_reference_column_default_order_and_meta() -> None:
    cols = {
        "answer": ["a"],
        "solution": ["s"],
        "task": ["qa"],
        "trainer_state": None,
        "log_metric": print,
    }
    b = trl_batch(["p"], ["c"], {**cols, "completion_ids": [[1, 2]]})
    assert b.references == ["a"]  # 'answer' comes before 'solution'
    assert b.metas == [{"solution": "s", "task": "qa"}]
    b = trl_batch(["p"], ["c"], {**cols, "reference": ["r"]})
    assert b.references == ["r"]
    assert b.metas == [{"answer": "a", "solution": "s", "task": "qa"}]
    b = trl_batch(["p"], ["c"], {"ground_truth": [["x", "y"]]})
    assert b.references == [["x", "y"]]
    b = trl_batch(["p"], ["c"], {"task": ["qa"]})
    assert b.references == [None]
    b = trl_batch(["p"], ["c"], cols, reference_key="solution")
    assert b.references == ["s"] and b.metas == [{"answer": "a", "task": "qa"}]


def test_reference_key_option(reward: Any) -> None:
    f = as_trl(reward, reference_key="gold")
    out = f(
        prompts=["q"],
        completions=["Paris"],
        **trl_kwargs(gold=["Paris"], answer=["Rome"], task=["qa"]),
    )
    assert out == [1.0]
    with pytest.raises(InputError, match="reference_key='gold'.*columns: \\['answer', 'task'\\]"):
        f(prompts=["q"], completions=["Paris"], **trl_kwargs(answer=["Rome"], task=["qa"]))


def test_reference_key_from_the_reward_config() -> None:
    from safeladder import load_reward

    cfg = {"reference_key": "gold", "terms": [{"name": "em", "verifier": {"type": "qa_match"}}]}
    f = as_trl(load_reward(cfg))
    # 'answer' would win by default; the config names 'gold'
    assert f(
        prompts=["q"], completions=["Paris"], **trl_kwargs(gold=["Paris"], answer=["Rome"])
    ) == [1.0]
    # an explicit adapter option still wins over the config
    g = as_trl(load_reward(cfg), reference_key="answer")
    assert g(
        prompts=["q"], completions=["Paris"], **trl_kwargs(gold=["Paris"], answer=["Rome"])
    ) == [0.0]


def test_misaligned_column_is_an_error(reward: Any) -> None:
    with pytest.raises(InputError, match="column 'task' has 1 values for 2 completions"):
        as_trl(reward)(prompts=["a", "b"], completions=["x", "y"], task=["qa"])


def test_logging_hooks(reward: Any) -> None:
    hooks = Hooks()
    as_trl(reward)(
        prompts=PROMPTS,
        completions=COMPLETIONS,
        **trl_kwargs(
            hooks, reference=["Paris", "Paris", None, "Rome"], task=["qa", "qa", "chat", "qa"]
        ),
    )
    m = {k: v[0] for k, v in hooks.metrics.items()}
    assert m["sl/f1/mean"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["sl/rep/mean"] == pytest.approx((0 + 0 + -0.6 + 0) / 4)
    assert m["sl/f1/abstain_rate"] == 0.0
    assert m["sl/unscorable_rate"] == 0.0
    assert "sl/mean" not in m and "sl/std" not in m  # TRL logs the total itself
    assert "sl/gated_rate" not in m  # no gates in this reward
    assert all(not math.isnan(v) for v in m.values())
    f1_column = hooks.extra["sl/f1"]
    assert f1_column[2] is None  # the chat row has no f1 term
    assert [f1_column[0], f1_column[1], f1_column[3]] == pytest.approx([1.0, 2 / 3, 0.0])
    assert hooks.extra["sl/rep"] == pytest.approx([0.0, 0.0, -0.6, 0.0])


def test_nan_metrics_are_not_sent(reward: Any) -> None:
    hooks = Hooks()
    as_trl(reward)(prompts=["q"], completions=["a b a b"], **trl_kwargs(hooks, task=["chat"]))
    assert "sl/f1/mean" not in hooks.metrics  # f1 applied to no row
    assert hooks.metrics["sl/rep/mean"] == [pytest.approx(-(1 - 2 / 3))]


def test_logging_can_be_turned_off(reward: Any) -> None:
    hooks = Hooks()
    as_trl(reward, log_metrics=False, log_columns=False)(
        prompts=["q"], completions=["x"], **trl_kwargs(hooks, task=["chat"])
    )
    assert hooks.metrics == {} and hooks.extra == {}


def test_name_option() -> None:
    r = load_reward(REWARD)
    assert as_trl(r, name="safety").__name__ == "safety"
    funcs, _ = as_trl_terms(r, name="x")
    assert [f.__name__ for f in funcs] == ["x/f1", "x/rep"]


def test_terms_names_weights_and_values(reward: Any) -> None:
    funcs, weights = as_trl_terms(reward)
    assert [f.__name__ for f in funcs] == ["sl/f1", "sl/rep"]  # metric-only 'fmt' is not one
    assert weights == [1.0, 0.5]
    kw = trl_kwargs(reference=["Paris", "Paris", None, "Rome"], task=["qa", "qa", "chat", "qa"])
    f1 = funcs[0](prompts=PROMPTS, completions=COMPLETIONS, **kw)
    rep = funcs[1](prompts=PROMPTS, completions=COMPLETIONS, **kw)
    assert f1[2] is None  # not routed to the chat row: TRL's nansum skips it, like our total
    assert [f1[0], f1[1], f1[3]] == pytest.approx([1.0, 2 / 3, 0.0])
    assert rep == pytest.approx([0.0, 0.0, -0.6, 0.0])
    # TRL's weighted nansum of the term functions equals safeladder's total
    totals = [
        sum(w * v for w, v in zip(weights, vals, strict=True) if v is not None)
        for vals in zip(f1, rep, strict=True)
    ]
    assert totals == pytest.approx(EXPECTED, abs=1e-6)


def test_term_callables_share_one_score_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    r = load_reward(REWARD)
    calls: list[int] = []
    real = r.score
    monkeypatch.setattr(r, "score", lambda batch: calls.append(len(batch)) or real(batch))
    hooks = Hooks()
    funcs, _ = as_trl_terms(r)
    kw = trl_kwargs(
        hooks, reference=["Paris", "Paris", None, "Rome"], task=["qa", "qa", "chat", "qa"]
    )
    for f in funcs:  # what TRL does: same list objects for every function of the step
        f(prompts=PROMPTS, completions=COMPLETIONS, **kw)
    assert calls == [4]
    assert hooks.metrics["sl/f1/mean"] == [pytest.approx(5 / 9)]  # logged once, not per term
    # a new batch (new list objects, even with equal contents) is scored again
    kw2 = trl_kwargs(reference=list(kw["reference"]), task=list(kw["task"]))
    prompts2, completions2 = list(PROMPTS), list(COMPLETIONS)
    for f in funcs:
        f(prompts=prompts2, completions=completions2, **kw2)
    assert calls == [4, 4]
    # same list objects but a completion changed in place: not a cache hit
    completions = list(COMPLETIONS)
    kw3 = trl_kwargs(reference=list(kw["reference"]), task=list(kw["task"]))
    funcs[0](prompts=PROMPTS, completions=completions, **kw3)
    completions[0] = "Rome"
    assert funcs[0](prompts=PROMPTS, completions=completions, **kw3)[0] == 0.0
    assert calls == [4, 4, 4, 4]
    r.close()


def test_terms_refuse_gates() -> None:
    cfg = {
        "name": "g",
        "terms": [
            {"name": "f1", "verifier": {"type": "qa_match"}},
            {
                "name": "safe",
                "verifier": {"type": "refusal"},
                "weight": 0.0,
                "gate": {"below": 0.5, "value": -1.0},
            },
        ],
    }
    r = load_reward(cfg)
    with pytest.raises(ConfigError, match=r"gate.*as_trl\(reward\)"):
        as_trl_terms(r)
    assert as_trl(r).__name__ == "g"  # the total applies the gate itself
    r.close()


def test_pickle_round_trip(reward: Any) -> None:
    f = pickle.loads(pickle.dumps(as_trl(reward)))
    assert f(prompts=["q"], completions=["Paris"], reference=["Paris"], task=["qa"]) == [1.0]
    funcs, _ = as_trl_terms(reward)
    g1, g2 = pickle.loads(pickle.dumps(funcs))
    assert g1._scorer is g2._scorer  # pickled together, they still share one scorer
    assert g2(prompts=["q"], completions=["a b a b"], task=["chat"]) == [pytest.approx(-1 / 3)]


# ------------------------------------------------------------------ a real GRPOTrainer run


def _tiny_causal_lm(dirpath: Any) -> Any:
    """A random-init 2-layer Qwen2 causal LM + tokenizer trained in memory (no hub)."""
    from tests import helpers

    maker = getattr(helpers, "make_tiny_causal_lm", None)
    if maker is not None:
        return maker(dirpath, "qwen2")
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    helpers.make_tiny_tokenizer(dirpath)
    tok = PreTrainedTokenizerFast.from_pretrained(str(dirpath))
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(dirpath))
    return dirpath


# A graded reward (a random policy gets varied scores, so groups have variance): token F1,
# a bigram repetition penalty and a character budget, routed by the dataset's `task` column.
GRPO_REWARD = {
    "name": "sl",
    "terms": [
        {"name": "f1", "verifier": {"type": "qa_match", "mode": "f1"}, "weight": 1.0},
        {"name": "rep", "verifier": {"type": "repetition", "ngram_size": 2}, "weight": 0.5},
        {
            "name": "budget",
            "verifier": {"type": "length", "mode": "budget", "unit": "chars", "target_length": 20},
            "weight": 0.5,
        },
        {"name": "fmt", "verifier": {"type": "think_format"}, "weight": 0.0},
    ],
    "routes": {
        "key": "task",
        "recipes": {"qa": ["f1", "rep", "budget", "fmt"], "general": ["rep", "budget"]},
    },
}


def _train(tmp_path: Any, reward_funcs: Any, **config: Any) -> list[dict[str, Any]]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    model_dir = _tiny_causal_lm(tmp_path / "model")
    tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    rows = [
        ("The quick brown", "fox", "qa"),
        ("I'm sorry, but", "the lazy dog", "qa"),
        ("Here is how to", "read carefully", "general"),
        ("Let me think", "Paris", "qa"),
    ]
    ds = Dataset.from_list([{"prompt": p, "reference": r, "task": t} for p, r, t in rows])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        use_vllm=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
        **config,
    )
    trainer = GRPOTrainer(
        model=model, processing_class=tok, reward_funcs=reward_funcs, args=args, train_dataset=ds
    )
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


# transformers 5.23 warns about its own gradient_checkpointing renames inside TRL: not ours.
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.slow
def test_grpo_trainer_logs_safeladder_terms(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    reward = load_reward(GRPO_REWARD)
    batches: list[int] = []
    real = reward.score
    monkeypatch.setattr(reward, "score", lambda b: batches.append(len(b)) or real(b))
    logs = _train(tmp_path, as_trl(reward))
    assert len(logs) == 2
    for step in logs:
        assert "rewards/sl/mean" in step  # TRL's own metric for the callable named "sl"
        for term in ("f1", "rep", "budget", "fmt"):
            assert f"sl/{term}/mean" in step, sorted(step)
        assert step["sl/unscorable_rate"] == 0.0
        assert math.isfinite(step["loss"])
    assert any(step["reward_std"] > 0 for step in logs)  # graded: groups have variance
    assert batches == [4, 4]  # one Reward.score per generation batch of 4 completions
    reward.close()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.slow
def test_grpo_trainer_with_term_functions_gdpo(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reward = load_reward(GRPO_REWARD)
    batches: list[int] = []
    real = reward.score
    monkeypatch.setattr(reward, "score", lambda b: batches.append(len(b)) or real(b))
    funcs, weights = as_trl_terms(reward)
    logs = _train(
        tmp_path, funcs, reward_weights=weights, multi_objective_aggregation="normalize_then_sum"
    )
    for step in logs:
        for term in ("f1", "rep", "budget"):
            assert f"rewards/sl/{term}/mean" in step, sorted(step)  # one TRL reward per term
        assert "sl/fmt/mean" in step  # the metric-only term is logged, not optimized
        assert "rewards/sl/fmt/mean" not in step
    assert batches == [4, 4]  # three term functions, still one Reward.score per batch
    reward.close()


def test_reward_methods_are_deprecated_shims_for_the_adapter() -> None:
    reward = load_reward({"name": "r", "terms": [{"name": "qa", "verifier": {"type": "qa_match"}}]})
    with pytest.warns(
        DeprecationWarning, match=r"use safeladder.integrations.trl.as_trl\(reward\)"
    ):
        f = reward.as_trl()
    assert f(prompts=["q"], completions=["Paris"], reference=["Paris"]) == [1.0]
    with pytest.warns(DeprecationWarning, match="as_trl_terms"):
        funcs, weights = reward.as_trl_terms()
    assert [g.__name__ for g in funcs] == ["r/qa"] and weights == [1.0]
