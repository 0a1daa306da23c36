"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class RefusalConfig(VerifierConfig):
    type: Literal["refusal"] = "refusal"
