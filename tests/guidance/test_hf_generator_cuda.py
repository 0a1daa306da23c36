"""HFGenerator on CUDA (skipped without a GPU): the cached decode loop on the device."""

from __future__ import annotations

from typing import Literal

import pytest

from safeladder.guidance import (
    GuidedConfig,
    HFGenerator,
    ModelConfig,
    SamplingConfig,
    StepConfig,
    guided_search,
)
from safeladder.neural.runtime import RuntimeConfig
from tests.guidance.fakes import marker_reward
from tests.helpers import tiny_model_dir

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _gen(dtype: Literal["float32", "bfloat16"], temperature: float) -> HFGenerator:
    model = ModelConfig(
        path=str(tiny_model_dir("qwen2_causal_lm")),
        runtime=RuntimeConfig(device="cuda", dtype=dtype),
    )
    return HFGenerator(model, SamplingConfig(temperature=temperature))


def test_cuda_greedy_matches_transformers_generate() -> None:
    gen = _gen("float32", 0.0)
    contexts = [gen.render("hi"), gen.render("a much longer prompt than the first one")]
    together = gen.generate(contexts, 3, max_new_tokens=10, stop="e")
    for ctx, outs in zip(contexts, together, strict=True):
        assert (
            outs[0]
            == outs[1]
            == outs[2]
            == gen.generate([ctx], 1, max_new_tokens=10, stop="e")[0][0]
        )
    plain = gen.generate(contexts, 1, max_new_tokens=10)
    for ctx, (out,) in zip(contexts, plain, strict=True):
        ids = gen.tokenizer(ctx, add_special_tokens=False, return_tensors="pt").to("cuda")
        ref = gen.model.generate(**ids, max_new_tokens=10, do_sample=False)
        new = ref[0, ids["input_ids"].shape[1] :].tolist()
        eos = [i for i, t in enumerate(new) if t in gen.eos_ids]
        assert out.text == gen.tokenizer.decode(
            new[: eos[0]] if eos else new, skip_special_tokens=True
        )


def test_cuda_bf16_sampling_is_seeded_and_guided_search_runs() -> None:
    gen = _gen("bfloat16", 1.0)
    ctx = [gen.render("x"), gen.render("y z")]
    first = gen.generate(ctx, 4, max_new_tokens=12, seed=5)
    assert gen.generate(ctx, 4, max_new_tokens=12, seed=5) == first
    with marker_reward(gate=True) as reward:
        traces = guided_search(
            gen,
            reward,
            ["p", "q", "r"],
            GuidedConfig(
                beams=2, candidates=4, max_steps=3, step=StepConfig(separator=" ", max_tokens=4)
            ),
            max_new_tokens=12,
        )
    assert len(traces) == 3 and all(t.generated_tokens > 0 for t in traces)
