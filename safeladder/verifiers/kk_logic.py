"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class KKLogicConfig(VerifierConfig):
    type: Literal["kk_logic"] = "kk_logic"
