"""A memory of human corrections of chain-of-thought, searchable by prompt similarity.

SafeWork-R1 lets a person correct a model's flawed reasoning so that it does not repeat the
mistake on similar questions (papers.md §1.7). This package keeps those corrections:

- ``NewCorrection`` / ``Correction`` (``records``): a prompt, the wrong reasoning or answer,
  the corrected reasoning, a note, tags, author and time; the JSONL import / export format;
- ``CorrectionStore`` (``store``): one SQLite file (WAL, safe with concurrent writers) with the
  sentence-encoder embeddings of every row, exact cosine search, encoder fingerprint checks.

Users: ``safeladder.guidance`` injects the nearest corrections into prompts before generation;
the ``repeats_correction`` verifier scores whether a completion repeats a stored mistake;
``safeladder corrections`` manages a store from the command line.

Layer: the verifiers' level (imports ``neural`` and below), so verifiers and guidance can use it.
"""

from safeladder.corrections.records import Correction, CorrectionHit, NewCorrection, content_id
from safeladder.corrections.store import (
    SCHEMA_VERSION,
    CorrectionStore,
    TextEncoder,
    read_corrections_jsonl,
)

__all__ = [
    "SCHEMA_VERSION",
    "Correction",
    "CorrectionHit",
    "CorrectionStore",
    "NewCorrection",
    "TextEncoder",
    "content_id",
    "read_corrections_jsonl",
]
