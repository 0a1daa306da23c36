"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class QAMatchConfig(VerifierConfig):
    type: Literal["qa_match"] = "qa_match"
