"""Final-answer extraction, kept importable here; it lives in ``safeladder.answers``.

The answer checks, voting, training and the neural engine share one answers module, which sits
below every layer that uses it (DESIGN.md). Import from ``safeladder.answers`` in new code.
"""

from __future__ import annotations

from safeladder.answers import (
    DEFAULT_EXTRACTORS,
    REFERENCE_EXTRACTORS,
    Extractor,
    clean_answer,
    extract_answer,
    extract_answer_parts,
    join_parts,
    last_boxed_run,
    reference_answer,
)

__all__ = [
    "DEFAULT_EXTRACTORS",
    "REFERENCE_EXTRACTORS",
    "Extractor",
    "clean_answer",
    "extract_answer",
    "extract_answer_parts",
    "join_parts",
    "last_boxed_run",
    "reference_answer",
]
