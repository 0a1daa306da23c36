"""Corrections at inference: the injected format, what the model sees vs what the reward
scores, and the traces' record of the corrections used (best-of-N, guided search, vote).

The store uses a hashed bag-of-words encoder (``tests.corrections.fakes.BagOfWords``): retrieval
is exact cosine over those vectors, so which prompt gets which correction is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from safeladder.corrections import CorrectionStore
from safeladder.errors import ConfigError
from safeladder.guidance import (
    BestOfNConfig,
    CorrectionMemory,
    CorrectionsConfig,
    GenerateConfig,
    GuidedConfig,
    StepConfig,
    VoteConfig,
    best_of_n,
    guided_search,
    inject,
    load_traces,
    render_report,
    run_search,
    save_traces,
    vote,
)
from safeladder.guidance.config import DEFAULT_CORRECTIONS_HEADER
from safeladder.types import Sample
from tests.corrections.fakes import BagOfWords
from tests.guidance.fakes import EOS, ScriptedGenerator, marker_reward

FIX = {
    "id": "fix-1",
    "prompt": "tom has seven bags of eight pens",
    "wrong": "7 + 8 = 15",
    "corrected": "7 * 8 = 56",
    "note": "multiply",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorrectionStore]:
    s = CorrectionStore(tmp_path_factory.mktemp("inj") / "s.db", embedder=BagOfWords())
    s.add_many(
        [
            FIX,
            {
                "id": "fix-2",
                "prompt": "capital of australia",
                "wrong": "Sydney",
                "corrected": "Canberra",
            },
        ]
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def memory(store: CorrectionStore) -> CorrectionMemory:
    return CorrectionMemory(CorrectionsConfig(store="unused", top_k=1, min_similarity=0.5), store)


class Recording(ScriptedGenerator):
    """Remembers every context it was asked to continue."""

    def __init__(self, options: object):
        super().__init__(options)  # type: ignore[arg-type]
        self.contexts: list[str] = []

    def generate(self, contexts: Sequence[str], n: int, **kw: object) -> list:  # type: ignore[override]
        self.contexts.extend(contexts)
        return super().generate(contexts, n, **kw)  # type: ignore[arg-type]


EXPECTED_BLOCK = (
    f"{DEFAULT_CORRECTIONS_HEADER}\n\n"
    "[1] Problem: tom has seven bags of eight pens\n"
    "Wrong: 7 + 8 = 15\n"
    "Corrected: 7 * 8 = 56\n"
    "Note: multiply"
)


def test_the_model_sees_the_block_the_reward_sees_the_original(memory: CorrectionMemory) -> None:
    seen_by_reward: list[str] = []
    gen = Recording(lambda ctx: ["v=1" + EOS])
    prompts = [
        Sample(prompt="ann has seven bags of eight pens", completion=""),
        Sample(prompt="write a poem", completion=""),
    ]
    reward = marker_reward()
    original = reward.score

    def spy(batch, *a, **k):  # type: ignore[no-untyped-def]
        seen_by_reward.extend(batch.prompts)
        return original(batch, *a, **k)

    reward.score = spy  # type: ignore[method-assign]
    traces = best_of_n(gen, reward, prompts, BestOfNConfig(n=2), corrections=memory)
    assert gen.contexts[0] == f"Q: {EXPECTED_BLOCK}\n\nann has seven bags of eight pens\nA: "
    assert gen.contexts[1] == "Q: write a poem\nA: "  # nothing near: unchanged
    assert set(seen_by_reward) == {"ann has seven bags of eight pens", "write a poem"}
    (used,) = traces[0].corrections
    assert used.id == "fix-1" and used.similarity > 0.5
    assert traces[1].corrections == []
    assert traces[0].prompt == "ann has seven bags of eight pens"


def test_guided_search_and_vote_record_the_corrections(memory: CorrectionMemory) -> None:
    gen = Recording(lambda ctx: ["#### 56" + EOS])
    p = ["ann has seven bags of eight pens", "capital of australia please"]
    guided = guided_search(
        gen,
        marker_reward(),
        p,
        GuidedConfig(beams=1, candidates=2, step=StepConfig(separator=None, max_tokens=4)),
        corrections=memory,
    )
    assert [[c.id for c in t.corrections] for t in guided] == [["fix-1"], ["fix-2"]]
    assert all(ctx.startswith(f"Q: {DEFAULT_CORRECTIONS_HEADER}") for ctx in gen.contexts)
    voted = vote(gen, p, VoteConfig(n=2), corrections=memory)
    assert [[c.id for c in t.corrections] for t in voted] == [["fix-1"], ["fix-2"]]


def test_run_search_threads_the_memory_and_traces_round_trip(
    memory: CorrectionMemory, tmp_path: Path
) -> None:
    cfg = GenerateConfig.model_validate({"model": {"path": "unused"}, "search": {"n": 1}})
    gen = Recording(lambda ctx: ["v=2" + EOS])
    traces = run_search(
        gen, marker_reward(), ["ann has seven bags of eight pens"], cfg, corrections=memory
    )
    save_traces(traces, tmp_path / "t.jsonl")
    back = load_traces(tmp_path / "t.jsonl")
    assert back[0].corrections == traces[0].corrections and back[0].corrections[0].id == "fix-1"
    assert "Corrections shown to the model: fix-1 (" in render_report(back)


def test_chat_prompts_get_a_system_message() -> None:
    chat = [{"role": "user", "content": "hi"}]
    assert inject(chat, "BLOCK") == [{"role": "system", "content": "BLOCK"}, *chat]
    with_system = [{"role": "system", "content": "Be brief."}, *chat]
    assert inject(with_system, "BLOCK")[0] == {"role": "system", "content": "Be brief.\n\nBLOCK"}
    assert with_system[0]["content"] == "Be brief."  # the caller's messages are not mutated
    assert inject("q", "") == "q"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="template"):
        CorrectionsConfig(store="s.db", template="{prompt} {colour}")
    with pytest.raises(ValueError, match="store"):
        CorrectionsConfig(store="")
    cfg = GenerateConfig.model_validate(
        {"model": {"path": "m"}, "corrections": {"store": "s.db", "top_k": 3}}
    )
    assert cfg.corrections is not None and cfg.corrections.top_k == 3


def test_a_missing_store_in_the_config_is_a_config_error(tmp_path: Path) -> None:
    cfg = CorrectionsConfig(store=str(tmp_path / "none.db"))
    with pytest.raises(ConfigError, match="does not exist"):
        CorrectionMemory(cfg)
