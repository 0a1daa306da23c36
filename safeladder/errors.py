"""Exceptions and warnings raised by safeladder.

Every error names what was wrong and where: the config key path, the input row, the field.
"""

from __future__ import annotations


class SafeladderError(Exception):
    """Base class of every error safeladder raises on purpose."""


class ConfigError(SafeladderError, ValueError):
    """A config (YAML, dict or pydantic model) is invalid; the message names the key path."""


class InputError(SafeladderError, ValueError):
    """A sample or an input row is malformed.

    Attributes:
        row: 0-based index in the batch, or 1-based line in a file (see ``where``), or None.
        field: the offending field name, or None.
    """

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        self.row = row
        self.field = field
        super().__init__(message)


class VerifierError(SafeladderError, RuntimeError):
    """A verifier failed on a row while ``on_error: raise`` (the default)."""


class ScoringError(SafeladderError, RuntimeError):
    """A dataset scoring run (``safeladder.scoring``) failed: the reward raised, a bad row under
    ``fail_on_error``, an I/O error, a Ray worker or node died. Every finished chunk is
    checkpointed first, so the same job with ``resume=True`` continues.

    Attributes:
        show_cause: the cause (``__cause__``) is an unexpected exception, e.g. a bug in a
            verifier, whose traceback helps whoever fixes it.
    """

    def __init__(self, message: str, *, show_cause: bool = False):
        super().__init__(message)
        self.show_cause = show_cause


class ScoringJobError(ScoringError, ValueError):
    """A scoring job cannot run as asked, and nothing was scored: options that exclude each
    other, a missing input, a checkpoint that does not match the job it should resume."""


class SafeladderWarning(UserWarning):
    """Something worth a look that does not stop the run (counted abstentions, truncation)."""
