"""The one exception type the CLI commands raise on purpose, with its exit code."""

from __future__ import annotations

from safeladder.errors import SafeladderError

#: Exit codes of every ``safeladder`` command.
EXIT_OK = 0
EXIT_FAILURE = 1  # the run failed: a bad row with --fail-on-error, a reward that raised
EXIT_USAGE = 2  # the command line or the config is wrong; nothing was scored
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class CliError(SafeladderError):
    """An expected failure: the message goes to stderr (no traceback), the process exits with
    ``exit_code``. Set ``show_cause`` when the cause is an unexpected exception (a bug in a
    verifier) whose traceback helps whoever fixes it."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE, *, show_cause: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.show_cause = show_cause
