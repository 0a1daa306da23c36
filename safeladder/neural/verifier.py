"""Old home of names the neural verifiers share; kept so that existing imports still work.

``NeuralVerifier`` moved to ``safeladder.verifiers.neural_base`` (the engine sits below the
verifiers and imports none of them); ``position_limit`` lives in ``safeladder.neural.checkpoints``
and ``sigmoid`` / ``softmax`` in ``safeladder.neural.activations``.
"""

from __future__ import annotations

from safeladder.neural.activations import sigmoid, softmax
from safeladder.neural.checkpoints import position_limit

__all__ = ["position_limit", "sigmoid", "softmax"]
