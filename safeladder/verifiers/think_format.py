"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class ThinkFormatConfig(VerifierConfig):
    type: Literal["think_format"] = "think_format"
