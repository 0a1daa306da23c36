"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class MathAnswerConfig(VerifierConfig):
    type: Literal["math_answer"] = "math_answer"
