"""safeladder: verifiers and reward models for safety-aware RL post-training.

>>> from safeladder import Sample, build_verifier
>>> build_verifier("qa_match").score([Sample(prompt="Capital of France?", completion="Paris.", reference="Paris")]).scores
array([1.], dtype=float32)
"""

from safeladder.errors import (
    ConfigError,
    InputError,
    SafeladderError,
    SafeladderWarning,
    VerifierError,
)
from safeladder.rewards import Reward, load_reward
from safeladder.types import RewardResult, Sample, SampleBatch, ScoreBatch
from safeladder.verifiers import build_verifier
from safeladder.version import __version__

__all__ = [
    "ConfigError",
    "InputError",
    "Reward",
    "RewardResult",
    "SafeladderError",
    "SafeladderWarning",
    "Sample",
    "SampleBatch",
    "ScoreBatch",
    "VerifierError",
    "__version__",
    "build_verifier",
    "load_reward",
]
