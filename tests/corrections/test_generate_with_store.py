"""``GenerateConfig.corrections`` opens the store by path (its own encoder: the packaged
MiniLM) and ``run_search`` injects the nearest correction; the trace names it."""

from __future__ import annotations

from safeladder.guidance import GenerateConfig, run_search
from tests.corrections.fakes import shared_minilm_store
from tests.guidance.fakes import EOS, ScriptedGenerator, marker_reward


def test_run_search_opens_the_configured_store_and_injects() -> None:
    cfg = GenerateConfig.model_validate(
        {
            "model": {"path": "unused"},
            "search": {"mode": "best_of_n", "n": 1},
            "corrections": {"store": str(shared_minilm_store()), "top_k": 1},
        }
    )
    contexts: list[str] = []

    def answer(ctx: str) -> list[str]:
        contexts.append(ctx)
        return ["v=1" + EOS]

    prompts = ["Which city is the capital of Australia?", "Write a haiku about rain."]
    traces = run_search(ScriptedGenerator(answer), marker_reward(), prompts, cfg)
    assert [[c.id for c in t.corrections] for t in traces] == [["capital-au"], []]
    assert "Corrected: The capital of Australia is Canberra, not Sydney." in contexts[0]
    assert contexts[1] == "Q: Write a haiku about rain.\nA: "
