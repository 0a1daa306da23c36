"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class LengthConfig(VerifierConfig):
    type: Literal["length"] = "length"
