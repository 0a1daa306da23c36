"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class ChoiceAnswerConfig(VerifierConfig):
    type: Literal["choice_answer"] = "choice_answer"
