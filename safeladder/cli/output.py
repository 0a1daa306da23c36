"""What the ``safeladder`` commands print besides their results: warnings and library noise.

A user of the command line reads ``warning: <message>``, not the source line of safeladder that
raised it (``/site-packages/safeladder/...py:123: SafeladderWarning: ...``). Without
``--verbose``, the dependencies' own chatter is silenced too: transformers / huggingface_hub
progress bars ("Loading weights") and log lines below error level, and their FutureWarnings /
DeprecationWarnings (about their internals, nothing the user can act on). safeladder's own
progress bars (``--no-progress``) and warnings are kept.

``cli_output(verbose)`` is entered by the typer app's callback for the whole command and undoes
everything when the command ends, so an in-process caller (tests, notebooks) gets its state back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from safeladder.errors import SafeladderWarning

#: Read by huggingface_hub (and so transformers, datasets) when they are first imported.
_QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
_DEPENDENCY_WARNINGS: tuple[type[Warning], ...] = (
    FutureWarning,
    DeprecationWarning,
    PendingDeprecationWarning,
)


def format_warning(message: Warning | str, category: type[Warning], verbose: bool) -> str | None:
    """The line a warning prints as, without a file path; None when the CLI drops it.

    >>> format_warning(SafeladderWarning("3 rows truncated"), SafeladderWarning, False)
    'warning: 3 rows truncated'
    >>> format_warning(UserWarning("x"), UserWarning, False)
    'warning: x (UserWarning)'
    """
    if issubclass(category, SafeladderWarning):
        return f"warning: {message}"
    if not verbose and issubclass(category, _DEPENDENCY_WARNINGS):
        return None  # also filtered out; this catches a filter a library reset
    return f"warning: {message} ({category.__name__})"


@contextlib.contextmanager
def cli_output(verbose: bool = False) -> Iterator[None]:
    """Print warnings as ``warning: <message>``; silence dependency noise unless ``verbose``."""
    saved_env = {k: os.environ.get(k) for k in _QUIET_ENV}
    undo: list[Any] = []
    with warnings.catch_warnings():
        # catch_warnings restores the filters and showwarning when the command ends.
        if not verbose:
            for category in _DEPENDENCY_WARNINGS:
                warnings.simplefilter("ignore", category)
            for key, value in _QUIET_ENV.items():
                os.environ.setdefault(key, value)
            undo = _quiet_loaded_libraries()

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if verbose and not issubclass(category, SafeladderWarning):
                # Python's own format, with the file and line: -v is for whoever debugs it.
                text: str | None = warnings.formatwarning(
                    message, category, filename, lineno, line
                ).rstrip("\n")
            else:
                text = format_warning(message, category, verbose)
            if text is not None:
                print(text, file=file if file is not None else sys.stderr, flush=True)

        warnings.showwarning = show
        try:
            yield
        finally:
            for fn in reversed(undo):
                fn()
            for key, old in saved_env.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


def _quiet_loaded_libraries() -> list[Any]:
    """Silence the libraries already imported (the environment only reaches later imports);
    returns the functions that undo it."""
    undo: list[Any] = []
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        undo.append(lambda: hf_logging.set_verbosity(level))
        if bars:
            undo.append(hf_logging.enable_progress_bar)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        if not are_progress_bars_disabled():
            disable_progress_bars()
            undo.append(enable_progress_bars)
    return undo


__all__ = ["cli_output", "format_warning"]
