"""Probability links of model outputs: the package's one ``sigmoid`` / ``softmax``
(``safeladder.numeric``), named here for the engine's callers."""

from __future__ import annotations

from safeladder.numeric import sigmoid, softmax

__all__ = ["sigmoid", "softmax"]
