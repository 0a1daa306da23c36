"""Plain numbers in answers, kept importable here; they live in ``safeladder.answers``.

Import ``Number``, ``parse_number`` and ``numbers_equal`` from ``safeladder.answers`` in new
code.
"""

from __future__ import annotations

from safeladder.answers import Number, numbers_equal, parse_number

__all__ = ["Number", "numbers_equal", "parse_number"]
