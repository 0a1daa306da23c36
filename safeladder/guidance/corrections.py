"""Retrieval of stored corrections at inference time, and the format they are injected in.

``CorrectionMemory(config)`` opens the correction store of a ``CorrectionsConfig``; for each
prompt ``prepare`` finds the ``top_k`` stored corrections whose prompts are nearest (cosine of
the store's sentence-encoder embeddings, at least ``min_similarity``) and returns the prompt the
model sees plus the corrections used (``UsedCorrection``: id and similarity, recorded in
``Trace.corrections``). Only the generator sees the injected prompt; rewards score the original.

The injected block, with the defaults (``header``, then one ``template`` per correction, best
first, blank lines between)::

    Corrections of mistakes made before on similar problems. Do not repeat the wrong
    reasoning; follow the corrected reasoning.

    [1] Problem: Q: Tom has 7 bags with 8 pens each. How many pens in all?
    Wrong: 7 * 8 = 54
    Corrected: 7 * 8 = 56
    Note: 7 x 8 is 56

    <the original prompt>

A string prompt gets ``block + separator + prompt``; a chat prompt gets the block as a system
message: appended (after a blank line) to a first system message with string content, else
inserted as a new first message. A prompt with no correction near enough is left unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from safeladder.corrections import CorrectionHit, CorrectionStore
from safeladder.guidance.config import CorrectionsConfig
from safeladder.guidance.trace import UsedCorrection
from safeladder.types import Prompt, Sample, prompt_text


def format_corrections(hits: Sequence[CorrectionHit], config: CorrectionsConfig) -> str:
    """The injected block for ``hits`` (best first): header, then one template per hit.

    >>> from datetime import datetime, timezone
    >>> from safeladder.corrections import Correction
    >>> c = Correction(id="a1", prompt="2+2?", wrong="5", corrected="4", note="add",
    ...                created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> print(format_corrections([CorrectionHit(correction=c, similarity=0.9)],
    ...                          CorrectionsConfig(store="x.db", header="Fixes:")))
    Fixes:
    <BLANKLINE>
    [1] Problem: 2+2?
    Wrong: 5
    Corrected: 4
    Note: add
    """
    parts = [config.header] if config.header else []
    for rank, hit in enumerate(hits, 1):
        c = hit.correction
        parts.append(
            config.template.format(
                rank=rank,
                prompt=c.prompt,
                wrong=c.wrong,
                corrected=c.corrected,
                note=c.note,
                note_line=f"\nNote: {c.note}" if c.note else "",
                similarity=hit.similarity,
                id=c.id,
            )
        )
    return "\n\n".join(parts)


def inject(prompt: Prompt, block: str, separator: str = "\n\n") -> Prompt:
    """``prompt`` with ``block`` in front (a string) or in the system message (chat messages)."""
    if not block:
        return prompt
    if isinstance(prompt, str):
        return block + separator + prompt
    messages = [dict(m) for m in prompt]
    if (
        messages
        and messages[0].get("role") == "system"
        and isinstance(messages[0].get("content"), str)
    ):
        messages[0]["content"] = messages[0]["content"] + "\n\n" + block
    else:
        messages.insert(0, {"role": "system", "content": block})
    return messages


class CorrectionMemory:
    """The correction store of a ``CorrectionsConfig``, ready to prepare prompts.

    Args:
        config: store path, top-k, similarity threshold, injection format.
        store: an open store to use instead of opening ``config.store`` (not closed by
            ``close``).
    """

    def __init__(self, config: CorrectionsConfig, store: CorrectionStore | None = None):
        self.config = config
        self._owned = store is None
        self.store = store or CorrectionStore(config.store, config.encoder, create=False)

    def retrieve(self, prompts: Sequence[Prompt]) -> list[list[CorrectionHit]]:
        """The corrections to show for each prompt (best first; possibly none)."""
        c = self.config
        return self.store.search([prompt_text(p) for p in prompts], c.top_k, c.min_similarity)

    def prepare(self, rows: Sequence[Sample]) -> tuple[list[Prompt], list[list[UsedCorrection]]]:
        """``(prompts the model sees, corrections used per row)`` for ``rows``."""
        hits = self.retrieve([r.prompt for r in rows])
        prompts: list[Prompt] = []
        used: list[list[UsedCorrection]] = []
        for row, found in zip(rows, hits, strict=True):
            prompts.append(
                inject(row.prompt, format_corrections(found, self.config), self.config.separator)
                if found
                else row.prompt
            )
            used.append(
                [UsedCorrection(id=h.correction.id, similarity=h.similarity) for h in found]
            )
        return prompts, used

    def close(self) -> None:
        """Close the store if this memory opened it."""
        if self._owned:
            self.store.close()


def model_prompts(
    rows: Sequence[Sample], memory: CorrectionMemory | None
) -> tuple[list[Prompt], list[list[UsedCorrection]]]:
    """What the searches render: the prompts with corrections injected (or as they are)."""
    if memory is None:
        return [r.prompt for r in rows], [[] for _ in rows]
    return memory.prepare(rows)


__all__ = ["CorrectionMemory", "format_corrections", "inject", "model_prompts"]
