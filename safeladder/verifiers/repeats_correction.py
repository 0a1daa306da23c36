"""``repeats_correction``: does the completion follow a stored correction or repeat the mistake?

A correction store (``safeladder.corrections``) holds prompts a model got wrong, the wrong
reasoning, and a person's corrected reasoning. For each row this verifier finds the stored
corrections whose prompts are nearest the row's prompt (cosine of the store's sentence-encoder
embeddings, top ``top_k`` at least ``min_prompt_similarity``) and compares the completion's
embedding with each one's wrong and corrected reasoning:

    d_c   = cos(completion, corrected_c) - cos(completion, wrong_c)
    s_c   = sigmoid(d_c / temperature)
    score = sum_c w_c * s_c / sum_c w_c,    w_c = the prompt similarity of correction c

So 1 means the completion is (much) closer to the corrected reasoning, 0 that it repeats the
wrong one, 0.5 that it is as close to both. A reward can penalise repeating known mistakes with
it (e.g. a term with a positive weight, or a gate below 0.2). Embeddings of a generic sentence
encoder measure topical and lexical likeness, not arithmetic truth: two derivations that differ
in one digit embed almost alike, so the score separates a repeated *approach or phrasing* well
and a single wrong number poorly (see ``benchmarks/bench_corrections.py`` for the measured
effect). The stored vectors are reused; only the row's prompt and completion are encoded.

Inputs: ``Sample.prompt`` (its text, ``prompt_text``) and ``Sample.completion``; ``reference``
and ``meta`` are not read.

Score range: [0, 1]; NaN with status ``abstain`` when no stored correction's prompt is within
``min_prompt_similarity`` (the reason gives the nearest similarity) or the completion is empty.
``details[i]["corrections"]`` lists per used correction its ``id``, ``prompt_similarity``,
``sim_wrong``, ``sim_corrected``.

Example config::

    {"type": "repeats_correction", "store": "corrections.db", "min_prompt_similarity": 0.7,
     "runtime": {"device": "cpu"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from safeladder.corrections import CorrectionStore
from safeladder.neural.runtime import RuntimeConfig
from safeladder.types import SampleBatch, ScoreBatch, prompt_text
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, abstain, ok


class RepeatsCorrectionConfig(VerifierConfig):
    """Config of the correction-memory verifier (see the module docstring)."""

    type: Literal["repeats_correction"] = "repeats_correction"
    store: str = Field(
        min_length=1,
        description="Path of the correction store (an SQLite file written by CorrectionStore / "
        "`safeladder corrections add|import`); it must exist.",
    )
    encoder: str | None = Field(
        default=None,
        description="Sentence encoder; None: the one the store was written with (another one "
        "is refused by fingerprint).",
    )
    top_k: int = Field(
        default=3, ge=1, description="Nearest stored corrections compared at most per row."
    )
    min_prompt_similarity: float = Field(
        default=0.6,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity of the prompts a stored correction needs to count; none "
        "that near: the row abstains.",
    )
    temperature: float = Field(
        default=0.05,
        gt=0.0,
        description="Scale of the margin cos(corrected) - cos(wrong) in the sigmoid: a margin "
        "of one temperature gives 0.73, of three 0.95.",
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="Encoder device / dtype / threads; cache_size = text embeddings kept.",
    )

    def build(self) -> Verifier:
        return RepeatsCorrectionVerifier(self)


class RepeatsCorrectionVerifier(Verifier):
    """Scores rows against the nearest stored corrections; see the module docstring.

    Example::

        v = build_verifier({"type": "repeats_correction", "store": "corrections.db"})
        v.score([{"prompt": "Q: 7 bags of 8 pens?", "completion": "7 * 8 = 56"}]).scores
    """

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: RepeatsCorrectionConfig):
        super().__init__(config)
        self.cfg = config
        self.store = CorrectionStore(
            config.store, config.encoder, create=False, runtime=config.runtime
        )

    def _fingerprint_extra(self) -> str:
        return f"encoder={self.store.fingerprint};store_revision={self.store.revision()}"

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        n = len(batch)
        if n == 0:
            return ScoreBatch.from_rows(self.name, [])
        cfg = self.cfg
        prompts = [prompt_text(p) for p in batch.prompts]
        q = self.store.embed(prompts)
        nearest = self.store.search_vectors(q, cfg.top_k, -1.0)
        completions = list(batch.completions)
        todo = [i for i, c in enumerate(completions) if c.strip()]
        comp = self.store.embed([completions[i] for i in todo]) if todo else None
        where = {i: j for j, i in enumerate(todo)}
        rows: list[RowResult] = []
        for i in range(n):
            near = [(cid, s) for cid, s in nearest[i] if s >= cfg.min_prompt_similarity]
            if not near:
                best = f"{nearest[i][0][1]:.3f}" if nearest[i] else "none: the store is empty"
                rows.append(
                    abstain(
                        f"no stored correction within prompt similarity "
                        f"{cfg.min_prompt_similarity} (nearest: {best})"
                    )
                )
                continue
            if i not in where or comp is None:
                rows.append(abstain("empty completion"))
                continue
            rows.append(self._score_row(comp[where[i]], near))
        return ScoreBatch.from_rows(self.name, rows)

    def _score_row(self, c: np.ndarray, near: list[tuple[str, float]]) -> RowResult:
        wrong, corrected = self.store.reasoning_vectors([cid for cid, _ in near])
        sim_w = wrong.astype(np.float64) @ c.astype(np.float64)
        sim_c = corrected.astype(np.float64) @ c.astype(np.float64)
        weights = np.array([max(s, 1e-6) for _, s in near])
        margin = (sim_c - sim_w) / self.cfg.temperature
        follows = 0.5 * (1.0 + np.tanh(margin / 2.0))  # the sigmoid, without exp overflow
        score = float((weights * follows).sum() / weights.sum())
        used: list[dict[str, Any]] = [
            {
                "id": cid,
                "prompt_similarity": round(float(s), 6),
                "sim_wrong": round(float(w), 6),
                "sim_corrected": round(float(k), 6),
            }
            for (cid, s), w, k in zip(near, sim_w, sim_c, strict=True)
        ]
        return ok(score, corrections=used)

    def close(self) -> None:
        self.store.close()


__all__ = ["RepeatsCorrectionConfig", "RepeatsCorrectionVerifier"]
