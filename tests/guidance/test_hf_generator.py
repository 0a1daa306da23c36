"""HFGenerator on a tiny random-init Qwen2 causal LM (CPU, offline), and the searches end to end."""

from __future__ import annotations

import pytest

from safeladder.guidance import (
    GuidedConfig,
    HFGenerator,
    SamplingConfig,
    StepConfig,
    best_of_n,
    guided_search,
)
from safeladder.rewards import Reward, RewardConfig
from tests.helpers import tiny_model_dir

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir() -> str:
    torch.set_num_threads(1)
    return str(tiny_model_dir("qwen2_causal_lm"))


def test_greedy_matches_transformers_generate_and_is_padding_invariant(model_dir: str) -> None:
    gen = HFGenerator(model_dir, SamplingConfig(temperature=0.0))
    contexts = [gen.render("hello there"), gen.render("The quick brown fox jumps over the dog")]
    together = gen.generate(contexts, 2, max_new_tokens=8)
    for ctx, outs in zip(contexts, together, strict=True):
        alone = gen.generate([ctx], 1, max_new_tokens=8)[0][0]
        assert (
            outs[0] == outs[1] == alone
        )  # greedy: the n copies agree; left padding changes nothing
        ids = gen.tokenizer(ctx, add_special_tokens=False, return_tensors="pt")
        ref = gen.model.generate(**ids, max_new_tokens=8, do_sample=False)
        new = ref[0, ids["input_ids"].shape[1] :].tolist()
        eos = [i for i, t in enumerate(new) if t in gen.eos_ids]
        new = new[: eos[0]] if eos else new
        assert alone.text == gen.tokenizer.decode(new, skip_special_tokens=True)


def test_sampling_is_seeded_and_counts_tokens(model_dir: str) -> None:
    gen = HFGenerator(model_dir, SamplingConfig(temperature=1.0, top_k=50, top_p=0.9))
    ctx = [gen.render("a"), gen.render("a longer prompt here")]
    first = gen.generate(ctx, 3, max_new_tokens=6, seed=3)
    assert gen.generate(ctx, 3, max_new_tokens=6, seed=3) == first
    assert gen.generate(ctx, 3, max_new_tokens=6, seed=4) != first
    assert [len(o) for o in first] == [3, 3]
    assert all(1 <= c.n_tokens <= 6 for o in first for c in o)
    assert gen.tokens_generated == 3 * sum(c.n_tokens for o in first for c in o)


def test_a_stop_string_ends_each_row_with_the_token_that_completes_it(model_dir: str) -> None:
    gen = HFGenerator(model_dir, SamplingConfig(temperature=1.0, batch_size=4))
    contexts = [gen.render("x"), gen.render("y")]
    outs = gen.generate(contexts, 4, max_new_tokens=30, stop=" ")
    stopped = [(ctx, c) for ctx, o in zip(contexts, outs, strict=True) for c in o if " " in c.text]
    assert stopped  # the tiny vocabulary has plenty of space tokens
    for ctx, c in stopped:
        assert not c.finished
        # The context + step is fed back as the ids it was sampled as (not re-tokenized) ...
        ids = gen._encode(ctx + c.text)
        new = ids[len(gen._encode(ctx)) :]
        assert len(new) == c.n_tokens and gen.tokenizer.decode(new) == c.text
        # ... and the stop string first appears in the last token.
        assert " " not in gen.tokenizer.decode(new[:-1])


def _gate_on_letter(letter: str) -> Reward:
    """A reward whose gate vetoes any completion containing ``letter`` (the tiny LM's output is
    random, so some candidates contain it and some do not)."""
    return Reward(
        RewardConfig.model_validate(
            {
                "terms": [
                    {
                        "name": "len",
                        "verifier": {
                            "type": "length",
                            "mode": "budget",
                            "unit": "chars",
                            "target_length": 40,
                        },
                    },
                    {
                        "name": "safe",
                        "verifier": {
                            "type": "custom",
                            "target": "tests.guidance.fakes:no_marker",
                            "kwargs": {"marker": letter},
                        },
                        "weight": 0.0,
                        "gate": {"below": 0.5, "value": -1.0},
                    },
                ]
            }
        )
    )


def test_searches_end_to_end_with_the_tiny_model(model_dir: str) -> None:
    gen = HFGenerator(model_dir, SamplingConfig(temperature=1.0, seed=0))
    with _gate_on_letter("e") as reward:
        bon = best_of_n(gen, reward, ["hi", "there"], max_new_tokens=12)
        guided = guided_search(
            gen,
            reward,
            ["hi", "there"],
            GuidedConfig(
                beams=2, candidates=3, max_steps=3, step=StepConfig(separator=" ", max_tokens=4)
            ),
            max_new_tokens=12,
        )
    for t in bon + guided:
        if not t.fallback:
            assert "e" not in t.completion
            assert t.chosen is not None and not t.candidates[t.chosen].gated
        assert t.generated_tokens > 0
    # The gate had work to do: some sampled candidates contain the letter, some do not.
    everything = [c for t in bon for c in t.candidates] + [
        c for t in guided for s in t.steps for c in s.candidates
    ]
    assert any(c.gated for c in everything) and any(not c.gated for c in everything)
    for t in guided:
        for s in t.steps:
            for c in s.candidates:
                assert (c.pruned is not None) or not c.gated  # every vetoed step is pruned
            assert len(s.kept) <= 2


def test_the_no_cache_path_decodes_the_same_tokens(model_dir: str) -> None:
    gen = HFGenerator(model_dir, SamplingConfig(temperature=0.0))
    contexts = [gen.render("short"), gen.render("a much longer prompt than the other one")]
    cached = gen.generate(contexts, 2, max_new_tokens=6, stop="e")
    real = gen.model

    class NoCache:
        """The same model, run without a KV cache (as an architecture without one would be)."""

        def __call__(self, **kw: object) -> object:
            kw.pop("past_key_values", None)
            kw["use_cache"] = False
            out = real(**kw)
            out.past_key_values = None
            return out

    gen.model = NoCache()
    assert gen.generate(contexts, 2, max_new_tokens=6, stop="e") == cached
