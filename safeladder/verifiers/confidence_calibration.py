"""PLACEHOLDER: being written; replace this whole file."""

from typing import Literal

from safeladder.verifiers.base import VerifierConfig


class ConfidenceCalibrationConfig(VerifierConfig):
    type: Literal["confidence_calibration"] = "confidence_calibration"
